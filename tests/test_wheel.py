"""The built wheel, installed into a fresh virtual environment and used outside the checkout, carries what README and
docs point to: `list`, `info`, `check-data`, a 1-step `train` with a shipped-recipe name, `recipes`, `docs`, and the
example plugin copied out of the wheel, installed and trained.

The fresh environment gets its dependencies by a .pth line pointing at this interpreter's site-packages (installing
torch & co. again would take minutes); trl_plugins itself comes only from the wheel: the checkout is not on the path
and the commands run in a temporary folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from trl_plugins.sampling.judge_prompts import SHIPPED

from helpers import CPU_RUN, REPO, write_jsonl
from tiny import preference_rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(root / "dist"), str(REPO)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    wheel = next((root / "dist").glob("trl_plugins-*.whl"))
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    work = root / "work"
    work.mkdir()
    return python, work


def _run(wheel_env, *args: str) -> subprocess.CompletedProcess:
    python, work = wheel_env
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(python.parent / "trl-plugins"), *args], capture_output=True, text=True, cwd=work,
                          env=env, timeout=600)


def test_imports_from_the_wheel(wheel_env):
    python, work = wheel_env
    done = subprocess.run([str(python), "-c", "import trl_plugins; print(trl_plugins.__file__)"], capture_output=True,
                          text=True, cwd=work, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert done.returncode == 0 and str(python.parent.parent) in done.stdout and str(REPO) not in done.stdout


def test_list_info_recipes_docs(wheel_env):
    listed = _run(wheel_env, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {"orpo", "raft", "kto-weighted"} <= {item["name"] for item in json.loads(listed.stdout)}
    info = _run(wheel_env, "info", "orpo")
    assert info.returncode == 0 and "demo/orpo" in info.stdout, info.stderr
    path = _run(wheel_env, "recipes", "--path", "accelerate_configs/single_gpu")
    assert path.returncode == 0 and Path(path.stdout.strip()).is_file() and str(REPO) not in path.stdout
    copied = _run(wheel_env, "recipes", "--copy", "demo/orpo")
    assert copied.returncode == 0 and (wheel_env[1] / "orpo.yaml").is_file()
    again = _run(wheel_env, "recipes", "--copy", "demo/orpo")
    assert again.returncode == 2 and "not overwritten" in again.stderr
    page = _run(wheel_env, "docs", "plugins")
    assert page.returncode == 0 and "register_trainers" in page.stdout


def test_check_data_and_train_with_a_shipped_recipe_name(wheel_env, tiny_model_dir, tmp_path):
    """``--config demo/orpo`` resolves inside the installed package; the tiny model and data replace the recipe's."""
    pairs = write_jsonl(tmp_path / "pairs.jsonl", preference_rows(8))
    overrides = ["--model_name_or_path", tiny_model_dir, "--dataset_name", pairs, "--dataset_test_split", "train",
                 "--output_dir", str(tmp_path / "out"), "--max_steps", "1", "--per_device_train_batch_size", "2",
                 "--max_length", "32", "--report_to", "none", "--save_strategy", "no", "--use_peft", "false"]
    checked = _run(wheel_env, "check-data", "orpo", "--config", "demo/orpo", *overrides)
    assert checked.returncode == 0, checked.stderr
    assert "8 rows" in checked.stdout
    trained = _run(wheel_env, "train", "orpo", "--config", "demo/orpo", *overrides)
    assert trained.returncode == 0, trained.stderr
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_example_plugin_from_the_wheel(wheel_env, tiny_model_dir, tmp_path):
    """The example plugin the docs point to, copied out of the wheel, installed, listed and trained for one step."""
    python, work = wheel_env
    copied = _run(wheel_env, "docs", "--example", "--to", str(tmp_path))
    assert copied.returncode == 0, copied.stderr
    package = tmp_path / "trl-plugins-example"
    done = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                           "-q", str(package)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    listed = _run(wheel_env, "list")
    assert "example-sft" in listed.stdout and "trl-plugins-example 1.2.3" in listed.stdout, listed.stderr
    data = write_jsonl(tmp_path / "sft.jsonl", [{"prompt": "hello", "completion": " world ."}] * 8)
    args = ["--model_name_or_path", tiny_model_dir, "--dataset_name", data, "--output_dir", str(tmp_path / "out"),
            "--max_steps", "1", "--per_device_train_batch_size", "2", "--max_length", "32"]
    for key, value in CPU_RUN.items():
        args += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    trained = _run(wheel_env, "train", "example-sft", *args)
    assert trained.returncode == 0, trained.stderr


def test_judge_templates_ship_in_the_wheel(wheel_env):
    """Every shipped judge template (``judge_template: NAME``) loads from the installed package."""
    python, work = wheel_env
    code = ("from trl_plugins.sampling.judge_prompts import SHIPPED, TEMPLATE_DIR, load_template\n"
            "print(TEMPLATE_DIR); print(sorted(name for name in SHIPPED if '{completion' in load_template(name)[1]))")
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd=work,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert done.returncode == 0, done.stderr
    location, names = done.stdout.splitlines()
    assert str(REPO) not in location and names == str(sorted(SHIPPED))
