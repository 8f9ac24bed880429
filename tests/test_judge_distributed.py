"""A judge under two processes (torchrun, gloo, CPU) gives what it gives under one: the same samples on disk (an
unfinished iteration 1, resumed), judged as a ``judge:`` reward and by ``pair_rule: judge_pairwise`` with the work
shared out over the processes, write the same rewards, the same comparisons and the same pairs.

    python -m pytest tests/test_judge_distributed.py -q -m distributed
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from helpers import CPU_RUN, PROMPTS, REPO, TESTS, read_jsonl, write_jsonl
from tiny import save_tiny_causal_lm

WORDS = ["good movie", "a great plot", "bad", "the best story , good", "boring film", "the acting"]


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(TESTS), os.environ.get("PYTHONPATH", "")]),
                OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")


@pytest.mark.distributed
def test_a_judge_under_two_processes_scores_compares_and_pairs_as_one(tmp_path):
    judge = tmp_path / "judge"
    save_tiny_causal_lm(judge)
    (judge / "chat_template.jinja").unlink(missing_ok=True)  # plain text: the answer follows the judged words
    config = json.loads((judge / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (judge / "tokenizer_config.json").write_text(json.dumps(config))
    shutil.copytree(judge, tmp_path / "policy")
    write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p} for p in PROMPTS])
    (tmp_path / "yes_no.txt").write_text("review : {completion} . is it good ? yes or no ?")
    (tmp_path / "pairwise.txt").write_text("{prompt} one : {completion_a} two : {completion_b}")
    samples = [{"row": r, "sample": j, "prompt": p, "completion": " " + WORDS[(r + 2 * j) % len(WORDS)],
                "num_tokens": 3, "finished": True} for r, p in enumerate(PROMPTS) for j in range(4)]
    outputs = {}
    for processes in (1, 2):
        out = tmp_path / f"n{processes}"
        write_jsonl(out / "iteration_1" / "generations.jsonl", samples)
        config = {**CPU_RUN, "model_name_or_path": str(tmp_path / "policy"), "dataset_name": str(tmp_path / "prompts.jsonl"),
                  "output_dir": str(out), "reward_funcs": [f"judge:{judge}"],
                  "judge_template": str(tmp_path / "yes_no.txt"), "judge_batch_size": 3,
                  "pair_rule": "judge_pairwise", "judge_pairwise_template": str(tmp_path / "pairwise.txt"),
                  "judge_pairwise_labels": ["one", "two"], "num_iterations": 1, "num_generations": 4,
                  "max_new_tokens": 6, "max_steps": 1, "per_device_train_batch_size": 4 // processes,
                  "max_length": 64, "learning_rate": 1e-2, "seed": 5}
        (tmp_path / f"n{processes}.yaml").write_text(yaml.safe_dump(config))
        launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
                  if processes == 2 else [sys.executable])
        done = subprocess.run(launch + ["-m", "trl_plugins", "train", "iterative-dpo", "--config",
                                        str(tmp_path / f"n{processes}.yaml"), "--resume_from_checkpoint", "true"],
                              env=_env(), capture_output=True, text=True, timeout=600, start_new_session=True)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        outputs[processes] = out / "iteration_1"
    one, two = ({name: read_jsonl(outputs[n] / name) for name in ("rewards.jsonl", "comparisons.jsonl", "pairs.jsonl")}
                for n in (1, 2))
    key = f"reward/judge_{judge.name}"
    assert [r[key] for r in two["rewards.jsonl"]] == pytest.approx([r[key] for r in one["rewards.jsonl"]], abs=1e-6)
    assert len({r[key] for r in one["rewards.jsonl"]}) > 1
    assert len(one["comparisons.jsonl"]) == len(PROMPTS) * 6  # every two of 4 samples per prompt
    for a, b in zip(one["comparisons.jsonl"], two["comparisons.jsonl"], strict=True):
        assert (a["first"], a["second"]) == (b["first"], b["second"])
        assert (b["forward"], b["backward"]) == pytest.approx((a["forward"], a["backward"]), abs=1e-6)
    made = [[(p["chosen_index"], p["rejected_index"]) for p in out["pairs.jsonl"]] for out in (one, two)]
    assert made[0] == made[1] and made[0]
    summaries = [json.loads((outputs[n] / "summary.json").read_text()) for n in (1, 2)]
    assert [s["processes"] for s in summaries] == [1, 2] and all(s["judge_seconds"] > 0 for s in summaries)
