"""The recipe parser reads every YAML form TRL's own ``TrlParser`` reads — lists, a scalar for a list field, mappings,
JSON strings, the nested ``datasets:`` mixture — into the same dataclasses, field by field; and the command line takes
several values after one flag where a field holds one value or a list (``--report_to tensorboard wandb``).

    python -m pytest tests/test_recipe_forms.py -q
"""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from helpers import CPU_RUN

FORMS = {
    "lists": {"report_to": ["tensorboard", "wandb"], "lora_target_modules": ["q_proj", "v_proj"],
              "lora_modules_to_save": ["lm_head"]},
    "a scalar for a list field": {"report_to": "tensorboard", "lora_target_modules": "all-linear"},
    "mappings": {"gradient_checkpointing_kwargs": {"use_reentrant": False},
                 "model_init_kwargs": {"attn_implementation": "sdpa"},
                 "lr_scheduler_kwargs": {"power": 2.0}},
    "JSON strings": {"model_init_kwargs": '{"attn_implementation": "sdpa"}', "lr_scheduler_kwargs": '{"power": 2.0}',
                     "gradient_checkpointing_kwargs": '{"use_reentrant": true}'},
    "a datasets: mixture": {"datasets": [{"path": "json", "data_files": "a.jsonl", "columns": ["prompt", "chosen"]},
                                         {"path": "b.jsonl", "split": "train[:4]", "fraction": 0.5}],
                            "test_split_size": 0.25, "streaming": False},
    "numbers and text as YAML 1.1 reads them": {"learning_rate": "5e-7", "warmup_steps": 0.1, "seed": 7,
                                                "lr_scheduler_type": "cosine"},
}


def _write(tmp_path, keys: dict) -> str:
    path = tmp_path / "recipe.yaml"
    base = {"model_name_or_path": "some/model", "dataset_name": "some/data", "output_dir": str(tmp_path / "out"),
            **{k: v for k, v in CPU_RUN.items() if k in ("bf16", "use_cpu")}}
    path.write_text(yaml.safe_dump({**base, **keys}))
    return str(path)


def _trl_parse(recipe: str, config_cls, argv=()):
    from trl import DatasetMixtureConfig, ModelConfig, ScriptArguments, TrlParser

    parser = TrlParser((ScriptArguments, config_cls, ModelConfig, DatasetMixtureConfig))
    return parser.parse_args_and_config(["--config", recipe, *argv])


def _ours(recipe: str, config_cls, argv=()):
    from trl_plugins.run.recipe import StrictParser

    parsed, _ = StrictParser(config_cls).parse(list(argv), recipe)
    return parsed


def _differences(theirs, ours) -> list[str]:
    out = []
    for a, b in zip(theirs, ours, strict=True):
        for f in dataclasses.fields(a):  # ScriptArguments' fields: ours adds its own after them
            if getattr(a, f.name) != getattr(b, f.name):
                out.append(f"{type(a).__name__}.{f.name}: TRL {getattr(a, f.name)!r} vs ours {getattr(b, f.name)!r}")
    return out


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("trl_first", [True, False], ids=["after-TRL's-parser", "before-TRL's-parser"])
def test_every_yaml_form_gives_the_dataclasses_trl_gives(tmp_path, form, trl_first):
    """Both orders: TRL's parser narrows the dataclasses' field types in place when it is built (``report_to``
    becomes plain ``str``), and ours must read the annotations as written either way."""
    from trl import DPOConfig

    recipe = _write(tmp_path, FORMS[form])
    if trl_first:
        theirs, ours = _trl_parse(recipe, DPOConfig), _ours(recipe, DPOConfig)
    else:
        ours, theirs = _ours(recipe, DPOConfig), _trl_parse(recipe, DPOConfig)
    assert _differences(theirs, ours) == []
    if form == "a datasets: mixture":
        assert [d.path for d in ours[3].datasets] == ["json", "b.jsonl"] and ours[3].datasets[1].fraction == 0.5
    if form == "lists":
        assert ours[1].report_to == ["tensorboard", "wandb"]


def test_our_own_config_reads_the_forms_too(tmp_path):
    """ORPOConfig (a DPOConfig subclass of ours): the same values as TRL's DPOConfig for the fields they share."""
    from trl import DPOConfig

    from trl_plugins.trainers.orpo import ORPOConfig

    keys = {**FORMS["lists"], **FORMS["mappings"]}
    recipe = _write(tmp_path, keys)
    theirs, ours = _trl_parse(recipe, DPOConfig), _ours(recipe, ORPOConfig)
    for name in keys:
        target = "activation_checkpointing_kwargs" if name == "gradient_checkpointing_kwargs" else name
        holder = 2 if name.startswith("lora") else 1
        assert getattr(ours[holder], target) == getattr(theirs[holder], target), name


def test_several_values_after_one_flag(tmp_path):
    """``--report_to tensorboard wandb`` (TRL's own parser refuses the second value) gives what the YAML list gives;
    one value stays one value, as TRL's parser gives it."""
    from trl import DPOConfig

    recipe = _write(tmp_path, {})
    assert _ours(recipe, DPOConfig, ["--report_to", "tensorboard", "wandb"])[1].report_to == ["tensorboard", "wandb"]
    one = _ours(recipe, DPOConfig, ["--report_to", "wandb"])[1]
    assert one.report_to == _trl_parse(recipe, DPOConfig, ["--report_to", "wandb"])[1].report_to == ["wandb"]
    listed = _ours(recipe, DPOConfig, ["--lora_target_modules", "q_proj", "v_proj"])[2]
    assert listed.lora_target_modules == ["q_proj", "v_proj"]


@pytest.mark.parametrize(("keys", "expected"), [
    ({"report_to": {"a": 1}}, "'report_to' expects text, got a mapping"),
    ({"learning_rate": [1e-5, 2e-5]}, "'learning_rate' expects one value (a number), got a list"),
    ({"datasets": [{"pth": "x.jsonl"}]}, "datasets[0]: unknown key 'pth'; did you mean 'path'?"),
    ({"datasets": ["x.jsonl"]}, "datasets[0] must be a mapping of path, name"),
])
def test_a_form_trl_would_misread_is_refused_in_one_line(tmp_path, keys, expected):
    from trl import DPOConfig

    from trl_plugins.errors import ConfigError

    with pytest.raises(ConfigError) as raised:
        _ours(_write(tmp_path, keys), DPOConfig)
    assert expected in str(raised.value)
