"""The sampling trainers on a tiny random model: parameters change, iteration files are written, a killed run
resumes without regenerating, reward models score in batches, and bad input stops before any model loads."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
import torch

from helpers import PROMPTS, kill_in_iteration, read_jsonl, scripted_samples, trainable, write_jsonl, write_recipe
from helpers import build_trainer as build


@pytest.fixture
def prompt_file(tmp_path) -> str:
    return write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p, "answer": "3"} for p in PROMPTS])


@pytest.fixture
def sampling_recipe(tmp_path, tiny_model_dir, prompt_file):
    def make(extra: dict | None = None, name: str = "recipe.yaml") -> str:
        config = {"model_name_or_path": tiny_model_dir, "dataset_name": prompt_file, "output_dir": str(tmp_path / "out"),
                  "reward_funcs": ["sampling_rewards:good_words"], "num_iterations": 2, "num_generations": 4,
                  "max_new_tokens": 6, "temperature": 1.0, "generation_batch_size": 12, "per_device_train_batch_size": 4,
                  "max_steps": 2, "max_length": 64, "learning_rate": 1e-2, "seed": 3,
                  # the tiny random model seldom ends a 6-token sample with EOS: let cut-off samples be selected here
                  # (test_cut_off_samples_are_not_selected_by_default checks the default)
                  "keep_unfinished": True}
        return write_recipe(tmp_path / name, config, extra)

    return make


def changed(before: dict, trainer) -> bool:
    after = trainable(trainer.model)
    return any(not torch.equal(before[n], after[n]) for n in before)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, extra, selection_file",
    [
        ("raft", {"raft_selection": "local"}, "selection.jsonl"),
        ("raft", {"raft_selection": "top", "top_alpha": 0.25}, "selection.jsonl"),
        ("rejection-sampling", {"export_preference_pairs": True}, "pool.jsonl"),
        ("rest", {"improve_steps": 2, "improve_thresholds": [0.5, 0.75]}, "selection_step2.jsonl"),
        ("rest-em", {"reward_funcs": ["sampling_rewards:even_length"], "max_per_prompt": 2}, "selection.jsonl"),
    ],
)
def test_trainer_changes_parameters_and_writes_iteration_files(name, extra, selection_file, sampling_recipe):
    trainer = build(name, sampling_recipe(extra))
    before = trainable(trainer.model)
    trainer.train()
    assert changed(before, trainer), "the fine-tuning phases did not move the weights"
    out = Path(trainer.args.output_dir)
    for k in (1, 2):
        gens = read_jsonl(out / f"iteration_{k}" / "generations.jsonl")
        rewards = read_jsonl(out / f"iteration_{k}" / "rewards.jsonl")
        assert len(gens) == len(rewards) == len(PROMPTS) * 4
        assert (out / f"iteration_{k}" / selection_file).is_file()
        summary = json.loads((out / f"iteration_{k}" / "summary.json").read_text())
        assert summary["samples"] == len(PROMPTS) * 4 and summary["kept"] >= 1
        for key in ("reward_all_mean", "reward_all_median", "reward_all_max", "reward_selected_mean",
                    "distinct2_all", "mean_tokens_all"):
            assert summary[key] is not None
        assert summary["generation_tokens"] == sum(g["num_tokens"] for g in gens)  # the speed record of the phase
        assert summary["generation_seconds"] > 0 and summary["generation_tokens_per_s"] > 0
    assert len(read_jsonl(out / "sampling_summary.jsonl")) == 2
    assert (out / "rewards_by_iteration.png").stat().st_size > 1000
    summary = json.loads((out / "iteration_2" / "summary.json").read_text())
    if name == "raft" and extra["raft_selection"] == "local":
        assert summary["kept"] == len(PROMPTS)  # one per prompt: the one with its prompt's highest reward
        rewards = [r["reward"] for r in read_jsonl(out / "iteration_2" / "rewards.jsonl")]
        rows = [g["row"] for g in read_jsonl(out / "iteration_2" / "generations.jsonl")]
        best = {row: max(r for r, w in zip(rewards, rows) if w == row) for row in set(rows)}
        selected = read_jsonl(out / "iteration_2" / "selection.jsonl")
        assert sorted(s["row"] for s in selected) == sorted(best)
        assert any(len({r for r, w in zip(rewards, rows) if w == row}) > 1 for row in best)  # a choice was made
        assert all(s["reward"] == rewards[s["index"]] == best[s["row"]] for s in selected)
    if name == "raft" and extra["raft_selection"] == "top":
        assert summary["kept"] == 6  # ceil(0.25 * 24)
    if name == "rejection-sampling":
        assert summary["pool_size"] == len(PROMPTS)
        pairs = read_jsonl(out / "preference_pairs.jsonl")
        assert pairs and all(p["chosen_reward"] > p["rejected_reward"] for p in pairs)
        assert set(pairs[0]) >= {"prompt", "chosen", "rejected"}
    if name == "rest":
        assert len(summary["kept_per_step"]) == 2 and summary["kept_per_step"][1] <= summary["kept_per_step"][0]
    if name == "rest-em":
        kept = read_jsonl(out / "iteration_2" / "selection.jsonl")
        assert all(s["reward"] == 1.0 for s in kept)
        per_prompt = {}
        for s in kept:
            per_prompt[s["row"]] = per_prompt.get(s["row"], 0) + 1
        assert max(per_prompt.values()) <= 2


@pytest.mark.slow
def test_heldout_scores_training_and_monitor_rewards(sampling_recipe, tmp_path, capsys):
    """Held-out samples are scored by the training reward (weighted) and by heldout_reward_funcs, which never
    enter selection; baseline and per-iteration values land in the summary and the printed table."""
    data = tmp_path / "splits"
    write_jsonl(data / "train.jsonl", [{"prompt": p} for p in PROMPTS])
    write_jsonl(data / "test.jsonl", [{"prompt": p} for p in PROMPTS[:3]])
    trainer = build("raft", sampling_recipe({
        "dataset_name": str(data), "dataset_test_split": "test", "heldout_prompts": 3, "heldout_num_generations": 2,
        "reward_weights": [2.0], "heldout_reward_funcs": ["sampling_rewards:even_length"], "num_iterations": 1}))
    trainer.train()
    out = Path(trainer.args.output_dir)
    summary = json.loads((out / "iteration_1" / "summary.json").read_text())
    baseline = json.loads((out / "heldout_baseline.json").read_text())
    for scores in (summary, baseline):
        assert scores["heldout_reward_mean"] == pytest.approx(2.0 * scores["heldout/good_words"])
        assert scores["heldout/even_length"] in {k / 6 for k in range(7)}  # 3 prompts x 2 samples, 0/1 each
    assert summary["heldout/even_length_baseline"] == baseline["heldout/even_length"]
    assert summary["heldout_reward_baseline"] == baseline["heldout_reward_mean"]
    rewards = read_jsonl(out / "iteration_1" / "rewards.jsonl")
    assert set(rewards[0]) == {"reward", "reward/good_words"}  # the monitor never scores training samples
    printed = capsys.readouterr().out
    assert "even_length" in printed and "held-out before training" in printed
    # the noise of every held-out mean (training reward and monitor): SE over held-out prompts (the unit; 2 samples
    # each) and a paired interval of the change since before training
    for key, stem in (("heldout_reward_mean", "heldout_reward"), ("heldout/even_length", "heldout/even_length")):
        for scores in (summary, baseline):
            per_prompt = scores["heldout_per_prompt"][key]
            assert len(per_prompt) == 3 and statistics.fmean(per_prompt) == pytest.approx(scores[key])
            assert scores[f"{stem}_se"] == pytest.approx(statistics.stdev(per_prompt) / math.sqrt(3))
        diffs = [a - b for a, b in zip(summary["heldout_per_prompt"][key], baseline["heldout_per_prompt"][key])]
        low, high = summary[f"{stem}_change_low"], summary[f"{stem}_change_high"]
        assert min(diffs) - 1e-9 <= low <= high <= max(diffs) + 1e-9
        assert f"{summary[key] - summary[f'{stem}_baseline']:+.3f} [{low:+.2f},{high:+.2f}]" in printed
        assert key != "heldout/even_length" or set(per_prompt) <= {0.0, 0.5, 1.0}  # 2 samples per prompt, 0/1 each
    assert (f"held-out before training: {baseline['heldout_reward_mean']:.3f} ±{baseline['heldout_reward_se']:.3f}; "
            f"even_length {baseline['heldout/even_length']:.3f} ±{baseline['heldout/even_length_se']:.3f})") in printed


@pytest.mark.slow
def test_rest_em_fine_tunes_from_the_base_weights_each_iteration(sampling_recipe, monkeypatch):
    import trl_plugins.sampling.trainer as engine

    trainer = build("rest-em", sampling_recipe({"reward_funcs": ["sampling_rewards:even_length"],
                                                "num_iterations": 2}))
    base = trainable(trainer.model)
    starts = []
    real_train = engine.SFTTrainer.train

    def record_start(self, *args, **kwargs):  # the weights each SFT phase starts from
        starts.append(trainable(self.model))
        return real_train(self, *args, **kwargs)

    monkeypatch.setattr(engine.SFTTrainer, "train", record_start)
    trainer.train()
    assert len(starts) == 2
    for start in starts:
        assert all(torch.equal(start[n], base[n]) for n in base)
    assert changed(base, trainer)


@pytest.mark.slow
def test_killed_run_resumes_without_regenerating(sampling_recipe, tmp_path):
    common = {"num_iterations": 3, "raft_selection": "local"}
    full = build("raft", sampling_recipe({**common, "output_dir": str(tmp_path / "full")}, "full.yaml"))
    full.train()
    full_calls = full.backend.calls
    calls_per_iteration = full_calls // 3

    killed = build("raft", sampling_recipe({**common, "output_dir": str(tmp_path / "killed")}, "killed.yaml"))
    kill_in_iteration(killed, 2)
    out = tmp_path / "killed"
    assert (out / "iteration_1" / "summary.json").is_file()
    assert (out / "iteration_2" / "generations.jsonl").is_file()
    assert not (out / "iteration_2" / "summary.json").exists()
    first = (out / "iteration_1" / "generations.jsonl").read_bytes()

    resumed = build("raft", sampling_recipe({**common, "output_dir": str(out)}, "resumed.yaml"),
                    "--resume_from_checkpoint", "true")
    resumed.train(resume_from_checkpoint=True)
    # only iteration 3 was sampled: iteration 1 finished, iteration 2's samples were on disk
    assert full_calls == 3 and resumed.backend.calls == calls_per_iteration == 1
    assert (out / "iteration_1" / "generations.jsonl").read_bytes() == first
    for k in (1, 2, 3):
        a = read_jsonl(tmp_path / "full" / f"iteration_{k}" / "selection.jsonl")
        b = read_jsonl(out / f"iteration_{k}" / "selection.jsonl")
        assert [(s["index"], s["completion"]) for s in a] == [(s["index"], s["completion"]) for s in b]
    assert [json.loads(line)["iteration"] for line in (out / "sampling_summary.jsonl").read_text().splitlines()] == [
        1, 2, 3]
    final_full, final_resumed = trainable(full.model), trainable(resumed.model)
    assert all(torch.allclose(final_full[n], final_resumed[n]) for n in final_full)


@pytest.mark.parametrize("keep", [False, True], ids=["default", "keep_unfinished"])
def test_cut_off_samples_are_not_selected_by_default(sampling_recipe, keep):
    """A sample cut at max_new_tokens is never selected (it would teach stopping mid-sentence) unless
    keep_unfinished; either way the summary counts it."""
    trainer = build("raft", sampling_recipe({"num_iterations": 1, "keep_unfinished": keep}))
    # per prompt the best-rewarded sample is the cut-off one
    trainer.generate_samples = scripted_samples([("good good good", False), ("good movie", True), ("bad film", True),
                                                 ("the plot", True)])
    trainer.train()
    selected = read_jsonl(Path(trainer.args.output_dir) / "iteration_1" / "selection.jsonl")
    assert trainer.summaries[0]["unfinished"] == len(PROMPTS)
    assert len(selected) == len(PROMPTS)
    expected = "good good good" if keep else "good movie"
    assert {s["completion"] for s in selected} == {expected}


def test_best_ever_pool_keeps_earlier_prompts_and_their_best(sampling_recipe):
    """Rejection sampling fine-tunes on the best sample ever seen for every prompt sampled so far: with 3 of 6
    prompts per iteration the pool outgrows one iteration, and holds each prompt's best reward over iterations."""
    trainer = build("rejection-sampling", sampling_recipe({"num_iterations": 3, "prompts_per_iteration": 3}))
    trainer.train()
    out = Path(trainer.args.output_dir)
    best: dict[int, float] = {}
    for k in (1, 2, 3):
        for s in read_jsonl(out / f"iteration_{k}" / "selection.jsonl"):
            best[s["row"]] = max(best.get(s["row"], -math.inf), s["reward"])
        pool = {p["row"]: p["reward"] for p in read_jsonl(out / f"iteration_{k}" / "pool.jsonl")}
        assert pool == pytest.approx(best)
    assert len(best) > 3  # prompts of earlier iterations stayed in the pool
    assert trainer.summaries[-1]["pool_from_earlier_iterations"] > 0


def test_none_rewards_are_dropped_and_counted(sampling_recipe):
    """A sample some reward cannot score (None) is never selected, and the summary counts it; a prompt whose samples
    all have None selects nothing."""
    trainer = build("raft", sampling_recipe({"reward_funcs": ["sampling_rewards:none_for_short"],
                                             "num_iterations": 1}))
    # per prompt: one sample of under 3 words (None), two that score (3 and 4 words); the last prompt: None only
    candidates = [("good", True), ("good movie here", True), ("a good movie here", True)]
    generate = scripted_samples(candidates)

    def samples(k):
        kept = [s for s in generate(k) if s.row < len(PROMPTS) - 1 or s.sample == 0]
        for i, sample in enumerate(kept):
            sample.index = i
        return kept

    trainer.generate_samples = samples
    trainer.train()
    summary = trainer.summaries[0]
    rewards = [r["reward"] for r in read_jsonl(Path(trainer.args.output_dir) / "iteration_1" / "rewards.jsonl")]
    assert rewards.count(None) == summary["dropped"] == len(PROMPTS) and summary["samples"] == 3 * len(PROMPTS) - 2
    selected = read_jsonl(Path(trainer.args.output_dir) / "iteration_1" / "selection.jsonl")
    assert [(s["row"], s["completion"], s["reward"]) for s in selected] == [
        (row, "a good movie here", 4.0) for row in range(len(PROMPTS) - 1)]


def _tokenizer_with_bos():
    """The tiny word tokenizer, but adding a BOS token like Llama 3's (its pad differs from its EOS, as Qwen2.5's)."""
    from tokenizers.processors import TemplateProcessing

    from tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    bos = "<|im_start|>"
    tok._tokenizer.post_processor = TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, tok.convert_tokens_to_ids(bos))])
    tok.bos_token = bos
    return tok


@pytest.mark.parametrize("bos", [False, True], ids=["pad!=eos", "adds-bos"])
def test_reward_model_source_scores_as_reward_trainer_trained(tmp_path, bos):
    """A reward model is scored on exactly the tokens TRL's RewardTrainer trains it on (EOS appended, the
    tokenizer's special tokens, chat template for conversations), in batches with padding."""
    from datasets import Dataset
    from transformers import LlamaForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    from trl_plugins.sampling.reward_sources import build as build_sources
    from trl_plugins.sampling.reward_sources import resolve, score

    from tiny import tiny_llama_config, tiny_tokenizer

    tok = _tokenizer_with_bos() if bos else tiny_tokenizer()
    assert tok.pad_token_id != tok.eos_token_id
    torch.manual_seed(0)
    rm = LlamaForSequenceClassification(tiny_llama_config(len(tok), num_labels=1)).eval()
    rm.save_pretrained(tmp_path / "rm")
    tok.save_pretrained(tmp_path / "rm")
    sources = build_sources(resolve([str(tmp_path / "rm"), "sampling_rewards:good_words"], [2.0, 1.0]),
                            batch_size=2)
    prompts = ["how was the movie ?"] * 3 + [[{"role": "user", "content": "how was it ?"}]]
    completions = [" good", " a bad film", " the best movie ever", [{"role": "assistant", "content": "great"}]]
    totals, parts = score(sources, prompts, completions, [{}] * 4)

    # What RewardTrainer trains on: its own _prepare_dataset, one pair at a time (no padding involved).
    expected = []
    for prompt, completion in zip(prompts, completions):
        data = Dataset.from_list([{"prompt": prompt, "chosen": completion, "rejected": completion}])
        row = RewardTrainer._prepare_dataset(None, data, tok, RewardConfig(str(tmp_path / "x"), max_length=None, bf16=False, use_cpu=True),
                                             "train")[0]
        with torch.no_grad():
            expected.append(rm(input_ids=torch.tensor([row["chosen_ids"]])).logits[0, 0].item())
    assert parts["rm"] == pytest.approx(expected, abs=1e-5)
    assert totals == pytest.approx([2 * e + g for e, g in zip(expected, parts["good_words"])], abs=1e-5)


@pytest.mark.parametrize(
    "name, extra, message",
    [
        ("raft", {"dataset_name": "TEXTFILE"}, "missing column 'prompt'"),
        ("raft", {"reward_funcs": ["vader_sentimnt"]}, "did you mean 'vader_sentiment'"),
        ("raft", {"reward_funcs": ["no_such_module:score"]}, "cannot import 'no_such_module:score'"),
        ("raft", {"reward_funcs": ["TINYMODEL"]}, "not a sequence-classification reward model"),
        ("raft", {"num_generations": 0}, "num_generations (K) must be >= 1"),
        ("raft", {"raft_selection": "top", "top_alpha": 1.5}, "top_alpha must be in (0, 1]"),
        ("raft", {"top_alpha": 0}, "top_alpha must be in (0, 1]"),
        ("rest", {"improve_steps": 2, "improve_thresholds": [0.9, 0.7]}, "must be strictly rising"),
        ("rest", {"improve_steps": 3, "improve_thresholds": [0.5, 0.7]}, "has 2 values for 3 improve_steps"),
        ("rest-em", {"reward_funcs": ["exact_match"], "dataset_name": "NOANSWER"}, "needs a column 'answer'"),
        ("rejection-sampling", {"reward_funcs": ["/no/such/rm"]}, "does not exist"),
        ("raft", {"heldout_reward_funcs": ["vader_sentimnt"]}, "heldout_reward_funcs: unknown reward function"),
        ("raft", {"reward_funcs": ["someone/uncached-rm"]}, "not a local folder and not in the Hugging Face cache"),
        ("raft", {"heldout_reward_funcs": ["./no/such/rm"]}, "heldout_reward_funcs: reward model path './no/such/rm'"),
    ],
)
def test_bad_input_is_one_line_exit_2_before_model_load(name, extra, message, sampling_recipe, run_cli,
                                                        no_model_loading, tmp_path, tiny_model_dir):
    replacements = {
        "TEXTFILE": write_jsonl(tmp_path / "text.jsonl", [{"text": "hello"}]),
        "NOANSWER": write_jsonl(tmp_path / "noanswer.jsonl", [{"prompt": "what is one plus two ?"}]),
        "TINYMODEL": tiny_model_dir,
    }
    extra = {k: ([replacements.get(x, x) for x in v] if isinstance(v, list) else replacements.get(v, v))
             for k, v in extra.items()}
    code, out, err = run_cli("train", name, "--config", sampling_recipe(extra))
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], err


def test_run_that_trained_nothing_exits_3(sampling_recipe, run_cli, tmp_path):
    """Every sample scored None (so none is selected in any iteration): the run says so on its last line and exits
    3, not 0; a run that trained exits 0."""
    code, out, err = run_cli("train", "raft", "--config", sampling_recipe(
        {"num_iterations": 1, "reward_funcs": ["sampling_rewards:none_for_short"], "max_new_tokens": 1}))
    assert code == 3, err
    assert err.strip().splitlines()[-1].startswith("error: raft trained nothing: no iteration took an optimizer step")
    code, out, err = run_cli("train", "raft", "--config", sampling_recipe({"num_iterations": 1}),
                             "--overwrite_output_dir", "true")
    assert code == 0, err
