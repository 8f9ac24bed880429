"""Helpers and shared data the tests import (``from helpers import ...``; pyproject's ``pythonpath = ["tests"]`` puts
this folder on ``sys.path``): paths, the prompts of the tiny sampling runs, files written for a run and read back, the
CPU settings of tiny training runs, a registered method by name, trainable weights to compare, scripted samples."""

from __future__ import annotations

import json
from pathlib import Path

from tiny import CHAT_TEMPLATE

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

# prompt-only data of the tiny sampling runs (the last one has an `answer`: 3)
PROMPTS = ["write a review of the movie .", "what was the film like ?", "how was the story ?",
           "tell me about the plot .", "was the acting good ?", "what is one plus two ?"]
# a chat template with the tools block and a system line from chat_template_kwargs (`mood`) before the messages, as
# Qwen's renders them
TOOLS_TEMPLATE = ("{% if tools %}<|im_start|>system {% for tool in tools %}{{ tool['function']['name'] }} {% endfor %}"
                  "<|im_end|> {% endif %}{% if mood %}<|im_start|>system {{ mood }} <|im_end|> {% endif %}"
                  + CHAT_TEMPLATE)

# the CPU settings every tiny training run here shares (TRL configs default to bf16, which a CPU lacks)
CPU_RUN = {"bf16": False, "activation_checkpointing": False, "use_cpu": True, "report_to": "none",
           "save_strategy": "no", "logging_steps": 1, "disable_tqdm": True}


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def trainable(model) -> dict:
    """Copies of a model's trainable parameters, to tell whether training moved them."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def scripted_samples(candidates: list[tuple[str, bool]]):
    """A sampling trainer's generate stage that returns, for every prompt of ``PROMPTS``, one sample per
    ``(completion, finished)`` candidate (3 tokens each): ``trainer.generate_samples = scripted_samples([...])``."""
    from trl_plugins.sampling.records import Sample

    def generate_samples(k):
        rows = [(r, p, j, text, finished) for r, p in enumerate(PROMPTS) for j, (text, finished) in enumerate(candidates)]
        return [Sample(r, j, p, text, 3, finished, i) for i, (r, p, j, text, finished) in enumerate(rows)]

    return generate_samples


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
    and rewards were written, before its update stage; the test then resumes it."""
    import pytest

    original = trainer.update_policy

    def die(i, samples):
        if i == k:
            raise KeyboardInterrupt("killed")
        return original(i, samples)

    trainer.update_policy = die
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
