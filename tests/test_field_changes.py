"""Keys from older transformers / TRL / alignment-handbook versions (trl_plugins/run/field_changes.py): every entry of
the table holds against the installed libraries; a same-meaning rename is read under its new name with one printed line,
whichever layer uses it (preset < recipe < command line); the rest are refused with their hint, every unknown key of a
recipe in one error.

    python -m pytest tests/test_field_changes.py -q
"""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from trl_plugins.errors import ConfigError, UsageError
from trl_plugins.run.field_changes import CHANGES, FIELD_CHANGES

from helpers import CPU_RUN


def _installed_fields() -> dict[str, set[str]]:
    """Field names of the installed configs a recipe is read into (and of trl-plugins' own run arguments)."""
    from transformers import TrainingArguments
    from trl import DatasetMixtureConfig, DPOConfig, KTOConfig, ModelConfig, RewardConfig, SFTConfig

    from trl_plugins.run.recipe import _run_arguments_class

    classes = (TrainingArguments, DPOConfig, KTOConfig, RewardConfig, SFTConfig, ModelConfig, DatasetMixtureConfig,
               _run_arguments_class())
    return {cls.__name__: {f.name for f in dataclasses.fields(cls)} for cls in classes}


@pytest.mark.parametrize("change", CHANGES, ids=lambda c: c.old)
def test_each_entry_holds_against_the_installed_libraries(change):
    from trl_plugins.run.distributed import launch_options

    fields = _installed_fields()
    holders = [name for name, names in fields.items() if change.old in names]
    if change.alias:  # a deprecated alias the library still takes: both names are fields of TrainingArguments
        assert "TrainingArguments" in holders and change.new in fields["TrainingArguments"]
    else:  # gone everywhere: a recipe using it can only mean the old field
        assert holders == [], f"{change.old!r} is still a field of {holders}: the entry is stale"
    if change.new is not None:
        assert any(change.new in names for names in fields.values()), f"{change.new!r} is no installed field"
    assert change.old not in launch_options(), f"{change.old!r} is an accelerate launch option: it goes to the launcher"
    assert change.since and (change.new or change.hint)


def _recipe(tmp_path, keys: dict, name="recipe.yaml") -> str:
    path = tmp_path / name
    base = {"model_name_or_path": "some/model", "dataset_name": "some/data", "output_dir": str(tmp_path / "out"),
            **{k: v for k, v in CPU_RUN.items() if k in ("bf16", "use_cpu")}}
    path.write_text(yaml.safe_dump({**base, **keys}))
    return str(path)


def _parse(recipe, *argv, config="orpo"):
    from trl_plugins.registry import get_registry
    from trl_plugins.run.recipe import StrictParser

    parsed, _ = StrictParser(get_registry().trainer(config).load()[1]).parse(list(argv), recipe)
    return parsed


def test_same_meaning_renames_are_read_under_the_new_name_with_one_line_each(tmp_path, capsys):
    recipe = _recipe(tmp_path, {"torch_dtype": "bfloat16", "evaluation_strategy": "steps", "warmup_ratio": 0.1,
                                "per_gpu_train_batch_size": 3, "no_cuda": True, "preprocessing_num_workers": 2})
    script_args, args, model_args, _ = _parse(recipe, "--eval_steps", "5")
    assert model_args.dtype == "bfloat16" and args.eval_strategy == "steps" and args.warmup_steps == 0.1
    assert args.per_device_train_batch_size == 3 and args.use_cpu is True and args.dataset_num_proc == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if "is read as" in line]
    assert len(lines) == 6 and all(line.startswith("trl-plugins: ") for line in lines)
    assert any("'torch_dtype' is read as 'dtype' (renamed in TRL 0.27)" in line for line in lines)


@pytest.mark.parametrize(("recipe_keys", "argv", "expected"), [
    ({"torch_dtype": "float32"}, ["--dtype", "bfloat16"], "bfloat16"),  # the command line's new name wins
    ({"dtype": "float32"}, ["--torch_dtype", "float16"], "float16"),  # the command line's old name wins
    ({"dtype": "float32"}, ["--torch_dtype=float16"], "float16"),
    ({"torch_dtype": "float16"}, [], "float16"),
])
def test_renamed_keys_keep_precedence(tmp_path, recipe_keys, argv, expected):
    assert _parse(_recipe(tmp_path, recipe_keys), *argv)[2].dtype == expected


def test_a_recipe_key_beats_the_presets_whichever_name(tmp_path, pretend_gpu):
    recipe = _recipe(tmp_path, {"peft_preset": "qlora-24gb", "gradient_checkpointing": False, "bf16": True,
                                "use_cpu": False})
    assert _parse(recipe)[1].activation_checkpointing is False


def test_a_ratio_of_one_is_not_migrated(tmp_path):
    """warmup_steps >= 1 counts steps: warmup_ratio 1.0 would mean one step, so it is refused with the hint."""
    with pytest.raises(ConfigError, match="'warmup_ratio': removed in transformers 5.0: warmup_steps takes the ratio"):
        _parse(_recipe(tmp_path, {"warmup_ratio": 1.0}))
    with pytest.raises(UsageError, match="--warmup_ratio"):
        _parse(_recipe(tmp_path, {}), "--warmup_ratio", "1.0")


def test_every_unknown_key_is_in_one_error_with_its_hint(tmp_path):
    recipe = _recipe(tmp_path, {"max_prompt_length": 512, "torch_dtp": "bfloat16", "bogus_key": 1,
                                "learning_rate": "fast", "dataset_mixer": {"a": 1.0}})
    with pytest.raises(ConfigError) as raised:
        _parse(recipe)
    lines = raised.value.lines()
    assert lines[0] == f"{recipe}: 5 keys to fix (nothing was loaded)"
    assert len(lines) == 6
    body = "\n".join(lines[1:])
    assert "'max_prompt_length': removed in TRL 0.29 (DPO; KTO 0.27): prompts are no longer cut" in body
    assert "unknown key 'torch_dtp'; did you mean 'dtype'?" in body
    assert "unknown key 'bogus_key'" in body and "'learning_rate' expects a number, got 'fast'" in body
    assert "'dataset_mixer': removed in alignment-handbook #221: write the mixture as dataset_mixture:" in body


def test_every_unknown_flag_is_in_one_error(tmp_path):
    with pytest.raises(ConfigError) as raised:
        _parse(_recipe(tmp_path, {}), "--max_stpes", "3", "--max_prompt_length", "5")
    assert raised.value.lines() == ["command line: 2 unknown arguments",
                                    "  unknown argument '--max_stpes'; did you mean '--max_steps'?",
                                    f"  unknown argument '--max_prompt_length' ({FIELD_CHANGES['max_prompt_length'].message()})"]


def test_the_cli_prints_the_header_and_one_line_per_key_and_loads_nothing(run_cli, tiny_recipe, no_model_loading):
    code, _, err = run_cli("train", "orpo", "--config", tiny_recipe({"max_prompt_length": 64, "betta": 0.1}))
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err
    assert lines[0].startswith("error: ") and lines[0].endswith("2 keys to fix (nothing was loaded)")
    assert lines[1].startswith("error:   'betta'") or lines[1].startswith("error:   unknown key 'betta'")
    assert "max_prompt_length" in lines[2] and len(lines) == 3
