"""iterative-dpo and iterative-orpo on a tiny random model: each phase's loss is TRL's DPO loss (our ORPO loss) on
the same pairs, parameters change and the loss falls from log 2 as DPO's theory says, the reference follows
``reference``, the pairs are the rule's, a killed run resumes to the same pairs, bad input stops before loading."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch

from helpers import (
    CPU_RUN,
    PROMPTS,
    kill_in_iteration,
    read_jsonl,
    scripted_samples,
    trainable,
    write_jsonl,
    write_recipe,
)
from helpers import build_trainer as build
from tiny import preference_rows, tiny_causal_lm, tiny_tokenizer


@pytest.fixture
def recipe(tmp_path, tiny_model_dir):
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p, "answer": "3"} for p in PROMPTS])

    def make(extra: dict | None = None, name: str = "recipe.yaml") -> str:
        config = {"model_name_or_path": tiny_model_dir, "dataset_name": prompts, "output_dir": str(tmp_path / "out"),
                  "reward_funcs": ["sampling_rewards:good_words"], "num_iterations": 2, "num_generations": 4,
                  "max_new_tokens": 6, "generation_batch_size": 12, "per_device_train_batch_size": 8,
                  "max_steps": 3, "max_length": 64, "learning_rate": 1e-2, "seed": 3, "keep_unfinished": True}
        return write_recipe(tmp_path / name, config, extra)

    return make


def record_phases(trainer) -> list[list[float]]:
    """The step losses the trainer logs from now on, one list per phase (each ``train()`` of the TRL parent starts a
    fresh ``state.log_history``, so they are recorded as logged; a phase ends with its ``train_runtime`` record)."""
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


@pytest.mark.parametrize("name", ["iterative-dpo", "iterative-orpo"])
def test_trainer_changes_parameters_and_writes_the_rule_s_pairs(name, recipe):
    from trl_plugins.sampling.pairs import best_worst

    trainer = build(name, recipe())
    before = trainable(trainer.model)
    phases = record_phases(trainer)
    trainer.train()
    after = trainable(trainer.model)
    assert any(not torch.equal(before[n], after[n]) for n in before), "the preference phases did not move the weights"
    out = Path(trainer.args.output_dir)
    for k, summary in zip((1, 2), trainer.summaries):
        samples = read_jsonl(out / f"iteration_{k}" / "generations.jsonl")
        rewards = [r["reward"] for r in read_jsonl(out / f"iteration_{k}" / "rewards.jsonl")]
        pairs = read_jsonl(out / f"iteration_{k}" / "pairs.jsonl")
        made = best_worst([s["row"] for s in samples], rewards)
        assert [(p["chosen_index"], p["rejected_index"]) for p in pairs] == made.pairs
        assert all(p["chosen_reward"] > p["rejected_reward"] for p in pairs)
        assert all(p["chosen"] == samples[p["chosen_index"]]["completion"] for p in pairs)
        assert (summary["pairs"], summary["ties"]) == (len(made.pairs), made.ties)
        assert summary["chosen_tokens_mean"] == pytest.approx(sum(p["chosen_tokens"] for p in pairs) / len(pairs))
        assert summary["rejected_tokens_mean"] is not None
    assert [json.loads(line)["iteration"] for line in (out / "sampling_summary.jsonl").read_text().splitlines()] == [1, 2]
    assert len(phases) == 3 and phases[-1] == []
    for losses in phases[:-1]:
        assert len(losses) == 3
        if name == "iterative-dpo":  # the reference is the policy at the phase's start: -log sigmoid(0) = log 2
            assert losses[0] == pytest.approx(math.log(2), abs=1e-4)
        assert losses[-1] < losses[0]  # one full batch, three steps on it: the loss falls


def test_reference_initial_keeps_the_starting_weights_as_reference(recipe):
    """With `initial`, iteration 2 starts from a trained policy but its reference is the base: the first loss is no
    longer log 2 (with `previous` it is, see above); the base weights are back in place after the reference pass."""
    trainer = build("iterative-dpo", recipe({"reference": "initial"}))
    phases = record_phases(trainer)
    trainer.train()
    first, second = phases[:2]
    assert first[0] == pytest.approx(math.log(2), abs=1e-4)
    assert abs(second[0] - math.log(2)) > 1e-3
    assert trainer._initial_weights is not None


@pytest.mark.parametrize("reject_unfinished", [True, False])
def test_cut_off_samples_are_never_chosen_and_rejected_only_if_allowed(recipe, reject_unfinished):
    trainer = build("iterative-orpo", recipe({"num_iterations": 1, "keep_unfinished": False, "max_steps": 1,
                                              "reject_unfinished": reject_unfinished}))
    # per prompt: the best-rewarded sample and the worst one are cut off
    trainer.generate_samples = scripted_samples([("good good good", False), ("good movie", True), ("the plot", True),
                                                 ("bad", False)])
    trainer.train()
    pairs = read_jsonl(Path(trainer.args.output_dir) / "iteration_1" / "pairs.jsonl")
    assert len(pairs) == len(PROMPTS) and trainer.summaries[0]["unfinished"] == 2 * len(PROMPTS)
    assert {p["chosen"] for p in pairs} == {"good movie"}
    assert {p["rejected"] for p in pairs} == ({"bad"} if reject_unfinished else {"the plot"})


def _dpo_config(tmp_path, **extra):
    from trl import DPOConfig

    return DPOConfig(output_dir=str(tmp_path / "trl"), per_device_train_batch_size=4, max_length=64,
                     learning_rate=1e-2, max_steps=3, seed=0, beta=0.1, **CPU_RUN, **extra)


def _ours(name: str, tmp_path, pairs, **extra):
    """Our trainer's preference phase on ``pairs`` (no generation), from the tiny model of seed 0."""
    from datasets import Dataset

    from trl_plugins.trainers.iterative_dpo import IterativeDPOConfig, IterativeDPOTrainer
    from trl_plugins.trainers.iterative_orpo import IterativeORPOConfig, IterativeORPOTrainer

    config_cls, trainer_cls = ((IterativeDPOConfig, IterativeDPOTrainer) if name == "iterative-dpo"
                               else (IterativeORPOConfig, IterativeORPOTrainer))
    args = config_cls(output_dir=str(tmp_path / "ours"), per_device_train_batch_size=4, max_length=64,
                      learning_rate=1e-2, max_steps=3, seed=0, beta=0.1, reward_funcs=["sampling_rewards:good_words"],
                      **CPU_RUN, **extra)
    tokenizer = tiny_tokenizer()
    trainer = trainer_cls(model=tiny_causal_lm(tokenizer), args=args, processing_class=tokenizer,
                          train_dataset=Dataset.from_list([{"prompt": p} for p in PROMPTS]))
    trainer.preference_phase(pairs, "pairs", seed=0)
    return [log["loss"] for log in trainer.state.log_history if "loss" in log and "train_runtime" not in log]


@pytest.mark.parametrize("extra", [{}, {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 1.0]},
                                   {"loss_type": ["ipo"]}], ids=["sigmoid", "irpo", "ipo"])
def test_phase_loss_equals_trl_dpo_on_the_same_pairs(tmp_path, extra):
    """Every step of a phase: the loss TRL's DPOTrainer reports on the same pairs, with a frozen copy of the
    starting model as reference (what `reference: previous` means inside one phase)."""
    from datasets import Dataset
    from trl import DPOTrainer

    pairs = preference_rows(12)
    ours = _ours("iterative-dpo", tmp_path, pairs, **extra)
    tokenizer = tiny_tokenizer()
    model = tiny_causal_lm(tokenizer)
    trl = DPOTrainer(model=model, ref_model=copy.deepcopy(model), args=_dpo_config(tmp_path, **extra),
                     processing_class=tokenizer, train_dataset=Dataset.from_list(pairs))
    trl.train()
    theirs = [log["loss"] for log in trl.state.log_history if "loss" in log and "train_runtime" not in log]
    assert len(ours) == len(theirs) == 3
    assert ours == pytest.approx(theirs, rel=1e-6, abs=1e-6)  # float32: IPO's loss is ~25, so relative
    assert ours[0] != ours[-1]


def test_phase_loss_equals_our_orpo_on_the_same_pairs(tmp_path):
    from datasets import Dataset

    from trl_plugins.trainers.orpo import ORPOConfig, ORPOTrainer

    pairs = preference_rows(12)
    ours = _ours("iterative-orpo", tmp_path, pairs)
    tokenizer = tiny_tokenizer()
    args = ORPOConfig(output_dir=str(tmp_path / "orpo"), per_device_train_batch_size=4, max_length=64,
                      learning_rate=1e-2, max_steps=3, seed=0, beta=0.1, **CPU_RUN)
    orpo = ORPOTrainer(tiny_causal_lm(tokenizer), args, processing_class=tokenizer,
                       train_dataset=Dataset.from_list(pairs))
    orpo.train()
    theirs = [log["loss"] for log in orpo.state.log_history if "loss" in log and "train_runtime" not in log]
    assert len(ours) == 3 and ours == pytest.approx(theirs, abs=1e-6)


def test_killed_run_resumes_to_the_uninterrupted_pairs(recipe, tmp_path):
    common = {"num_iterations": 3, "pair_rule": "all_pairs", "max_steps": 1}
    full = build("iterative-dpo", recipe({**common, "output_dir": str(tmp_path / "full")}, "full.yaml"))
    full.train()

    killed = build("iterative-dpo", recipe({**common, "output_dir": str(tmp_path / "killed")}, "killed.yaml"))
    kill_in_iteration(killed, 2)
    out = tmp_path / "killed"
    assert (out / "iteration_2" / "rewards.jsonl").is_file() and not (out / "iteration_2" / "pairs.jsonl").exists()

    resumed = build("iterative-dpo", recipe({**common, "output_dir": str(out)}, "resumed.yaml"),
                    "--resume_from_checkpoint", "true")
    resumed.train(resume_from_checkpoint=True)
    for k in (1, 2, 3):
        a, b = read_jsonl(tmp_path / "full" / f"iteration_{k}" / "pairs.jsonl"), read_jsonl(out / f"iteration_{k}" / "pairs.jsonl")
        assert a == b and a, k
    final_full, final_resumed = trainable(full.model), trainable(resumed.model)
    assert all(torch.allclose(final_full[n], final_resumed[n]) for n in final_full)


def test_run_killed_during_the_held_out_evaluation_resumes(recipe, tmp_path):
    """The held-out evaluation (minutes on a real run) comes before the policy is saved: a run killed during it still
    holds the previous iteration's policy, and resuming redoes the iteration from its files to the same end."""
    common = {"num_iterations": 2, "max_steps": 1}
    full = build("iterative-dpo", recipe({**common, "output_dir": str(tmp_path / "full")}, "full.yaml"))
    full.train()
    killed = build("iterative-dpo", recipe({**common, "output_dir": str(tmp_path / "killed")}, "killed.yaml"))
    calls = []

    def die_in_iteration_2():  # no held-out split, so no call before training: call 2 follows iteration 2's update
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return None

    killed.evaluate_policy = die_in_iteration_2
    with pytest.raises(KeyboardInterrupt):
        killed.train()
    out = tmp_path / "killed"
    assert (out / "iteration_2" / "pairs.jsonl").is_file() and not (out / "iteration_2" / "summary.json").exists()
    resumed = build("iterative-dpo", recipe({**common, "output_dir": str(out)}, "resumed.yaml"),
                    "--resume_from_checkpoint", "true")
    resumed.train(resume_from_checkpoint=True)
    assert read_jsonl(out / "iteration_2" / "pairs.jsonl") == read_jsonl(tmp_path / "full" / "iteration_2" / "pairs.jsonl")
    final_full, final_resumed = trainable(full.model), trainable(resumed.model)
    assert all(torch.allclose(final_full[n], final_resumed[n]) for n in final_full)


@pytest.mark.parametrize("name, extra, message", [
    ("iterative-dpo", {"pair_rule": "best_of_n"}, "pair_rule"),
    ("iterative-dpo", {"reference": "base"}, "reference"),
    ("iterative-dpo", {"sync_ref_model": True}, "sync_ref_model"),
    ("iterative-orpo", {"num_generations": 1}, "num_generations"),
    ("iterative-orpo", {"min_reward_gap": -0.5}, "min_reward_gap"),
])
def test_bad_input_is_one_line_exit_2_before_model_load(name, extra, message, recipe, run_cli, no_model_loading):
    code, out, err = run_cli("train", name, "--config", recipe(extra))
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], err
