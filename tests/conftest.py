"""Shared fixtures. Everything runs offline: no test downloads from the Hugging Face hub."""

from __future__ import annotations

import os
import subprocess
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")
os.environ.setdefault("DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402

from helpers import TESTS, write_jsonl, write_recipe  # noqa: E402
from tiny import preference_rows, save_tiny_causal_lm  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A tiny random Llama + word-level tokenizer saved like any checkpoint."""
    return save_tiny_causal_lm(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def preference_file(tmp_path) -> str:
    return write_jsonl(tmp_path / "pairs.jsonl", preference_rows(16))


@pytest.fixture
def tok(tiny_model_dir):
    """The tiny model's tokenizer, loaded as a TRL test loads its model's (the parity suite)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture
def tiny_recipe(tmp_path, tiny_model_dir, preference_file):
    """Write a recipe for the tiny model; returns a function(extra: dict) -> recipe path."""

    def make(extra: dict | None = None, name: str = "recipe.yaml") -> str:
        config = {"model_name_or_path": tiny_model_dir, "dataset_name": preference_file,
                  "output_dir": str(tmp_path / "out"), "per_device_train_batch_size": 4, "max_steps": 2,
                  "max_length": 64, "learning_rate": 1e-3}
        return write_recipe(tmp_path / name, config, extra)

    return make


@pytest.fixture
def pretend_gpu(monkeypatch):
    """Consumer-GPU recipes ask for bf16; parsing them here must not fail because this machine has no GPU."""
    import transformers.training_args as training_args

    monkeypatch.setattr(training_args, "is_torch_bf16_gpu_available", lambda *a, **k: True)


@pytest.fixture
def run_cli(capsys):
    """Run the CLI in-process: returns (exit_code, stdout, stderr)."""
    from trl_plugins.cli.main import main

    def run(*args: str):
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture
def no_model_loading(monkeypatch):
    """Fail the test if anything tries to load a model (bad input must stop before that)."""
    import trl_plugins.models.loading as models

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded although the input is bad")

    monkeypatch.setattr(models, "load_model", refuse)
    monkeypatch.setattr(models, "embedded_model_path", refuse)


# -- third-party plugin packages -----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def plugin_sites(tmp_path_factory) -> dict[str, str]:
    """Install each test plugin package (tests/plugins/NAME, a real pyproject) with pip into its own directory."""
    sites = {}
    for source in sorted((TESTS / "plugins").iterdir()):
        if not (source / "pyproject.toml").is_file():
            continue
        target = tmp_path_factory.mktemp(f"site-{source.name}")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
             "--disable-pip-version-check", "--target", str(target), str(source)],
            check=True,
            capture_output=True,
        )
        sites[source.name] = str(target)
    return sites


@pytest.fixture
def with_plugins(plugin_sites, monkeypatch):
    """Put the named test plugin packages on sys.path and reload the registry; restored afterwards."""
    import trl_plugins.registry as registry

    def activate(*names: str):
        for name in names:
            monkeypatch.syspath_prepend(plugin_sites[name])
        return registry.get_registry(reload=True)

    yield activate
    registry._REGISTRY = None


@pytest.fixture(scope="session")
def smollm2_path() -> str:
    """The embedded SmolLM2-135M-Instruct, converted once and cached (about 20 s the first time)."""
    from trl_plugins.models.loading import resolve_model_path

    return resolve_model_path("embedded:smollm2-135m-instruct")
