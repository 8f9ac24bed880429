"""Helpers the tests import (``from helpers import ...``; pyproject's ``pythonpath = ["tests"]`` puts this folder on
``sys.path``): paths, files written for a run, the CPU settings of tiny training runs, a registered method by name."""

from __future__ import annotations

import json
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

# the CPU settings every tiny training run here shares (TRL configs default to bf16, which a CPU lacks)
CPU_RUN = {"bf16": False, "activation_checkpointing": False, "use_cpu": True, "report_to": "none",
           "save_strategy": "no", "logging_steps": 1, "disable_tqdm": True}


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def trainer_args(tmp_path, **overrides) -> dict:
    """Keyword arguments of a short tiny-model training config (ORPO/KTO/DPO-style ``beta``); override any."""
    values = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_length=64, beta=0.1,
                  learning_rate=1e-2, max_steps=3, seed=0, **CPU_RUN)
    values.update(overrides)
    return values


def write_recipe(path: Path, config: dict, extra: dict | None = None) -> str:
    """A YAML recipe of ``config`` (CPU_RUN settings included) updated by ``extra``; returns its path."""
    import yaml

    path.write_text(yaml.safe_dump({**CPU_RUN, **config, **(extra or {})}))
    return str(path)


def method_of(name: str):
    """The run hooks of registered trainer ``name`` (an instance of its Method class), as the train flow makes them."""
    from trl_plugins.registry import get_registry

    spec = get_registry().trainer(name)
    return spec.load_method()(spec)


def build_trainer(name: str, recipe: str, *extra: str):
    """A registered trainer built from a recipe through the train flow (every input check first), output dir overwritten."""
    from trl_plugins.registry import get_registry
    from trl_plugins.run import flow

    run = flow.prepare_run(get_registry().trainer(name), ["--config", recipe, "--overwrite_output_dir", "true",
                                                            *extra])
    return flow.build_trainer(run)


def kill_in_iteration(trainer, k: int) -> None:
    """Train a sampling trainer that is killed (KeyboardInterrupt) in iteration ``k`` after that iteration's samples
    and rewards were written, before its update phase; the test then resumes it."""
    import pytest

    original = trainer.run_iteration

    def die(i, samples, rewards):
        if i == k:
            raise KeyboardInterrupt("killed")
        return original(i, samples, rewards)

    trainer.run_iteration = die
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
