"""Length checks before any model loads: each trainer's predicted dropped/truncated rows equal what its TRL parent
really does (the real trainers' dataset preparation and collators on tiny models), the sampled path is labelled an
estimate, and a run with no row left stops with one line."""

from __future__ import annotations

import copy
import json
import random

import pytest
import torch
from datasets import Dataset

from trl_plugins.checks.lengths import LengthRule, check_lengths, generic_rule, length_report, rule_for
from trl_plugins.errors import ConfigError, DataError

from helpers import method_of, trainer_args, write_jsonl, write_recipe
from tiny import tiny_causal_lm, tiny_llama_config, tiny_tokenizer

FILL = "the movie was very good and the story was fun but the plot was dull".split()
LIMIT = 48


def words(n: int, offset: int = 0) -> str:
    return " ".join(FILL[(offset + i) % len(FILL)] for i in range(n))


def varied_rows(n: int, conversational: bool = False, seed: int = 0, prompt_sizes=(3, 8, 30, 60),
                implicit: bool = False) -> list[dict]:
    """Preference rows of mixed lengths: short, truncated and prompt-filling ones against :data:`LIMIT`."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        p, c, r = rng.choice(prompt_sizes), rng.randint(1, 40), rng.randint(1, 40)
        prompt, chosen, rejected = words(p, i), words(c, i + 1), words(r, i + 2)
        if conversational:
            rows.append({"prompt": [{"role": "user", "content": prompt}],
                         "chosen": [{"role": "assistant", "content": chosen}],
                         "rejected": [{"role": "assistant", "content": rejected + " no"}]})
        elif implicit:
            rows.append({"chosen": f"{prompt} yes {chosen}", "rejected": f"{prompt} no {rejected}"})
        else:
            rows.append({"prompt": prompt, "chosen": " " + chosen, "rejected": " " + rejected + " no"})
    return rows


def bos_tokenizer():
    """The tiny tokenizer with a BOS token added in front of every text (as Llama's tokenizers do)."""
    from tokenizers import processors

    tokenizer = tiny_tokenizer()
    bos = "<|im_start|>"
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tokenizer.convert_tokens_to_ids(bos))])
    assert tokenizer("the movie")["input_ids"][0] == tokenizer.convert_tokens_to_ids(bos)
    return tokenizer


def args_without_beta(tmp_path, **overrides) -> dict:
    values = trainer_args(tmp_path, **overrides)
    values.pop("beta")  # a DPO-style field: reward and SFT configs have none
    return values


def _count(mask) -> int:
    return int(mask.sum())


# -- ORPO: DPOTrainer's preparation (drops prompts filling max_length) and its collator (truncates) ---------------
def with_tools(rows: list[dict], tokenizer) -> list[dict]:
    """Rows with a ``tools`` column (JSON text, some ``[]``) and a template that renders one token per tool."""
    tokenizer.chat_template = ("{% if tools is not none %}<|im_start|>system {% for t in tools %}tool {% endfor %}"
                               "<|im_end|> {% endif %}" + tokenizer.chat_template)
    tool = {"type": "function", "function": {"name": "lookup", "description": "the plot", "parameters": {}}}
    return [{**row, "tools": json.dumps([tool] * (i % 3))} for i, row in enumerate(rows)]


@pytest.mark.parametrize("conversational,mode,tokenizer_kind,implicit", [
    (False, "keep_start", "plain", False),
    (True, "keep_start", "plain", False),
    (False, "keep_end", "plain", False),
    (False, "keep_start", "bos", False),
    (False, "keep_start", "plain", True),
    (True, "keep_start", "tools", False),
])
def test_orpo_matches_dpo_preparation_and_collator(tmp_path, conversational, mode, tokenizer_kind, implicit):
    from trl_plugins.trainers.orpo import ORPOConfig, ORPOTrainer

    tokenizer = bos_tokenizer() if tokenizer_kind == "bos" else tiny_tokenizer()
    rows = varied_rows(40, conversational, implicit=implicit)
    if tokenizer_kind == "tools":
        rows = with_tools(rows, tokenizer)
    args = ORPOConfig(**trainer_args(tmp_path, max_length=LIMIT, truncation_mode=mode))
    trainer = ORPOTrainer(model=tiny_causal_lm(tokenizer), args=args, train_dataset=Dataset.from_list(rows),
                          processing_class=tokenizer)
    report = length_report("orpo", args, Dataset.from_list(rows), tokenizer, method_of("orpo"))
    prepared = trainer.train_dataset

    kept = ~report.dropped
    assert _count(report.dropped) == len(rows) - len(prepared)
    assert [len(x) for x in prepared["prompt_ids"]] == report.lengths.prompt[kept].tolist()
    assert [len(x) for x in prepared["chosen_ids"]] == report.lengths.completion("chosen")[kept].tolist()
    assert [len(x) for x in prepared["rejected_ids"]] == report.lengths.completion("rejected")[kept].tolist()

    truncated = 0
    for example in prepared:
        ids = {k: example[k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")}
        batch = trainer.data_collator([ids])
        cut = False
        for row, completion in enumerate(("chosen_ids", "rejected_ids")):
            full = ids["prompt_ids"] + ids[completion]
            n = int(batch["attention_mask"][row].sum())
            if n < len(full):
                cut = True
                expected = full[:LIMIT] if report.rule.side == "keep_start" else full[-LIMIT:]
                assert batch["input_ids"][row, :n].tolist() == expected  # the side the rule names
        truncated += cut
    assert _count(report.over) == truncated + (len(rows) - len(prepared))
    assert truncated > 0
    if mode == "keep_start":
        assert len(prepared) < len(rows) and "dropped (the prompt alone fills max_length)" in report.line()
    else:
        assert len(prepared) == len(rows) and "keep_end: the start is cut" in report.line()


# -- kto-weighted: KTOTrainer unpairs, drops prompts filling max_length, the collator keeps the start --------------
@pytest.mark.parametrize("paired,conversational", [(True, False), (False, False), (False, True)])
def test_kto_matches_kto_preparation_and_collator(tmp_path, paired, conversational):
    from trl_plugins.trainers.kto_weighted.trainer import KTOWeightedConfig, KTOWeightedTrainer

    tokenizer = tiny_tokenizer()
    rows = varied_rows(30, conversational, seed=1)
    if not paired:
        rows = [{"prompt": r["prompt"], "completion": r["chosen"] if i % 3 else r["rejected"], "label": bool(i % 3)}
                for i, r in enumerate(rows)]
    args = KTOWeightedConfig(**trainer_args(tmp_path, max_length=LIMIT, mix_batches=False))
    trainer = KTOWeightedTrainer(model=tiny_causal_lm(tokenizer), ref_model=tiny_causal_lm(tokenizer, seed=1),
                                 args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    report = length_report("kto-weighted", args, Dataset.from_list(rows), tokenizer, method_of("kto-weighted"))
    prepared = trainer.train_dataset
    examples = 2 * len(rows) if paired else len(rows)
    assert report.total == report.measured == examples

    kept = ~report.dropped
    assert _count(report.dropped) == examples - len(prepared) > 0
    assert [len(x) for x in prepared["prompt_ids"]] == report.lengths.prompt[kept].tolist()
    assert [len(x) for x in prepared["completion_ids"]] == report.lengths.completion("completion")[kept].tolist()
    truncated = 0
    for example in prepared:
        batch = trainer.data_collator([{"prompt_ids": example["prompt_ids"],
                                        "completion_ids": example["completion_ids"], "label": example["label"]}])
        full = example["prompt_ids"] + example["completion_ids"]
        n = int(batch["attention_mask"][0].sum())
        if n < len(full):
            truncated += 1
            assert report.rule.side == "keep_start" and batch["input_ids"][0, :n].tolist() == full[:LIMIT]
    assert truncated > 0
    assert _count(report.over) == truncated + examples - len(prepared)


# -- margin-rm: RewardTrainer drops every pair with a sequence longer than max_length -----------------------------
def _tiny_classifier(tokenizer):
    from transformers import LlamaForSequenceClassification

    torch.manual_seed(0)
    return LlamaForSequenceClassification(tiny_llama_config(len(tokenizer), num_labels=1))


@pytest.mark.parametrize("conversational,with_prompt,tokenizer_kind", [
    (False, True, "plain"), (True, True, "plain"), (False, False, "bos"), (True, False, "plain")])
def test_margin_rm_matches_reward_filter(tmp_path, conversational, with_prompt, tokenizer_kind):
    from trl_plugins.trainers.margin_rm.trainer import MarginRewardConfig, MarginRewardTrainer

    tokenizer = bos_tokenizer() if tokenizer_kind == "bos" else tiny_tokenizer()
    rows = varied_rows(40, conversational, seed=2)
    if not with_prompt:
        rows = [{"chosen": r["prompt"] + r["chosen"], "rejected": r["prompt"] + r["rejected"]} for r in rows]
    args = MarginRewardConfig(**args_without_beta(tmp_path, max_length=LIMIT))
    trainer = MarginRewardTrainer(model=_tiny_classifier(tokenizer), args=args, train_dataset=Dataset.from_list(rows),
                                  processing_class=tokenizer)
    report = length_report("margin-rm", args, Dataset.from_list(rows), tokenizer, method_of("margin-rm"))
    prepared = trainer.train_dataset
    assert 0 < _count(report.dropped) == len(rows) - len(prepared)
    kept = ~report.dropped
    assert [len(x) for x in prepared["chosen_ids"]] == report.lengths.sequences["chosen"][kept].tolist()
    assert [len(x) for x in prepared["rejected_ids"]] == report.lengths.sequences["rejected"][kept].tolist()
    line = report.line()
    assert f"{len(rows) - len(prepared)} of 40 pairs are longer than max_length={LIMIT} and will be dropped" in line
    report.check()  # rows remain: no error


def test_margin_rm_with_no_pair_left_is_one_line_data_error(tmp_path):
    """The crash of issue 10 (RewardTrainer filtered every pair, then num_samples=0), caught before any model."""
    from trl_plugins.trainers.margin_rm.trainer import MarginRewardConfig, MarginRewardTrainer

    tokenizer = tiny_tokenizer()
    rows = varied_rows(12, prompt_sizes=(60,))
    args = MarginRewardConfig(**args_without_beta(tmp_path, max_length=LIMIT))
    report = length_report("margin-rm", args, Dataset.from_list(rows), tokenizer, method_of("margin-rm"))
    with pytest.raises(DataError) as error:
        report.check()
    message = str(error.value)
    assert "\n" not in message and message.startswith("margin-rm: all 12 pairs are longer than max_length=48")
    assert "no pair would remain" in message
    trainer = MarginRewardTrainer(model=_tiny_classifier(tokenizer), args=args, train_dataset=Dataset.from_list(rows),
                                  processing_class=tokenizer)
    assert len(trainer.train_dataset) == 0  # what TRL really leaves


@pytest.mark.parametrize("name", ["orpo", "kto-weighted"])
def test_prompt_filling_max_length_everywhere_is_one_line_data_error(tmp_path, name):
    rows = varied_rows(10, prompt_sizes=(60,))
    config = type("C", (), {"max_length": LIMIT, "truncation_mode": "keep_start"})()
    with pytest.raises(DataError, match=r"no (pair|example) would remain") as error:
        length_report(name, config, Dataset.from_list(rows), tiny_tokenizer(), method_of(name)).check()
    assert "\n" not in str(error.value) and "alone fills max_length=48" in str(error.value)


# -- sampling trainers: SFTTrainer's preparation of each phase (prompt + completion, truncated, masked rows dropped) -
@pytest.mark.parametrize("conversational", [False, True])
def test_sampling_phase_matches_sft_preparation(tmp_path, conversational):
    from trl import SFTTrainer

    from trl_plugins.sampling.generation import prompt_text
    from trl_plugins.trainers.raft import RAFTConfig, RAFTTrainer

    tokenizer, new = tiny_tokenizer(), 12
    rng = random.Random(3)
    prompts = [words(rng.choice((3, 20, 40, 50)), i) for i in range(30)]
    if conversational:
        prompts = [[{"role": "user", "content": p}] for p in prompts]
    dataset = Dataset.from_list([{"prompt": p} for p in prompts])
    args = RAFTConfig(**args_without_beta(tmp_path, max_length=LIMIT, max_new_tokens=new,
                                          reward_funcs=["sampling_rewards:good_words"]))
    trainer = RAFTTrainer(model=tiny_causal_lm(tokenizer), args=args, train_dataset=dataset, processing_class=tokenizer)
    report = length_report("raft", args, dataset, tokenizer, method_of("raft"), model_context=60)

    # the prompts as the generation backend encodes them
    special = not conversational
    encoded = [len(tokenizer(prompt_text(tokenizer, p), add_special_tokens=special)["input_ids"]) for p in prompts]
    assert report.lengths.prompt.tolist() == encoded

    # a phase whose completions all run to max_new_tokens, prepared exactly as SamplingTrainer.sft_phase does
    completion = words(new, 5)
    rows = [{"prompt": p, "completion": [{"role": "assistant", "content": completion}] if conversational
             else " " + completion} for p in prompts]
    phase = SFTTrainer._prepare_dataset(trainer, Dataset.from_list(rows), tokenizer, args, args.packing, None, "phase")
    untruncated_args = copy.copy(args)
    untruncated_args.max_length = None
    full = SFTTrainer._prepare_dataset(trainer, Dataset.from_list(rows), tokenizer, untruncated_args, False, None, "f")
    full_lengths = [len(x) for x in full["input_ids"]]
    assert report.lengths.sequences["completion"].tolist() == full_lengths  # prompt + max_new_tokens + closing
    assert _count(report.dropped) == len(rows) - len(phase) > 0
    assert _count(report.over) == sum(n > LIMIT for n in full_lengths) > _count(report.dropped)
    kept = [ids for ids, dropped in zip(full["input_ids"], report.dropped) if not dropped]
    for truncated, whole in zip(phase["input_ids"], kept):
        assert truncated == whole[:LIMIT]  # keep_start: the end of the completion is cut
    line = report.line()
    beyond = sum(n + new > 60 for n in encoded)
    assert f"{beyond} of 30 prompts + max_new_tokens={new} exceed the model's context of 60 positions" in line
    assert f"{_count(report.dropped)} prompts alone fill max_length and will be dropped" in line


@pytest.mark.parametrize("strategy", ["bfd", "bfd_split"])
def test_sampling_phase_with_packing_matches_sft_packing(tmp_path, strategy):
    """Packing: bfd truncates each over-long sequence (keep_start) and drops nothing; bfd_split loses no token."""
    from trl import SFTTrainer

    from trl_plugins.trainers.raft import RAFTConfig, RAFTTrainer

    tokenizer, new = tiny_tokenizer(), 12
    prompts = [words(n, i) for i, n in enumerate([3, 20, 40, 50, 60, 5])]
    args = RAFTConfig(**args_without_beta(tmp_path, max_length=LIMIT, max_new_tokens=new, packing=True,
                                          packing_strategy=strategy, reward_funcs=["sampling_rewards:good_words"]))
    dataset = Dataset.from_list([{"prompt": p} for p in prompts])
    trainer = RAFTTrainer(model=tiny_causal_lm(tokenizer), args=args, train_dataset=dataset, processing_class=tokenizer)
    report = length_report("raft", args, dataset, tokenizer, method_of("raft"))
    rows = Dataset.from_list([{"prompt": p, "completion": " " + words(new, 5)} for p in prompts])
    packed = SFTTrainer._prepare_dataset(trainer, rows, tokenizer, args, True, None, "phase")
    full = report.lengths.sequences["completion"]
    kept_tokens = sum(len(x) for x in packed["input_ids"])
    assert _count(report.dropped) == 0 and _count(report.over) > 0
    if report.rule.action == "truncate":
        assert strategy == "bfd" and report.rule.side == "keep_start"
        assert kept_tokens == sum(min(int(n), LIMIT) for n in full)
    else:
        assert strategy == "bfd_split" and report.rule.action == "split" and kept_tokens == int(full.sum())


# -- mDPO: the vision collator (image tokens expanded by the processor, keep_start, nothing dropped) ---------------
@pytest.mark.parametrize("conversational", [False, True])
def test_mdpo_matches_vision_collator(conversational):
    from trl_plugins.embedded.tiny_llava import IMAGE_TOKEN
    from trl_plugins.trainers.mdpo.collator import DataCollatorForMDPO
    from trl_plugins.trainers.mdpo.trainer import MDPOConfig

    from tiny_vlm import shape_image, tiny_vlm

    model, processor = tiny_vlm()
    rng = random.Random(4)
    rows = []
    for i in range(12):
        prompt, chosen, rejected = words(rng.choice((2, 10, 30)), i), words(rng.randint(1, 30), i), words(3, i)
        image = shape_image("red", "square")
        if conversational:
            rows.append({"image": image, "prompt": [{"role": "user", "content": prompt}],
                         "chosen": [{"role": "assistant", "content": chosen}],
                         "rejected": [{"role": "assistant", "content": rejected}]})
        else:
            rows.append({"image": image, "prompt": f"{IMAGE_TOKEN} {prompt}", "chosen": " " + chosen,
                         "rejected": " " + rejected})
    args = MDPOConfig(output_dir="unused", max_length=LIMIT, bf16=False, use_cpu=True, report_to="none")
    report = length_report("mdpo", args, Dataset.from_list(rows), processor, method_of("mdpo"))
    collate = DataCollatorForMDPO(processor=processor, max_length=None)
    truncating = DataCollatorForMDPO(processor=processor, max_length=LIMIT)
    truncated = 0
    for i, row in enumerate(rows):
        batch = collate([dict(row)])
        chosen_n, rejected_n = (int(batch["attention_mask"][j].sum()) for j in (0, 1))
        assert chosen_n == report.lengths.sequences["chosen"][i] and rejected_n == report.lengths.sequences["rejected"][i]
        prompt_n = chosen_n - int(batch["completion_mask"][0].sum())
        assert prompt_n == report.lengths.prompt[i]
        cut = truncating([dict(row)])
        truncated += bool(int(cut["attention_mask"].sum(1).max()) < max(chosen_n, rejected_n))
        keep = min(chosen_n, LIMIT)  # keep_start: the first max_length tokens of the chosen sequence
        assert cut["input_ids"][0, :keep].tolist() == batch["input_ids"][0, :keep].tolist()
    assert 0 < truncated == _count(report.over)
    assert _count(report.dropped) == 0 and "keep_start: the end is cut" in report.line()
    report.check()

    # image tokens beyond max_length: TRL's model fails on them; we stop before the model loads
    short = MDPOConfig(output_dir="unused", max_length=10, bf16=False, use_cpu=True, report_to="none")
    with pytest.raises(DataError, match="image tokens beyond max_length=10") as error:
        length_report("mdpo", short, Dataset.from_list(rows), processor, method_of("mdpo")).check()
    assert "\n" not in str(error.value)
    batch = DataCollatorForMDPO(processor=processor, max_length=10)([dict(rows[0])])
    with pytest.raises(ValueError, match="Image features and image tokens do not match"):
        model(**{k: v for k, v in batch.items() if k != "completion_mask"})


# -- sampled estimate, generic trainers, rules --------------------------------------------------------------------
def test_more_than_20000_rows_is_a_labelled_seeded_estimate():
    n = 25_000
    rows = {"prompt": ["the movie was"] * n,
            "chosen": [" " + (words(60) if i % 10 == 0 else "good") for i in range(n)],
            "rejected": [" bad"] * n}
    dataset = Dataset.from_dict(rows)
    config = type("C", (), {"max_length": LIMIT, "seed": 0})()
    report = length_report("margin-rm", config, dataset, tiny_tokenizer(), method_of("margin-rm"))
    line = report.line()
    assert report.sampled and report.measured == 20_000 and report.total == n
    assert "25,000 standard pairs (an estimate from a seeded sample of 20,000)" in line
    estimate = int(line.split("≈")[1].split(" ")[0].replace(",", ""))
    assert abs(estimate - n // 10) < 0.05 * n // 10  # 2,500 true
    assert length_report("margin-rm", config, dataset, tiny_tokenizer(), method_of("margin-rm")).line() == line  # seeded


def test_third_party_trainer_gets_a_generic_report():
    rows = varied_rows(20)
    config = type("C", (), {"max_length": LIMIT})()
    line = length_report("someone-elses", config, Dataset.from_list(rows), tiny_tokenizer()).line()
    assert "are longer than max_length=48; what someone-elses does to them: unknown, see the trainer" in line
    no_limit = length_report("someone-elses", object(), Dataset.from_list(rows), tiny_tokenizer()).line()
    assert "the config has no max_length (longest" in no_limit and "tokens p50/p95/max: prompt" in no_limit


def test_rule_for_prefers_the_method_hook_and_builtin_rules():
    config = type("C", (), {"max_length": 256, "truncation_mode": "keep_start", "max_new_tokens": 32})()

    class Method:
        def length_rule(self, config):
            return LengthRule("max_length", config.max_length, "drop", layout="reward", unit="pairs")

    assert rule_for(config, Method()).action == "drop"
    assert rule_for(config, object()) == generic_rule(config)  # a method without the hook
    assert rule_for(config, method_of("orpo")).drop_prompt_fills and rule_for(config, method_of("orpo")).side == "keep_start"
    assert rule_for(config, method_of("margin-rm")).action == "drop"
    assert rule_for(config, method_of("raft")).max_new_tokens == 32
    assert rule_for(config) == generic_rule(config)
    config.truncation_mode = "keep_end"
    with pytest.raises(ConfigError, match="keep_end"):
        rule_for(config, method_of("mdpo"))  # TRL refuses it for images when the trainer is built
    from trl_plugins.registry import get_registry

    config.truncation_mode = "keep_start"
    for name in ("orpo", "mdpo", "kto-weighted", "margin-rm", "rejection-sampling", "raft", "rest", "rest-em"):
        assert rule_for(config, method_of(name)).action != "unknown", name  # every built-in method states its rule
    assert get_registry().trainer("orpo").load_method()(None).length_rule(config) == rule_for(config, method_of("orpo"))


def test_streamed_split_is_measured_on_its_first_rows_as_an_estimate():
    from datasets import IterableDataset

    rows = varied_rows(30, seed=6)
    streamed = IterableDataset.from_generator(lambda: iter(rows))
    config = type("C", (), {"max_length": LIMIT})()
    report = length_report("margin-rm", config, streamed, tiny_tokenizer(), method_of("margin-rm"), max_rows=10)
    exact = length_report("margin-rm", config, Dataset.from_list(rows[:10]), tiny_tokenizer(), method_of("margin-rm"))
    assert report.lengths.sequences["chosen"].tolist() == exact.lengths.sequences["chosen"].tolist()
    assert report.line().startswith("margin-rm: first 10 standard pairs of a streamed split (an estimate);")


def test_check_lengths_on_a_prepared_run(tmp_path, tiny_model_dir, monkeypatch):
    """The entry point the train flow calls: a real RunContext (data checked), tokenizer only: no weights load."""
    from transformers import PreTrainedModel

    from trl_plugins.registry import get_registry
    from trl_plugins.run import flow

    from helpers import write_jsonl, write_recipe

    def no_weights(*args, **kwargs):
        raise AssertionError("the length check loaded a model")

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", no_weights)

    def run_for(rows):
        data = write_jsonl(tmp_path / "pairs.jsonl", rows)
        recipe = write_recipe(tmp_path / "r.yaml", {"model_name_or_path": tiny_model_dir, "dataset_name": data,
                                                    "output_dir": str(tmp_path / "out"), "max_length": LIMIT})
        return flow.prepare_run(get_registry().trainer("margin-rm"), ["--config", recipe])

    line = check_lengths(run_for(varied_rows(16, seed=5)))
    assert line.startswith("margin-rm: 16 standard pairs; tokens p50/p95/max: prompt ") and "\n" not in line
    with pytest.raises(DataError, match="no pair would remain"):
        check_lengths(run_for(varied_rows(16, prompt_sizes=(60,))))


# -- wired into the CLI --------------------------------------------------------------------------------------------
def test_margin_rm_with_no_pair_left_exits_2_before_the_model_loads(tmp_path, tiny_model_dir, run_cli, monkeypatch):
    from transformers import PreTrainedModel

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", lambda *a, **k: (_ for _ in ()).throw(AssertionError("model loaded")))
    data = write_jsonl(tmp_path / "long.jsonl", varied_rows(12, prompt_sizes=(60,)))
    recipe = write_recipe(tmp_path / "r.yaml", {"model_name_or_path": tiny_model_dir, "dataset_name": data,
                                                "output_dir": str(tmp_path / "out"), "max_length": 48})
    code, out, err = run_cli("train", "margin-rm", "--config", recipe)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "margin-rm: all 12 pairs are longer than max_length=48" in err


def test_check_data_prints_the_length_line(tmp_path, tiny_model_dir, run_cli):
    data = write_jsonl(tmp_path / "pairs.jsonl", varied_rows(16, seed=5))
    recipe = write_recipe(tmp_path / "r.yaml", {"model_name_or_path": tiny_model_dir, "dataset_name": data,
                                                "output_dir": str(tmp_path / "out"), "max_length": 48})
    code, out, err = run_cli("check-data", "orpo", "--config", recipe)
    assert code == 0 and "orpo: 16 standard pairs; tokens p50/p95/max: prompt" in out
