"""``accelerate_config:``, ``num_processes:`` (any ``accelerate launch`` option) in a recipe or on the command line are
read as ``trl dpo --config`` reads them: the run re-launches itself under accelerate with them, the command line
winning over the recipe; a process already started by a launcher reads them as the launcher's and does not launch
again (trl_plugins/cli/train.py, trl_plugins/run/distributed.py).

    python -m pytest tests/test_launch_keys.py -q
"""

from __future__ import annotations

import pytest


@pytest.fixture
def launches(monkeypatch):
    """The ``accelerate launch`` arguments each relaunch would run with (nothing is started)."""
    import accelerate.commands.launch as accelerate_launch

    for name in ("ACCELERATE_MIXED_PRECISION", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    captured = []
    monkeypatch.setattr(accelerate_launch, "launch_command", captured.append)
    return captured


@pytest.mark.parametrize(("recipe_keys", "argv", "config", "processes"), [
    ({"accelerate_config": "multi_cpu", "num_processes": 2}, [], "multi_cpu", 2),
    ({"accelerate_config": "multi_cpu", "num_processes": 2}, ["--num_processes", "1"], "multi_cpu", 1),
    ({"accelerate_config": "multi_cpu"}, ["--accelerate_config", "cpu"], "cpu", None),
    ({"num_processes": 2}, ["--accelerate_config=multi_cpu"], "multi_cpu", 2),
    ({}, ["--num_processes", "2", "--accelerate_config", "multi_cpu"], "multi_cpu", 2),
])
def test_launcher_keys_relaunch_and_the_command_line_wins(run_cli, tiny_recipe, launches, recipe_keys, argv, config,
                                                          processes):
    recipe = tiny_recipe(recipe_keys)
    code, _, err = run_cli("train", "orpo", "--config", recipe, "--max_steps", "1", *argv)
    assert code == 0, err
    (args,) = launches
    assert args.config_file.endswith(f"accelerate_configs/{config}.yaml")
    assert args.num_processes == processes
    assert args.module and args.training_script == "trl_plugins"
    assert args.training_script_args == ["train", "orpo", "--config", recipe, "--max_steps", "1"]  # no launcher flag


def test_a_switch_is_written_only_when_true(run_cli, tiny_recipe, launches):
    code, _, err = run_cli("train", "orpo", "--config", tiny_recipe({"num_processes": 1, "cpu": True,
                                                                     "multi_gpu": False}))
    assert code == 0, err
    assert launches[0].cpu is True and launches[0].multi_gpu is False and launches[0].config_file is None


def test_no_launcher_key_trains_in_process(run_cli, tiny_recipe, launches, no_model_loading):
    code, _, err = run_cli("train", "orpo", "--config", tiny_recipe())
    assert code == 1 and "a model was loaded" in err and launches == []  # went on to train here (model refused)


def test_the_launch_is_checked_before_the_processes_start(run_cli, tiny_recipe, launches):
    """``accelerate_config: zero2`` without DeepSpeed: one line, exit 2, nothing launched (TRL's docs example)."""
    from trl_plugins.run.distributed import deepspeed_installed

    if deepspeed_installed():
        pytest.skip("DeepSpeed is installed here")
    code, _, err = run_cli("train", "orpo", "--config", tiny_recipe({"accelerate_config": "zero2"}))
    lines = err.strip().splitlines()
    assert code == 2 and lines == ["error: zero2: DeepSpeed is not installed: pip install 'trl-plugins[deepspeed]'"]
    assert launches == []
    code, _, err = run_cli("train", "orpo", "--config", tiny_recipe({"accelerate_config": "nonesuch"}))
    assert code == 2 and "accelerate_config 'nonesuch' is neither a file nor a shipped config" in err


def test_under_a_launcher_the_keys_are_the_launchers(tiny_recipe, monkeypatch):
    """Inside the launched processes the recipe's launcher keys (and such flags) are left to the launcher."""
    from trl_plugins.registry import get_registry
    from trl_plugins.run.recipe import StrictParser

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    parser = StrictParser(get_registry().trainer("orpo").load()[1])
    (_, args, _, _), explicit = parser.parse(["--num_processes", "2", "--max_steps", "3"],
                                             tiny_recipe({"accelerate_config": "multi_cpu", "num_processes": 2}))
    assert args.max_steps == 3 and parser.launch == {"accelerate_config": "multi_cpu", "num_processes": 2}
    assert parser.launch_argv == ["--num_processes", "2"] and "num_processes" not in explicit


@pytest.mark.distributed
def test_a_recipe_that_names_its_launch_trains_once_under_it(tiny_recipe, tmp_path):
    """For real: the recipe's accelerate_config starts accelerate once; the launched process trains (it does not
    launch again) and saves the model."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    for name in ("PYTEST_CURRENT_TEST", "ACCELERATE_MIXED_PRECISION", "LOCAL_RANK"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "trl_plugins", "train", "orpo", "--config",
           tiny_recipe({"accelerate_config": "cpu", "num_processes": 1}), "--max_steps", "1"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("orpo done") == 1 and (tmp_path / "out" / "model.safetensors").is_file()
