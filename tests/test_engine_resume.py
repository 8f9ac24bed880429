"""A run killed under the engine before its stages and records (issue 28) resumes with today's: the JSON files in
tests/data/killed_run_before_engine/ were written by that engine (raft and iterative-dpo on the tiny model, killed in
iteration 2 after its samples and rewards; recipe below); the policy file is written here with the store's own
writer. The resumed run reads iteration 1 and iteration 2's samples and rewards back instead of making them again,
and writes files of the same shape: every summary has the old summary's keys in the old order."""

from __future__ import annotations

import json
import shutil

import pytest

from helpers import PROMPTS, TESTS, read_jsonl, trainable, write_jsonl, write_recipe
from helpers import build_trainer as build

BEFORE = TESTS / "data" / "killed_run_before_engine"


@pytest.mark.slow
@pytest.mark.parametrize("name, update_file", [("raft", "selection.jsonl"), ("iterative-dpo", "pairs.jsonl")])
def test_a_run_killed_under_the_previous_engine_resumes(name, update_file, tmp_path, tiny_model_dir):
    from trl_plugins.sampling.pairs import best_worst
    from trl_plugins.sampling.selection import best_of_n
    from trl_plugins.sampling.store import RunStore

    data = tmp_path / "splits"
    write_jsonl(data / "train.jsonl", [{"prompt": p, "answer": "3"} for p in PROMPTS])
    write_jsonl(data / "test.jsonl", [{"prompt": p, "answer": "3"} for p in PROMPTS[:3]])
    out = tmp_path / name
    shutil.copytree(BEFORE / name, out)
    recipe = write_recipe(tmp_path / "recipe.yaml", {
        "model_name_or_path": tiny_model_dir, "dataset_name": str(data), "dataset_test_split": "test",
        "output_dir": str(out), "reward_funcs": ["sampling_rewards:good_words"],
        "heldout_reward_funcs": ["sampling_rewards:even_length"], "heldout_prompts": 3, "num_iterations": 3,
        "num_generations": 2, "max_new_tokens": 6, "generation_batch_size": 12, "per_device_train_batch_size": 4,
        "max_steps": 1, "max_length": 64, "learning_rate": 1e-2, "seed": 3, "keep_unfinished": True})
    trainer = build(name, recipe, "--resume_from_checkpoint", "true")
    RunStore(out).save_policy(1, lambda: trainable(trainer.model))  # the policy the killed run held after iteration 1
    untouched = {path: (out / path).read_bytes() for path in ("iteration_1/generations.jsonl",
                                                              "iteration_1/summary.json", "heldout_baseline.json",
                                                              "iteration_2/generations.jsonl")}
    trainer.train(resume_from_checkpoint=True)

    assert {path: (out / path).read_bytes() for path in untouched} == untouched
    # generated: iteration 3's samples and the held-out samples after iterations 2 and 3 (the baseline was read back)
    assert trainer.backend.calls == 3
    old = json.loads((BEFORE / name / "iteration_1" / "summary.json").read_text())
    summaries = read_jsonl(out / "sampling_summary.jsonl")
    assert [s["iteration"] for s in summaries] == [1, 2, 3] and summaries[0] == old
    for summary in summaries[1:]:
        assert list(summary) == list(old)
        assert summary["heldout_reward_baseline"] == old["heldout_reward_baseline"]
        assert summary["samples"] == 12 and summary["train_loss"] is not None
    # iteration 2 was updated from the old run's samples and rewards, by the method's rule
    samples = read_jsonl(BEFORE / name / "iteration_2" / "generations.jsonl")
    rewards = [r["reward"] for r in read_jsonl(BEFORE / name / "iteration_2" / "rewards.jsonl")]
    groups, written = [s["row"] for s in samples], read_jsonl(out / "iteration_2" / update_file)
    if name == "raft":
        assert [s["index"] for s in written] == best_of_n(groups, rewards)
    else:
        assert [(p["chosen_index"], p["rejected_index"]) for p in written] == best_worst(groups, rewards).pairs
    assert summaries[1]["selected_indices"] == sorted({s.get("index", s.get("chosen_index")) for s in written})
    assert (out / "rewards_by_iteration.png").stat().st_size > 1000
