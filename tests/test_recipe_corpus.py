"""Recipes written by others (tests/recipe_corpus/, sources in its SOURCES file) with only the model and the dataset
swapped for offline ones (a test split of 2000 rows becomes 4, the offline data being small) and no bf16 on the CPU:
each parses as TRL would read it (keys TRL 1.16 itself refuses get the hint of trl_plugins/run/field_changes.py),
asks for nothing this machine lacks without saying so in one line, and the ones a trainer of ours runs train one step.

No trainer here is plain DPO: the alignment-handbook DPO recipes are parsed against ORPO's config (a DPOConfig) and
iterative-dpo's and checked up to the model (data, mixture, lengths), not trained. TRL's SFT example is parsed against
raft's config (an SFTConfig).

    python -m pytest tests/test_recipe_corpus.py -q
"""

from __future__ import annotations

import copy

import pytest
import yaml

from helpers import TESTS, write_jsonl
from tiny import preference_rows, tiny_causal_lm, tiny_tokenizer

CORPUS = TESTS / "recipe_corpus"
DATASET_KEYS = ("dataset_name", "datasets", "dataset_mixture", "dataset_mixer")


class Case:
    def __init__(self, trainer: str, refused=(), migrated=(), run=False, missing=(), launch=None):
        self.trainer, self.refused, self.migrated, self.run = trainer, set(refused), set(migrated), run
        self.missing, self.launch = missing, launch


HANDBOOK_MIGRATED = {"torch_dtype", "gradient_checkpointing", "gradient_checkpointing_kwargs"}
CASES = {
    "handbook_zephyr-141b-A35b_orpo_config_full.yaml": Case(
        "orpo", refused={"max_prompt_length"}, migrated=HANDBOOK_MIGRATED, run=True,
        missing=("report_to 'tensorboard'", "attn_implementation 'flash_attention_2'")),
    "handbook_zephyr-7b-beta_dpo_config_qlora.yaml": Case(
        "orpo", refused={"max_prompt_length", "dataset_mixer", "dataset_splits"},
        migrated=HANDBOOK_MIGRATED | {"warmup_ratio"}, missing=("attn_implementation 'flash_attention_2'",)),
    "handbook_smollm2_dpo_config.yaml": Case(
        "orpo", refused={"max_prompt_length"}, migrated=HANDBOOK_MIGRATED | {"warmup_ratio"},
        missing=("report_to 'tensorboard'",)),
    "trl_scripts_kto_qlora.yaml": Case("kto-weighted", run=True),
    "trl_examples_reward_modeling_lora.yaml": Case("margin-rm", run=True),
    "trl_clis_reward_mixture.yaml": Case("margin-rm", run=True),
    "trl_clis_kto_num_processes.yaml": Case("kto-weighted", launch={"num_processes": 4}),
    "trl_clis_dpo_accelerate_config.yaml": Case("orpo", launch={"accelerate_config": "zero2"}),
    "trl_example_config.yaml": Case("raft"),
}


def test_the_corpus_is_the_cited_files():
    sources = (CORPUS / "SOURCES").read_text()
    files = sorted(p.name for p in CORPUS.glob("*.yaml"))
    assert files == sorted(CASES) and all(f"\n{name} " in sources for name in files)


# -- the swap: model, dataset (in the recipe's own form), CPU precision ----------------------------------------------
def _rows(trainer: str, n: int, tag: str, conversational: bool) -> list[dict]:
    rows = preference_rows(n, conversational=conversational)
    if trainer == "kto-weighted":  # unpaired: the chosen half desirable, the rejected half not
        return ([{"prompt": r["prompt"], "completion": r["chosen"], "label": True} for r in rows[: n // 2]]
                + [{"prompt": r["prompt"], "completion": r["rejected"], "label": False} for r in rows[n // 2:]])
    return [{**r, "prompt": r["prompt"] if conversational else f"{r['prompt']} {tag}"} for r in rows]


def _folder(tmp_path, trainer: str, tag: str, conversational: bool, splits=("train", "test")) -> str:
    """A local dataset folder with train.jsonl and test.jsonl (datasets names the splits from the file names)."""
    folder = tmp_path / f"data-{tag}"
    for split in splits:
        write_jsonl(folder / f"{split}.jsonl", _rows(trainer, 16 if split == "train" else 8, tag, conversational))
    return str(folder)


def _model(tmp_path, quantized: bool) -> str:
    path = tmp_path / ("tiny-64" if quantized else "tiny")
    if not (path / "config.json").is_file():
        tokenizer = tiny_tokenizer()
        sizes = {"hidden_size": 64, "intermediate_size": 128} if quantized else {}  # 4-bit blocks of 64
        tiny_causal_lm(tokenizer, **sizes).save_pretrained(path)
        tokenizer.save_pretrained(path)
    return str(path)


def _split(entry: dict) -> str:
    """The handbook's train_prefs / test_prefs are the offline data's train / test."""
    return "test" if "test" in entry.get("split", "train") else "train"


def offline(name: str, tmp_path) -> dict:
    """The recipe as published, with its model and dataset swapped for offline ones (the dataset in the recipe's own
    form: a name, TRL's datasets: list, the handbook's dataset_mixture: or its older dataset_mixer:), bf16 off and
    use_cpu on."""
    recipe = yaml.safe_load((CORPUS / name).read_text())
    trainer = CASES[name].trainer
    conversational = "chat_template" in recipe  # the handbook ORPO recipe's data is chat messages
    recipe["model_name_or_path"] = _model(tmp_path, bool(recipe.get("load_in_4bit")))
    if "dataset_name" in recipe:
        recipe["dataset_name"] = _folder(tmp_path, trainer, "a", conversational)
    if "datasets" in recipe:
        recipe["datasets"] = [{**entry, "path": _folder(tmp_path, trainer, f"m{i}", conversational, ("train",))}
                              for i, entry in enumerate(recipe["datasets"])]
    if "dataset_mixture" in recipe:  # its splits named as the offline data names them; a test split it can hold
        for i, entry in enumerate(recipe["dataset_mixture"]["datasets"]):
            entry.update(id=_folder(tmp_path, trainer, f"h{i}", conversational), config=None, split=_split(entry))
        recipe["dataset_mixture"]["test_split_size"] = 4
    if "dataset_mixer" in recipe:
        recipe["dataset_mixer"] = {_folder(tmp_path, trainer, "x", conversational): 1.0}
        recipe["dataset_splits"] = [_split({"split": split}) for split in recipe["dataset_splits"]]
    recipe.update(bf16=False, use_cpu=True)
    return recipe


def following_the_hints(recipe: dict) -> dict:
    """What the refusal's hints say to do: drop max_prompt_length (filter long prompts instead); write the handbook's
    old dataset_mixer: as its dataset_mixture:."""
    recipe = copy.deepcopy(recipe)
    recipe.pop("max_prompt_length", None)
    if "dataset_mixer" in recipe:
        (folder, weight), = recipe.pop("dataset_mixer").items()
        recipe["dataset_mixture"] = {"datasets": [{"id": folder, "split": split, "weight": weight}
                                                  for split in recipe.pop("dataset_splits")], "test_split_size": 4}
    return recipe


def _write(tmp_path, recipe: dict, name="recipe.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return str(path)


def _parse(trainer: str, recipe: str, *argv: str):
    from trl_plugins.registry import get_registry
    from trl_plugins.run.recipe import StrictParser

    parser = StrictParser(get_registry().trainer(trainer).load()[1])
    parsed, _ = parser.parse(list(argv), recipe)
    return parser, parsed


# -- parse: unchanged but for the swap ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CASES))
def test_parses_as_trl_reads_it_with_hints_for_what_trl_refuses(name, tmp_path, capsys):
    from trl_plugins.errors import ConfigError

    case = CASES[name]
    recipe = _write(tmp_path, offline(name, tmp_path))
    if case.refused:
        with pytest.raises(ConfigError) as raised:
            _parse(case.trainer, recipe)
        named = {line.split("'")[1] for line in raised.value.lines()[1:]} if len(case.refused) > 1 else {
            raised.value.lines()[0].split(": '")[1].split("'")[0]}
        assert named == case.refused, raised.value.lines()
        recipe = _write(tmp_path, following_the_hints(offline(name, tmp_path)), "followed.yaml")
    parser, _ = _parse(case.trainer, recipe)
    assert parser.launch == (case.launch or {})
    notes = {line.split("'")[1] for line in capsys.readouterr().err.splitlines() if " is read as " in line}
    assert notes == case.migrated


@pytest.mark.parametrize("name", ["handbook_zephyr-7b-beta_dpo_config_qlora.yaml", "handbook_smollm2_dpo_config.yaml"])
def test_iterative_dpo_reads_a_handbook_dpo_recipe_but_for_its_evaluation(name, tmp_path):
    """iterative-dpo (DPO on pairs it samples) parses the handbook's DPO recipes except eval_strategy, which a sampling
    trainer replaces with held-out prompts: refused in its one line."""
    from trl_plugins.errors import ConfigError

    recipe = following_the_hints(offline(name, tmp_path))
    with pytest.raises(ConfigError, match="eval_strategy does not apply to sampling trainers: use heldout_prompts"):
        _parse("iterative-dpo", _write(tmp_path, recipe))
    recipe.pop("eval_strategy")
    _, (_, args, _, _) = _parse("iterative-dpo", _write(tmp_path, recipe, "no_eval.yaml"))
    assert args.beta == recipe["beta"] and args.learning_rate == recipe["learning_rate"]


def test_the_handbook_recipes_keep_their_meaning(tmp_path):
    """What the migrated and mapping keys of the handbook's ORPO recipe became."""
    name = "handbook_zephyr-141b-A35b_orpo_config_full.yaml"
    _, (script_args, args, model_args, _) = _parse("orpo", _write(tmp_path, following_the_hints(offline(name, tmp_path))))
    assert model_args.dtype == "bfloat16" and args.activation_checkpointing is True
    assert args.activation_checkpointing_kwargs == {"use_reentrant": True}
    assert args.report_to == ["tensorboard", "wandb"] and args.lr_scheduler_type == "inverse_sqrt"
    assert script_args.chat_template.startswith("{% for message in messages %}")
    _, (_, args, _, _) = _parse("orpo", _write(tmp_path, following_the_hints(
        offline("handbook_smollm2_dpo_config.yaml", tmp_path)), "smol.yaml"))
    assert args.warmup_steps == 0.1 and args.beta == 0.5


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.missing])
def test_what_the_recipe_needs_and_this_machine_lacks_is_one_line(name, tmp_path, run_cli, no_model_loading):
    """Unchanged (after the swap and the hints), the run stops before any model with the first thing missing here:
    tensorboard/wandb are not installed, flash-attention needs a GPU; each asked-for item alone says so too."""
    case = CASES[name]
    recipe = following_the_hints(offline(name, tmp_path))
    for missing in case.missing:
        key = missing.split()[0]
        alone = {k: v for k, v in recipe.items() if k not in ("report_to", "attn_implementation")}
        alone[key] = recipe[key]
        code, _, err = run_cli("check-data", case.trainer, "--config", _write(tmp_path, alone, f"{key}.yaml"))
        lines = [line for line in err.splitlines() if line.startswith("error")]
        assert code == 2 and len(lines) == 1 and missing in lines[0], err


def test_a_dpo_recipe_with_a_handbook_mixture_is_checked_up_to_the_model(tmp_path, no_model_loading):
    """smollm2's DPO recipe through every check before the model (its dataset_mixture: loaded with the handbook's
    rules, the lengths measured), under ORPO's config."""
    from trl_plugins.registry import get_registry
    from trl_plugins.run import flow

    recipe = following_the_hints(offline("handbook_smollm2_dpo_config.yaml", tmp_path))
    recipe["report_to"] = "none"
    run = flow.prepare_run(get_registry().trainer("orpo"), ["--config", _write(tmp_path, recipe),
                                                            "--output_dir", str(tmp_path / "out")])
    assert len(run.datasets["train"]) + len(run.datasets["test"]) == 16 + 8  # train_prefs + test_prefs, all kept
    assert len(run.datasets["test"]) == 4 and run.datasets["train"].column_names == ["chosen", "rejected"]


# -- one training step --------------------------------------------------------------------------------------------------
MACHINE = {"report_to": "none", "attn_implementation": "sdpa", "push_to_hub": "false"}  # what this machine lacks


@pytest.fixture
def library_log_levels():
    """The handbook recipes say log_level: info, which the trainer applies to transformers' logger for the whole
    process: put it back so later tests' captured output stays theirs."""
    import transformers

    level = transformers.logging.get_verbosity()
    yield
    transformers.logging.set_verbosity(level)


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.run])
def test_runs_one_step(name, tmp_path, monkeypatch, library_log_levels):
    """The recipe (after the swap and the hints) trains one optimizer step with our trainer, its gradients flowing
    (the recipes' warmups make the first step's learning rate 0, so the weights need not move yet); on the command line
    only the step count, logging every step, the output folder and what this machine lacks (MACHINE)."""
    import math

    from trl_plugins.registry import get_registry
    from trl_plugins.run import flow

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")  # in-process, as under `accelerate launch`
    case = CASES[name]
    recipe = following_the_hints(offline(name, tmp_path))
    argv = ["--config", _write(tmp_path, recipe), "--max_steps", "1", "--logging_steps", "1",
            "--output_dir", str(tmp_path / "out")]
    for key, value in MACHINE.items():
        if key in recipe:
            argv += [f"--{key}", value]
    trainer = flow.train(flow.prepare_run(get_registry().trainer(case.trainer), argv))
    (log,) = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert trainer.state.global_step == 1 and math.isfinite(log["loss"])
    assert math.isfinite(log["grad_norm"]) and log["grad_norm"] > 0
    if recipe.get("use_peft"):
        assert any("lora_" in n for n, p in trainer.model.named_parameters() if p.requires_grad)


def test_the_handbook_chat_template_is_the_tokenizers(tmp_path, no_model_loading):
    """The ORPO recipe's chat_template (the handbook's key) is the template every tokenization of the run uses."""
    from trl_plugins.registry import get_registry
    from trl_plugins.run import flow

    recipe = following_the_hints(offline("handbook_zephyr-141b-A35b_orpo_config_full.yaml", tmp_path))
    recipe.update(MACHINE, push_to_hub=False)
    run = flow.prepare_run(get_registry().trainer("orpo"), ["--config", _write(tmp_path, recipe),
                                                            "--output_dir", str(tmp_path / "out")])
    tokenizer = run.load_processing_class()
    assert tokenizer.chat_template == recipe["chat_template"]
    assert "<|user|>\nhello<eos>" in tokenizer.apply_chat_template([{"role": "user", "content": "hello"}],
                                                                   tokenize=False)
