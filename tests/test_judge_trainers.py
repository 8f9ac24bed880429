"""Judges and the data's own completions in the sampling engine, on a tiny random model: a ``judge:`` reward (the LoRA
policy's base, adapter off: no second copy) and a ``judge:policy`` monitor in every sampling and iterative trainer,
their seconds in each summary; ``pair_rule: judge_pairwise`` (comparisons in both orders, kept where they agree,
stored and read back on resume) and ``pair_rule: spin`` (the row's reference completion against the policy's sample)
train iterative DPO — parameters change and each phase's loss falls from log 2, as DPO's theory says with the
iteration's start as reference —, a killed run resumes to the same pairs, bad input stops before any model loads.

    python -m pytest tests/test_judge_trainers.py -q
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from helpers import PROMPTS, kill_in_iteration, read_jsonl, scripted_samples, trainable, write_jsonl, write_recipe
from helpers import build_trainer as build

YES_NO = "review : {completion} . is it good ? yes or no ?"  # every word is one token of the tiny tokenizer
# the answer token follows the second completion: without a chat template the judge's preference depends on what it
# compares (a chat template's fixed closing tokens would leave a tiny random judge with its position bias alone)
PAIRWISE = "{prompt} one : {completion_a} two : {completion_b}"
REFERENCES = [" good movie", " a great story", " the best plot", " bad acting", " boring film", " three"]


@pytest.fixture(scope="module")
def plain_judge(tiny_model_dir, tmp_path_factory) -> str:
    """The tiny model saved without a chat template (the judge reads the filled template as plain text)."""
    path = tmp_path_factory.mktemp("plain-judge") / "lm"
    shutil.copytree(tiny_model_dir, path)
    (path / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((path / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    return str(path)


@pytest.fixture
def recipe(tmp_path, tiny_model_dir):
    """Prompts with a reference completion (train and test splits); ``make(extra)`` writes a recipe."""
    data = tmp_path / "data"
    rows = [{"prompt": p, "completion": c, "answer": "3"} for p, c in zip(PROMPTS, REFERENCES)]
    write_jsonl(data / "train.jsonl", rows)
    write_jsonl(data / "test.jsonl", rows[:3])
    (tmp_path / "yes_no.txt").write_text(YES_NO)
    (tmp_path / "pairwise.txt").write_text(PAIRWISE)

    def make(extra: dict | None = None, name: str = "recipe.yaml") -> str:
        config = {"model_name_or_path": tiny_model_dir, "dataset_name": str(data), "output_dir": str(tmp_path / "out"),
                  "num_iterations": 2, "num_generations": 4, "max_new_tokens": 6, "generation_batch_size": 12,
                  "per_device_train_batch_size": 8, "max_steps": 3, "max_length": 64, "learning_rate": 1e-2,
                  "seed": 3, "keep_unfinished": True, "judge_template": str(tmp_path / "yes_no.txt")}
        if (extra or {}).get("pair_rule") == "judge_pairwise":
            config["judge_pairwise_template"] = str(tmp_path / "pairwise.txt")
        return write_recipe(tmp_path / name, config, extra)

    return make


def record_phases(trainer) -> list[list[float]]:
    """The step losses logged from now on, one list per preference phase."""
    phases: list[list[float]] = [[]]
    log = trainer.log

    def record(logs, *args, **kwargs):
        if "train_runtime" in logs:
            phases.append([])
        elif "loss" in logs:
            phases[-1].append(logs["loss"])
        return log(logs, *args, **kwargs)

    trainer.log = record
    return phases


def assert_dpo_phases(phases: list[list[float]], count: int) -> None:
    """Each phase: the reference is the policy at its start, so the first loss is -log sigmoid(0) = log 2; three
    steps on one batch of pairs lower it."""
    assert len(phases) == count + 1 and phases[-1] == []
    for losses in phases[:-1]:
        assert len(losses) == 3
        assert losses[0] == pytest.approx(math.log(2), abs=1e-4)
        assert losses[-1] < losses[0]


# -- judge: rewards in every sampling trainer ---------------------------------------------------------------------
SAMPLING = ["raft", "rejection-sampling", "rest", "rest-em", "iterative-dpo", "iterative-orpo"]


@pytest.mark.slow
@pytest.mark.parametrize("name", SAMPLING)
def test_judge_reward_and_policy_monitor_in_every_sampling_trainer(name, recipe, tiny_model_dir, tmp_path):
    """reward_funcs judge:<the base> scores with the LoRA policy's adapter off (the base's numbers, no second copy);
    heldout_reward_funcs judge:policy judges held-out samples with the adapter on; summary.json has judge_seconds."""
    from trl_plugins.sampling import reward_sources
    from trl_plugins.sampling.judge_prompts import JudgeSpec

    extra = {"reward_funcs": [f"judge:{tiny_model_dir}"], "heldout_reward_funcs": ["judge:policy"],
             "heldout_prompts": 3, "use_peft": True, "lora_r": 4, "lora_target_modules": ["all-linear"],
             "num_iterations": 1, "max_steps": 1}
    if name == "rest":
        extra.update(improve_steps=1, improve_thresholds=[0.0])
    trainer = build(name, recipe(extra))
    trainer.train()
    (source,) = trainer.reward_sources
    assert isinstance(source.spec, JudgeSpec) and source.judge.kind == "policy-base"
    assert source.judge.model is None  # the policy judged with its adapter off: no copy loaded
    (monitor,) = trainer.heldout_sources
    assert monitor.judge.kind == "policy" and monitor.judge.model is None
    out = Path(trainer.args.output_dir) / "iteration_1"
    samples = read_jsonl(out / "generations.jsonl")
    rewards = [row[f"reward/{source.entry.name}"] for row in read_jsonl(out / "rewards.jsonl")]
    entries = reward_sources.resolve([f"judge:{tiny_model_dir}"], options=trainer.args)
    (separate,) = reward_sources.build(entries)  # the base model loaded on its own
    expected = separate([s["prompt"] for s in samples], [s["completion"] for s in samples], {})
    assert rewards == pytest.approx(expected, abs=1e-5) and len(set(rewards)) > 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["judge_seconds"] > 0
    assert 0 < summary["heldout/judge_policy"] < 1 and 0 < summary["heldout_reward_mean"] < 1


# -- judge_pairwise -------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_judge_pairwise_trains_on_the_comparisons_whose_orders_agree(recipe, plain_judge, capsys):
    from trl_plugins.sampling.pairs import comparison_candidates, judge_pairwise

    trainer = build("iterative-dpo", recipe({"pair_rule": "judge_pairwise", "judge_pairwise_model": plain_judge,
                                             "judge_pairwise_labels": ["one", "two"]}))
    assert trainer.args.reward_funcs == [] and trainer.pairwise.judge.kind == "separate"
    before = trainable(trainer.model)
    phases = record_phases(trainer)
    trainer.train()
    after = trainable(trainer.model)
    assert any(not torch.equal(before[n], after[n]) for n in before), "the preference phases did not move the weights"
    assert_dpo_phases(phases, 2)
    out = Path(trainer.args.output_dir)
    for k, summary in zip((1, 2), trainer.summaries):
        samples = read_jsonl(out / f"iteration_{k}" / "generations.jsonl")
        groups = [s["row"] for s in samples]
        rows = read_jsonl(out / f"iteration_{k}" / "comparisons.jsonl")
        assert [(r["first"], r["second"]) for r in rows] == comparison_candidates(groups)  # K(K-1)/2 per prompt
        made = judge_pairwise(groups, {(r["first"], r["second"]): (r["forward"], r["backward"]) for r in rows})
        pairs = read_jsonl(out / f"iteration_{k}" / "pairs.jsonl")
        assert [(p["chosen_index"], p["rejected_index"]) for p in pairs] == made.pairs and made.pairs
        assert (summary["pairs"], summary["ties"], summary["disagreements"]) == (len(made.pairs), made.ties,
                                                                                 made.disagreements)
        assert 0 < made.disagreements < len(rows)  # a random judge's orders agree on some comparisons, not all
        assert summary["judge_seconds"] > 0
    assert "judges: " in capsys.readouterr().out


def test_a_pairwise_judge_shares_the_model_of_a_judge_reward(recipe, tiny_model_dir):
    trainer = build("iterative-dpo", recipe({"pair_rule": "judge_pairwise", "reward_funcs": [f"judge:{tiny_model_dir}"],
                                             "heldout_reward_funcs": [f"judge:{tiny_model_dir}"],
                                             "heldout_prompts": 2, "judge_pairwise_labels": ["one", "two"]}))
    (reward,), (monitor,) = trainer.reward_sources, trainer.heldout_sources
    assert trainer.pairwise.spec.model == tiny_model_dir  # the first judge: entry's model
    assert trainer.pairwise.judge is reward.judge is monitor.judge  # one model, loaded once, for all three
    assert len(trainer.judge_models) == 1


@pytest.mark.slow
def test_killed_judge_pairwise_run_resumes_without_judging_again(recipe, plain_judge, tmp_path, monkeypatch):
    from trl_plugins.sampling.judge import PairwiseJudge

    common = {"pair_rule": "judge_pairwise", "judge_pairwise_model": plain_judge,
              "judge_pairwise_labels": ["one", "two"], "max_steps": 1}
    full = build("iterative-dpo", recipe({**common, "output_dir": str(tmp_path / "full")}, "full.yaml"))
    full.train()

    killed = build("iterative-dpo", recipe({**common, "output_dir": str(tmp_path / "killed")}, "killed.yaml"))
    phase = killed.preference_phase

    def die_in_iteration_2(pairs, name, seed):  # after iteration 2's comparisons are judged and written
        if name == "iteration_2":
            raise KeyboardInterrupt("killed")
        return phase(pairs, name, seed)

    killed.preference_phase = die_in_iteration_2
    with pytest.raises(KeyboardInterrupt):
        killed.train()
    out = tmp_path / "killed"
    assert (out / "iteration_2" / "comparisons.jsonl").is_file() and not (out / "iteration_2" / "summary.json").exists()

    calls = []
    judge = PairwiseJudge.__call__
    monkeypatch.setattr(PairwiseJudge, "__call__", lambda self, *a, **k: calls.append(1) or judge(self, *a, **k))
    resumed = build("iterative-dpo", recipe({**common, "output_dir": str(out)}, "resumed.yaml"),
                    "--resume_from_checkpoint", "true")
    resumed.train(resume_from_checkpoint=True)
    assert calls == []  # iteration 2's comparisons were read back, not judged again
    for k in (1, 2):
        for name in ("comparisons.jsonl", "pairs.jsonl"):
            assert read_jsonl(out / f"iteration_{k}" / name) == read_jsonl(tmp_path / "full" / f"iteration_{k}" / name)
    final_full, final_resumed = trainable(full.model), trainable(resumed.model)
    assert all(torch.allclose(final_full[n], final_resumed[n]) for n in final_full)


# -- spin -------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_spin_trains_the_reference_against_the_policy_sample(recipe):
    trainer = build("iterative-dpo", recipe({"pair_rule": "spin", "num_generations": 1}))
    assert trainer.args.reward_funcs == [] and trainer.args.reference == "previous"
    assert "input_ids" not in trainer.train_dataset.column_names  # the reference completions are no SFT target
    before = trainable(trainer.model)
    phases = record_phases(trainer)
    trainer.train()
    after = trainable(trainer.model)
    assert any(not torch.equal(before[n], after[n]) for n in before), "the preference phases did not move the weights"
    assert_dpo_phases(phases, 2)
    out = Path(trainer.args.output_dir)
    for k, summary in zip((1, 2), trainer.summaries):
        samples = read_jsonl(out / f"iteration_{k}" / "generations.jsonl")
        pairs = read_jsonl(out / f"iteration_{k}" / "pairs.jsonl")
        assert len(pairs) == len(PROMPTS) == len(samples)  # one sample per prompt, none equal to its reference
        for pair in pairs:
            assert pair["chosen"] == REFERENCES[pair["row"]] and pair["chosen_index"] is None
            assert pair["rejected"] == samples[pair["rejected_index"]]["completion"]
        assert summary["kept"] == len(pairs) and summary.selected_indices == [p["rejected_index"] for p in pairs]


def test_spin_makes_no_pair_where_the_policy_already_writes_the_reference(recipe):
    trainer = build("iterative-dpo", recipe({"pair_rule": "spin", "num_iterations": 1, "num_generations": 2,
                                             "max_steps": 1, "keep_unfinished": False, "reject_unfinished": False}))
    # per prompt: a cut-off sample (unusable: reject_unfinished false), then " good movie" (row 0's reference)
    trainer.generate_samples = scripted_samples([("the plot", False), (" good movie", True)])
    trainer.train()
    pairs = read_jsonl(Path(trainer.args.output_dir) / "iteration_1" / "pairs.jsonl")
    assert [p["row"] for p in pairs] == [1, 2, 3, 4, 5] and {p["rejected"] for p in pairs} == {" good movie"}
    assert (trainer.summaries[0]["ties"], trainer.summaries[0]["prompts_too_few_samples"]) == (1, 0)


@pytest.mark.slow
def test_killed_spin_run_resumes_to_the_uninterrupted_pairs(recipe, tmp_path):
    common = {"pair_rule": "spin", "num_generations": 1, "num_iterations": 3, "max_steps": 1}
    full = build("iterative-dpo", recipe({**common, "output_dir": str(tmp_path / "full")}, "full.yaml"))
    full.train()
    killed = build("iterative-dpo", recipe({**common, "output_dir": str(tmp_path / "killed")}, "killed.yaml"))
    kill_in_iteration(killed, 2)
    out = tmp_path / "killed"
    resumed = build("iterative-dpo", recipe({**common, "output_dir": str(out)}, "resumed.yaml"),
                    "--resume_from_checkpoint", "true")
    resumed.train(resume_from_checkpoint=True)
    for k in (1, 2, 3):
        a, b = read_jsonl(tmp_path / "full" / f"iteration_{k}" / "pairs.jsonl"), read_jsonl(out / f"iteration_{k}" / "pairs.jsonl")
        assert a == b and a, k
    final_full, final_resumed = trainable(full.model), trainable(resumed.model)
    assert all(torch.allclose(final_full[n], final_resumed[n]) for n in final_full)


def test_sampling_trainers_leave_a_completion_column_untokenized(recipe, tiny_model_dir):
    """A prompt source with a reference completion is sampled from, not fine-tuned on: no trainer tokenizes it."""
    for name in ("raft", "iterative-dpo"):
        trainer = build(name, recipe({"reward_funcs": ["sampling_rewards:good_words"]}))
        assert set(trainer.train_dataset.column_names) == {"prompt", "completion", "answer"}, name


# -- bad input --------------------------------------------------------------------------------------------------------
def _prompts_only(tmp_path):
    for split in ("train", "test"):
        write_jsonl(tmp_path / "data" / f"{split}.jsonl", [{"prompt": p} for p in PROMPTS])


def _mixed_kinds(tmp_path):  # text prompts, chat-message completions
    for split in ("train", "test"):
        write_jsonl(tmp_path / "data" / f"{split}.jsonl", [{"prompt": p, "completion": [{"role": "assistant",
                                                                                           "content": c}]}
                                                           for p, c in zip(PROMPTS, REFERENCES)])


@pytest.mark.parametrize("extra, data, message", [
    ({"pair_rule": "spin", "num_generations": 1}, _prompts_only, "pair_rule spin needs the columns prompt and completion"),
    ({"pair_rule": "spin", "num_generations": 1}, _mixed_kinds, "prompt and completion of one kind"),
    ({"pair_rule": "judge_pairwise"}, None, "judge_pairwise needs a judge"),
    ({"pair_rule": "judge_pairwise", "judge_pairwise_model": "policy", "judge_pairwise_template": "self_rewarding"},
     None, "has no {completion_a}"),
    ({"pair_rule": "judge_pairwise", "judge_pairwise_model": "policy", "judge_pairwise_template": "NAME.txt"}, None,
     "judge_pairwise_template: template file"),
    ({"pair_rule": "judge_pairwise", "judge_pairwise_model": "policy", "judge_pairwise_margin": 0.5}, None,
     "judge_pairwise_margin"),
    ({"pair_rule": "judge_pairwise", "judge_pairwise_model": "policy", "judge_pairwise_labels": ["A"]}, None,
     "judge_pairwise_labels"),
    ({"pair_rule": "judge_pairwise", "judge_pairwise_model": "./no/such/model"}, None, "no local checkpoint"),
    ({"pair_rule": "best_worst"}, None, "give at least one reward"),
    ({"pair_rule": "spin", "num_generations": 0}, None, "num_generations"),
])
def test_bad_input_is_one_line_exit_2_before_model_load(extra, data, message, recipe, run_cli, no_model_loading,
                                                        tmp_path):
    path = recipe(extra)
    if data:
        data(tmp_path)
    code, out, err = run_cli("train", "iterative-dpo", "--config", path)
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], err


def test_a_pairwise_template_reading_a_column_the_data_lacks_is_one_line(recipe, run_cli, no_model_loading, tmp_path):
    (tmp_path / "pairwise_answer.txt").write_text("{prompt} ( {answer} ) one : {completion_a} two : {completion_b}")
    (tmp_path / "pairwise_missing.txt").write_text("{prompt} ( {rating} ) one : {completion_a} two : {completion_b}")
    for name, message in (("pairwise_answer.txt", None), ("pairwise_missing.txt", "reads a column 'rating'")):
        extra = {"pair_rule": "judge_pairwise", "judge_pairwise_model": "policy",
                 "judge_pairwise_template": str(tmp_path / name)}
        code, out, err = run_cli("check-data", "iterative-dpo", "--config", recipe(extra))
        if message is None:
            assert code == 0, err
        else:
            assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
