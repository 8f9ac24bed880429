"""Every shipped recipe of the sampling trainers parses strictly with its trainer's config (no model, no data)."""

from __future__ import annotations

import pytest

from trl_plugins.registry import get_registry
from trl_plugins.run.recipe import StrictParser, shipped_recipes

NAMES = ("raft", "rejection-sampling", "rest", "rest-em", "iterative-dpo", "iterative-orpo")


def _recipes():
    for name in NAMES:
        spec = get_registry().trainer(name)
        for path in list(shipped_recipes(spec).values()):
            yield pytest.param(spec, path, id=f"{name}:{path.parent.name}/{path.name}")


def test_each_trainer_ships_a_demo_and_two_consumer_recipes():
    for name in NAMES:
        files = [str(p) for p in list(shipped_recipes(get_registry().trainer(name)).values())]
        stem = name.replace("-", "_")
        assert any(f.endswith(f"demo/{stem}.yaml") for f in files), files
        for model in ("qwen2.5-1.5b-instruct", "llama-3.1-8b-instruct"):
            assert any(f.endswith(f"{model}/{stem}/config_qlora.yaml") for f in files), files


@pytest.mark.parametrize("spec, path", list(_recipes()))
def test_recipe_parses_strictly(spec, path, pretend_gpu):
    _, config_cls = spec.load()
    (script_args, training_args, model_args, _), _ = StrictParser(config_cls).parse([], path)
    assert isinstance(training_args, config_cls)
    assert training_args.reward_funcs and script_args.dataset_name and model_args.model_name_or_path
    if path.name.endswith("qlora.yaml"):
        assert model_args.load_in_4bit and model_args.use_peft
