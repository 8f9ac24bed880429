"""The ORPO demo's VADER metric is held out: none of its prompts is a prompt of the data it trains on."""

from __future__ import annotations

from trl_plugins.demo import HELDOUT_REVIEW_PROMPTS


def _text(prompt) -> str:
    return prompt[0]["content"] if isinstance(prompt, list) else prompt.strip()


def test_orpo_demo_vader_prompts_are_never_training_prompts():
    from trl_plugins.embedded import load_embedded_dataset

    data = load_embedded_dataset("rt-preference")
    training_prompts = {_text(p) for p in data["train"]["prompt"]}
    assert training_prompts == {"Write a one-sentence movie review."}  # what makes a training-prompt metric tempting
    assert len(set(HELDOUT_REVIEW_PROMPTS)) == len(HELDOUT_REVIEW_PROMPTS) >= 8
    assert not training_prompts & set(HELDOUT_REVIEW_PROMPTS)
    assert not {_text(p) for p in data["test"]["prompt"]} & set(HELDOUT_REVIEW_PROMPTS)


def test_sampling_demo_prints_headline_and_fluency_with_intervals(tmp_path, tiny_model_dir, capsys):
    """The RAFT-style demo on the tiny model: the verdict block shows the training reward and the loglik monitor,
    each before ± SE, after ± SE and the paired interval the engine's last summary holds; the exit code says whether
    the headline rose beyond noise."""
    import json

    from trl_plugins.demo import run_sampling_demo

    from helpers import PROMPTS as prompts
    from helpers import write_jsonl, write_recipe

    data = tmp_path / "splits"
    write_jsonl(data / "train.jsonl", [{"prompt": p} for p in prompts])
    write_jsonl(data / "test.jsonl", [{"prompt": p} for p in prompts[:4]])
    recipe = write_recipe(tmp_path / "r.yaml", {
        "model_name_or_path": tiny_model_dir, "dataset_name": str(data), "dataset_test_split": "test",
        "reward_funcs": ["sampling_rewards:good_words"], "heldout_reward_funcs": [f"loglik:{tiny_model_dir}"],
        "heldout_prompts": 4, "heldout_num_generations": 2, "num_iterations": 1, "num_generations": 4,
        "max_new_tokens": 6, "keep_unfinished": True, "max_steps": 2, "max_length": 64, "learning_rate": 1e-2,
        "per_device_train_batch_size": 4, "output_dir": str(tmp_path / "out")})
    code = run_sampling_demo("raft", recipe, str(tmp_path / "out"))
    printed = capsys.readouterr().out
    summary = json.loads((tmp_path / "out" / "iteration_1" / "summary.json").read_text())
    for key, label in (("heldout_reward_mean", "held-out sampling_rewards:good_words (training reward)"),
                       ("heldout/loglik", "held-out loglik (monitor)")):
        stem = "heldout_reward" if key == "heldout_reward_mean" else key
        line = next(line for line in printed.splitlines() if line.startswith(label))
        assert f"{summary[key]:.3f} ± {summary[stem + '_se']:.3f}" in line
        assert f"[{summary[stem + '_change_low']:+.3f}, {summary[stem + '_change_high']:+.3f}]" in line
    # the training reward is not listed again as a monitor under its short name (good_words)
    assert [line.split(" (")[0] for line in printed.splitlines() if "(monitor)" in line] == ["held-out loglik"]
    assert code == (0 if summary["heldout_reward_change_low"] > 0 else 1)
    # the verdict names what rose beyond noise (the interval above 0), what stayed within it and what fell
    names = {"heldout_reward": "sampling_rewards:good_words", "heldout/loglik": "loglik"}
    up = [n for stem, n in names.items() if summary[f"{stem}_change_low"] > 0]
    within = [n for stem, n in names.items() if summary[f"{stem}_change_low"] <= 0 <= summary[f"{stem}_change_high"]]
    down = [n for stem, n in names.items() if summary[f"{stem}_change_high"] < 0]
    verdict = [line for line in printed.splitlines() if line.startswith("result: ")]
    assert verdict == ["result: rose beyond noise: " + (", ".join(up) or "none")
                       + ("; within noise: " + ", ".join(within) if within else "")
                       + ("; fell: " + ", ".join(down) if down else "")]
