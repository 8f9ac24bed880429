"""A reduced RAFT run on the real SmolLM2-135M-Instruct (CPU): the VADER reward of fresh samples rises.

Two iterations on different prompts each time (24 IMDB openings x K=4, 20 new tokens); best-of-4 selection, two
epochs of LoRA SFT per phase. The reward of iteration 2's samples (drawn from the fine-tuned policy, on prompts it
has not trained on) must beat iteration 1's (the base policy), and each selected sample is its prompt's best.
"""

from __future__ import annotations

import json

import pytest
import yaml

from helpers import read_jsonl

pytestmark = pytest.mark.real


def test_raft_raises_vader_reward_of_fresh_samples(tmp_path, smollm2_path):
    from trl_plugins.registry import get_registry
    from trl_plugins.run import flow

    recipe = yaml.safe_load(open("recipes/demo/raft.yaml"))
    recipe.update(
        output_dir=str(tmp_path / "raft"), num_iterations=2, prompts_per_iteration=24, num_generations=4,
        max_new_tokens=20, heldout_prompts=0, max_length=128, per_device_train_batch_size=8, num_train_epochs=2,
        learning_rate=5e-4, disable_tqdm=True, logging_steps=100,
        # 20 tokens cut ~95% of the samples before their end; this test is about selection raising the reward
        # within CI time, so cut-off samples may be selected here (the demo recipe generates long enough to finish)
        keep_unfinished=True,
    )
    path = tmp_path / "raft.yaml"
    path.write_text(yaml.safe_dump(recipe))
    run = flow.prepare_run(get_registry().trainer("raft"), ["--config", str(path)])
    trainer = flow.build_trainer(run)
    trainer.train()
    rows = [json.loads(line) for line in (tmp_path / "raft" / "sampling_summary.jsonl").read_text().splitlines()]
    print("\n".join(json.dumps({k: r[k] for k in ("iteration", "reward_all_mean", "reward_selected_mean",
                                                   "distinct2_all", "mean_tokens_all")}) for r in rows))
    first, second = rows
    # the selection kept each prompt's best sample of iteration 1 (what the second iteration's policy trained on) ...
    rewards = [r["reward"] for r in read_jsonl(tmp_path / "raft" / "iteration_1" / "rewards.jsonl")]
    groups = [g["row"] for g in read_jsonl(tmp_path / "raft" / "iteration_1" / "generations.jsonl")]
    for s in read_jsonl(tmp_path / "raft" / "iteration_1" / "selection.jsonl"):
        assert s["reward"] == max(r for r, g in zip(rewards, groups) if g == s["row"])
    # ... and the fine-tuned policy's fresh samples, on prompts it has not trained on, score higher than the base's
    assert second["reward_all_mean"] > first["reward_all_mean"]
    assert (tmp_path / "raft" / "rewards_by_iteration.png").is_file()
