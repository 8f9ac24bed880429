"""The held-out monitors and the reward-hacking guard in real sampling runs (docs/monitors.md): every sampling trainer
reports the monitors and the guard's verdict; a full fine-tune without its start says in one line that it leaves KL
and loglik out; a reward that pays for a stock word trips the guard and an honest reward does not; ``stop`` keeps the
best policy by the guard in ``output_dir/best`` and says so on the run's last line (exit 0); a killed run resumes
with the guard's state. The rule itself on known numbers: test_guard.py.

    python -m pytest tests/test_reward_hacking.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from helpers import PROMPTS, kill_in_iteration, read_jsonl, trainable, write_jsonl, write_recipe
from helpers import build_trainer as build

MONITOR_KEYS = ("monitor/kl_token", "monitor/kl_seq", "monitor/kl_token_k1", "monitor/kl_seq_k1", "monitor/loglik",
                "monitor/distinct2", "monitor/length")
# settings under which each trainer selects something from the tiny model's samples (rest-em keeps rewards of 1)
SELECTS = {"rest": {"improve_steps": 1, "improve_thresholds": [0.5], "threshold_mode": "percentile"},
           "rest-em": {"reward_funcs": ["sampling_rewards:even_length"]}}
LORA = {"use_peft": True, "lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "lora_target_modules": "all-linear"}


@pytest.fixture
def splits(tmp_path) -> str:
    data = tmp_path / "splits"
    write_jsonl(data / "train.jsonl", [{"prompt": p, "answer": "3"} for p in PROMPTS])
    write_jsonl(data / "test.jsonl", [{"prompt": p, "answer": "3"} for p in PROMPTS[:3]])
    return str(data)


@pytest.fixture
def recipe(tmp_path, tiny_model_dir, splits):
    """A short sampling recipe on the tiny model with a LoRA adapter and 3 held-out prompts x 2."""

    def make(extra: dict | None = None, name: str = "recipe.yaml") -> str:
        config = {"model_name_or_path": tiny_model_dir, "dataset_name": splits, "dataset_test_split": "test",
                  "output_dir": str(tmp_path / "out"), "reward_funcs": ["sampling_rewards:good_words"],
                  "num_iterations": 1, "num_generations": 2, "max_new_tokens": 6, "generation_batch_size": 12,
                  "per_device_train_batch_size": 4, "max_steps": 2, "max_length": 64, "learning_rate": 1e-2,
                  "seed": 3, "keep_unfinished": True, "heldout_prompts": 3, "heldout_num_generations": 2, **LORA}
        return write_recipe(tmp_path / name, config, extra)

    return make


def _summary(out, k: int) -> dict:
    return json.loads((Path(out) / f"iteration_{k}" / "summary.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rejection-sampling", "raft", "rest", "rest-em", "iterative-dpo", "iterative-orpo"])
def test_every_sampling_trainer_reports_the_monitors_and_the_guards_verdict(name, recipe, capsys):
    """No configuration: the monitors of the held-out samples before training and after the iteration, each with its
    SE and the paired interval of its change; KL 0 before training (the adapter off is the start) and above 0 after;
    their cost printed once; the guard's verdict and state in summary.json."""
    trainer = build(name, recipe(SELECTS.get(name)))
    trainer.train()
    out = Path(trainer.args.output_dir)
    baseline, summary = json.loads((out / "heldout_baseline.json").read_text()), _summary(out, 1)
    for key in MONITOR_KEYS:
        assert len(baseline["heldout_per_prompt"][key]) == len(summary["heldout_per_prompt"][key]) == 3
        assert summary[key] is not None and summary[f"{key}_se"] is not None
        assert summary[f"{key}_baseline"] == baseline[key]
        assert summary[f"{key}_change_low"] <= summary[key] - baseline[key] <= summary[f"{key}_change_high"] or \
            summary[f"{key}_change_low"] == summary[f"{key}_change_high"]  # every prompt moved alike (or not at all)
    assert baseline["monitor/kl_token"] == 0.0 and summary["monitor/kl_token"] > 0  # the update moved the policy
    assert summary["monitor/length"] == pytest.approx(sum(r["num_tokens"] for r in read_jsonl(
        out / "iteration_1" / "heldout_samples.jsonl")) / 6)  # 3 prompts x 2 samples, their generated tokens
    assert summary["monitor_seconds"] > 0
    verdict = summary["reward_hacking"]
    assert verdict["iteration"] == 1 and verdict["against"] == 0 and isinstance(verdict["tripped"], bool)
    assert summary["guard_state"]["verdicts"] == [verdict]
    printed = capsys.readouterr().out
    assert printed.count("held-out monitors (kl, loglik, distinct2, length, relevance): ") == 1  # the cost, once per run
    assert f"monitors: KL/token {summary['monitor/kl_token']:.4g}" in printed  # the table's monitor line


@pytest.mark.slow
def test_a_full_fine_tune_leaves_kl_and_loglik_out_in_one_line_unless_the_method_holds_its_start(recipe, capsys):
    """raft without LoRA holds no copy of its starting weights: kl, loglik and relevance are left out with one printed line,
    distinct-2 and length stay. rest-em holds its base weights (it restarts from them): they are π₀, swapped in for
    the pass, and the trained weights are back afterwards."""
    full = {"use_peft": False}
    raft = build("raft", recipe(full))
    raft.train()
    summary = _summary(raft.args.output_dir, 1)
    assert not {"monitor/kl_token", "monitor/loglik", "monitor/relevance"} & set(summary)
    assert summary["monitor/distinct2"] is not None and summary["monitor/length"] is not None
    printed = capsys.readouterr().out
    assert printed.count("held-out monitors: kl, loglik and relevance left out: a full fine-tune holds no copy") == 1

    rest_em = build("rest-em", recipe({**full, **SELECTS["rest-em"],
                                       "output_dir": str(Path(raft.args.output_dir).parent / "rest-em")}))
    base = trainable(rest_em.model)
    rest_em.train()
    trained = trainable(rest_em.model)
    summary = _summary(rest_em.args.output_dir, 1)
    assert summary["monitor/kl_token_baseline"] == 0.0 and summary["monitor/kl_token"] > 0
    assert any(not torch.equal(base[n], trained[n]) for n in base)  # the policy after the pass is the trained one
    saved = rest_em.store.load_policy()
    assert all(torch.equal(saved[n], trained[n]) for n in trained)


@pytest.fixture(scope="module")
def review_lm(tmp_path_factory) -> str:
    from tiny import save_review_lm

    return save_review_lm(tmp_path_factory.mktemp("review-lm"))


@pytest.mark.slow
def test_a_reward_that_pays_for_a_stock_word_trips_the_guard_and_an_honest_reward_does_not(review_lm, tmp_path,
                                                                                           capsys):
    """The review model (tests/tiny.py) writes short reviews of both polarities and, now and then, a stock line
    ("yes yes yes yes ."). RAFT with the same settings and two rewards: one pays for every "yes" — the policy learns to
    say the stock line over and over, the reward climbs, the samples repeat themselves (distinct-2 falls) and the guard
    trips; the other pays for a positive review — the reward climbs beyond noise too, the samples stay reviews, and
    the guard stays quiet (seeds 3, 4 and 5 measured alike: docs/monitors.md)."""
    from tiny import REVIEW_PROMPTS

    data = tmp_path / "reviews"
    write_jsonl(data / "train.jsonl", [{"prompt": p} for p in REVIEW_PROMPTS])
    write_jsonl(data / "test.jsonl", [{"prompt": p} for p in REVIEW_PROMPTS * 2])
    runs = {}
    for reward in ("says_yes", "positive_review"):
        trainer = build("raft", write_recipe(tmp_path / f"{reward}.yaml", {
            "model_name_or_path": review_lm, "dataset_name": str(data), "dataset_test_split": "test",
            "output_dir": str(tmp_path / reward), "reward_funcs": [f"sampling_rewards:{reward}"], "num_iterations": 3,
            "num_generations": 8, "max_new_tokens": 16, "temperature": 1.0, "generation_batch_size": 64,
            "raft_selection": "top", "top_alpha": 0.25, "per_device_train_batch_size": 16, "num_train_epochs": 6,
            "lr_scheduler_type": "constant", "learning_rate": 5e-3, "max_length": 64, "seed": 3,
            "keep_unfinished": True, "heldout_prompts": 16, "heldout_num_generations": 2,
            **{**LORA, "lora_r": 8, "lora_alpha": 16}}))
        trainer.train()
        runs[reward] = [_summary(trainer.args.output_dir, k) for k in (1, 2, 3)]
    printed = capsys.readouterr().out

    gamed = runs["says_yes"]
    tripped = [s for s in gamed if s["reward_hacking"]["tripped"]]
    assert tripped and all(s["heldout_reward_change_low"] > 0 for s in tripped)  # the reward climbed ...
    assert all("monitor/distinct2" in s["reward_hacking"]["fell"] for s in tripped)  # ... by repeating a word
    assert gamed[-1]["monitor/distinct2_change_high"] < 0
    assert "held-out says_yes rose" in printed and "monitor/distinct2 fell" in printed
    honest = runs["positive_review"]
    assert honest[-1]["heldout_reward_change_low"] > 0  # the honest reward climbed beyond noise too ...
    assert not any(s["reward_hacking"]["tripped"] for s in honest)  # ... and nothing tripped
    assert "held-out positive_review rose" not in printed


def _lora_b(folder) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {n: t for n, t in load_file(str(Path(folder) / "adapter_model.safetensors")).items() if "lora_B" in n}


@pytest.mark.slow
def test_stop_ends_the_run_keeps_the_best_policy_and_says_so_on_the_last_line(recipe, run_cli):
    """``reward_hacking: stop`` with a KL limit the first update passes: the run ends after iteration 1 of 3, exit 0;
    the best policy by the guard — the start, iteration 0 (LoRA: a fresh adapter, lora_B all zero) — is in
    output_dir/best, the trained one in output_dir; the last line says so. Run again with resume: it stays stopped."""
    path = recipe({"num_iterations": 3, "reward_hacking": "stop", "max_kl": 1e-9})
    out = Path(yaml.safe_load(Path(path).read_text())["output_dir"])
    code, stdout, stderr = run_cli("train", "raft", "--config", path)
    assert code == 0, stderr
    last = (f"trl-plugins: raft stopped by the reward-hacking guard at iteration 1 of 3: the kept policy is iteration 0 "
            f"(best by the guard), saved to {out / 'best'}; the last policy is in {out}")
    assert stdout.strip().splitlines()[-1] == last
    assert "reward hacking? iteration 1: KL to the starting policy" in stdout
    assert not (out / "iteration_2").exists() and _summary(out, 1)["reward_hacking"]["tripped"]
    assert json.loads((out / "best" / "guard_best.json").read_text()) == {"iteration": 0}
    best, last_policy = _lora_b(out / "best"), _lora_b(out)
    assert best and all(t.abs().max() == 0 for t in best.values())  # the start: a fresh adapter
    assert any(t.abs().max() > 0 for t in last_policy.values())  # the trained adapter, kept as the last policy
    assert (out / "best" / "tokenizer_config.json").is_file()

    code, stdout, stderr = run_cli("train", "raft", "--config", path, "--resume_from_checkpoint", "true")
    assert code == 0, stderr
    assert stdout.strip().splitlines()[-1] == last and not (out / "iteration_2").exists()


@pytest.mark.slow
def test_stop_keeps_the_best_iteration_by_the_guard_not_the_last_one(recipe, monkeypatch):
    """The guard's verdicts scripted (iteration 1 clean and the best, iteration 2 tripped): output_dir/best holds the
    policy saved after iteration 1, not the start nor iteration 2's."""
    from trl_plugins.evaluation import guard

    judge = guard.judge

    def scripted(state, iteration, *args, **kwargs):
        verdict, new = judge(state, iteration, *args, **kwargs)
        if iteration == 1:
            new.best_iteration, verdict["tripped"], verdict["best_iteration"] = 1, False, 1
        else:
            verdict["tripped"], verdict["message"] = True, f"reward hacking? iteration {iteration}: scripted"
        return verdict, new

    monkeypatch.setattr(guard, "judge", scripted)
    trainer = build("raft", recipe({"num_iterations": 3, "reward_hacking": "stop"}))
    policies = {}
    save = trainer.save_policy

    def keep(k):
        save(k)
        policies[k] = trainable(trainer.model)

    trainer.save_policy = keep
    trainer.train()
    out = Path(trainer.args.output_dir)
    assert sorted(policies) == [1, 2] and not (out / "iteration_3").exists()
    assert trainer.stopped.startswith("stopped by the reward-hacking guard at iteration 2 of 3: the kept policy is "
                                      "iteration 1")
    best = _lora_b(out / "best")
    after_1 = {n.replace(".default", ""): t for n, t in policies[1].items() if "lora_B" in n}
    assert set(best) == set(after_1) and all(torch.equal(best[n], after_1[n]) for n in best)
    assert any(not torch.equal(policies[1][n], policies[2][n]) for n in policies[1])


@pytest.mark.slow
def test_a_killed_run_resumes_with_the_guards_state(recipe):
    """Killed in iteration 2 and resumed: the guard goes on from the state iteration 1 stored (its verdict kept, not
    judged again from scratch), and judges iterations 2 and 3 against the best iteration it had."""
    path = recipe({"num_iterations": 3, "max_kl": 1e-9})  # warn: every iteration trips, the best stays the start
    trainer = build("raft", path)
    kill_in_iteration(trainer, 2)
    out = Path(trainer.args.output_dir)
    first = _summary(out, 1)
    assert first["reward_hacking"]["tripped"] and not (out / "iteration_2" / "summary.json").exists()

    resumed = build("raft", path, "--resume_from_checkpoint", "true")
    resumed.train(resume_from_checkpoint=True)
    state = _summary(out, 3)["guard_state"]
    assert [v["iteration"] for v in state["verdicts"]] == [1, 2, 3]
    assert state["verdicts"][0] == first["reward_hacking"]  # iteration 1's verdict, read back with its summary
    assert [v["against"] for v in state["verdicts"]] == [0, 0, 0] and state["best_iteration"] == 0
    assert _summary(out, 1) == first
