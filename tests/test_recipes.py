"""Every shipped recipe parses strictly with its trainer's config (the alignment-handbook's stale QLoRA recipe is
the cautionary tale), and every shipped accelerate config loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from trl_plugins.imports import resource_dir
from trl_plugins.registry import get_registry
from trl_plugins.run.recipe import StrictParser, shipped_recipes

RECIPES = resource_dir("trl_plugins:recipes")
ACCELERATE = RECIPES / "accelerate_configs"
COMPARE_TASKS = RECIPES / "compare"  # task files of `trl-plugins compare`, not recipes (tests/test_compare.py)
RECIPE_FILES = sorted(p for p in RECIPES.rglob("*.yaml") if not {ACCELERATE, COMPARE_TASKS} & set(p.parents))


def _owners(path: Path):
    return [spec for spec in get_registry().trainers.values() if path in list(shipped_recipes(spec).values())]


def test_there_are_recipes():
    assert RECIPE_FILES and any("demo" in p.parts for p in RECIPE_FILES)


@pytest.mark.parametrize("path", RECIPE_FILES, ids=lambda p: str(p.relative_to(RECIPES)))
def test_recipe_parses_strictly(path, pretend_gpu):
    owners = _owners(path)
    assert owners, f"{path} belongs to no registered trainer (name the file or a folder after the trainer)"
    for spec in owners:
        _, config_cls = spec.load()
        (script_args, training_args, model_args, _), explicit = StrictParser(config_cls).parse([], path)
        assert model_args.model_name_or_path, f"{path}: no model_name_or_path"
        assert script_args.dataset_name or "datasets" in explicit, f"{path}: no dataset"
        assert training_args.output_dir.startswith("outputs/"), f"{path}: write under outputs/"
        if "demo" in path.parts:  # demo recipes run offline on a CPU
            assert model_args.model_name_or_path.startswith("embedded:")
            assert training_args.use_cpu and not training_args.bf16
            assert script_args.dataset_name.startswith("embedded:")
        else:  # consumer-GPU recipes: a preset that fits one card
            assert model_args.use_peft and model_args.lora_target_modules
            assert "peft_preset" in explicit
            if path.stem.endswith("qlora"):
                assert model_args.load_in_4bit and model_args.bnb_4bit_quant_type == "nf4"


def test_preset_values_fill_in_and_recipe_keys_win(tmp_path, pretend_gpu):
    spec = get_registry().trainer("orpo")
    _, config_cls = spec.load()
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model_name_or_path: m\ndataset_name: d\noutput_dir: outputs/x\npeft_preset: qlora-24gb\n"
                      "lora_r: 8\n")
    (_, training_args, model_args, _), _ = StrictParser(config_cls).parse(["--lora_alpha", "4"], recipe)
    assert model_args.load_in_4bit and model_args.use_bnb_nested_quant
    assert model_args.lora_r == 8 and model_args.lora_alpha == 4  # recipe and CLI beat the preset
    assert training_args.optim == "paged_adamw_8bit" and training_args.gradient_checkpointing
    assert training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps == 16


@pytest.mark.parametrize(("recipe_line", "argv", "expected"), [
    ("gradient_checkpointing: false", [], False),  # old name in the recipe beats the preset's new name
    ("activation_checkpointing: false", ["--gradient_checkpointing", "true"], True),  # old name on the CLI wins
    ("gradient_checkpointing: true", ["--activation_checkpointing=false"], False),
])
def test_renamed_fields_keep_precedence(tmp_path, pretend_gpu, recipe_line, argv, expected):
    """transformers 5.25 renamed gradient_checkpointing to activation_checkpointing and lets the new name win over
    the old: each layer's value is read under the current name, so preset < recipe < command line still holds."""
    _, config_cls = get_registry().trainer("orpo").load()
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model_name_or_path: m\ndataset_name: d\noutput_dir: outputs/x\npeft_preset: qlora-24gb\n"
                      f"{recipe_line}\n")
    (_, training_args, _, _), _ = StrictParser(config_cls).parse(argv, recipe)
    assert training_args.activation_checkpointing is expected and training_args.gradient_checkpointing is expected


@pytest.mark.parametrize("path", sorted(ACCELERATE.glob("*.yaml")), ids=lambda p: p.stem)
def test_accelerate_config_loads(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))
    assert config.compute_environment.value == "LOCAL_MACHINE"


def test_shipped_accelerate_configs_cover_the_documented_set():
    assert {p.stem for p in ACCELERATE.glob("*.yaml")} >= {"single_gpu", "multi_gpu", "zero2", "zero3", "fsdp", "cpu"}


def test_a_shipped_recipe_name_wins_over_a_folder_of_the_same_name():
    """margin-rm ships demo/margin_rm.yaml and demo/margin_rm/imdb_continuations.yaml: `--config demo/margin_rm` is
    the first, the folder's recipe is named in full."""
    from trl_plugins.run.recipe import resolve_recipe

    spec = get_registry().trainer("margin-rm")
    assert resolve_recipe(spec, "demo/margin_rm") == RECIPES / "demo" / "margin_rm.yaml"
    assert resolve_recipe(spec, "demo/margin_rm.yaml") == RECIPES / "demo" / "margin_rm.yaml"
    assert (resolve_recipe(spec, "demo/margin_rm/imdb_continuations")
            == RECIPES / "demo" / "margin_rm" / "imdb_continuations.yaml")
    assert resolve_recipe(get_registry().trainer("orpo"), "demo") == RECIPES / "demo" / "orpo.yaml"
