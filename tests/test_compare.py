"""``trl-plugins compare`` on a tiny random model: bad tasks and methods that do not apply are refused in one line
before any model loads; the budget is split equally; a killed compare resumes its unfinished method only; the table
and compare.json hold the numbers of each method's own run files; the shipped task files parse strictly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from trl_plugins.compare.budget import sampling_share, training_share
from trl_plugins.errors import ConfigError

from helpers import CPU_RUN, PROMPTS, REPO, TESTS, write_jsonl
from tiny import preference_rows


@pytest.fixture
def task_file(tmp_path, tiny_model_dir, monkeypatch):
    """Write a task for the tiny model (raft on prompts, orpo on pairs); ``change(task)`` edits it before writing."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), str(TESTS), os.environ.get("PYTHONPATH", "")]))
    prompts = tmp_path / "prompts"
    write_jsonl(prompts / "train.jsonl", [{"prompt": p, "answer": "3"} for p in PROMPTS])
    write_jsonl(prompts / "test.jsonl", [{"prompt": p, "answer": "3"} for p in PROMPTS[:4]])
    pairs = write_jsonl(tmp_path / "pairs.jsonl", preference_rows(16))

    def make(change=None) -> str:
        task = {"shared": {"model_name_or_path": tiny_model_dir, **CPU_RUN, "learning_rate": 1e-2, "max_length": 64,
                           "per_device_train_batch_size": 4, "seed": 3},
                "dataset": {"name": str(prompts)}, "metric": ["sampling_rewards:good_words"],
                "heldout": {"prompts": 4, "num_generations": 2, "temperature": 1.0, "max_new_tokens": 6,
                            "batch_size": 16},
                "budget": 16,
                "methods": {"raft": {"num_iterations": 2, "num_generations": 2, "keep_unfinished": True,
                                     "max_steps": 2},
                            "orpo": {"dataset_name": pairs}}}
        if change:
            change(task)
        path = tmp_path / "task.yaml"
        path.write_text(yaml.safe_dump(task, sort_keys=False))
        return str(path)

    return make


# -- the budget ----------------------------------------------------------------------------------------------------
def test_budget_split_is_equal_and_never_more_than_the_budget():
    assert sampling_share("raft", 384, 3, 4).setting == {"prompts_per_iteration": 32}
    assert sampling_share("raft", 384, 3, 4).used == 384
    rest = sampling_share("rest", 384, 2, 8)  # 2 x 24 x 8
    assert rest.setting == {"prompts_per_iteration": 24} and rest.used == 384
    odd = sampling_share("raft", 100, 3, 4)  # 8 prompts x 12 = 96: rounded down, and the line says so
    assert odd.used == 96 and "4 of the budget unused" in odd.line(100)
    orpo = training_share("orpo", 384, 4, 2, processes=2)  # 24 steps x 4 x 2 x 2
    assert orpo.setting == {"max_steps": 24} and orpo.used == 384
    assert training_share("orpo", 100, 8, 1).used == 96
    with pytest.raises(ConfigError, match="below one optimizer step"):
        training_share("orpo", 7, 8, 1)
    with pytest.raises(ConfigError, match="below one prompt per iteration"):
        sampling_share("raft", 11, 3, 4)


# -- refusals ------------------------------------------------------------------------------------------------------
def _set(path: str, value):
    def change(task):
        *parents, last = path.split(".")
        node = task
        for key in parents:
            node = node.setdefault(key, {})
        if value is None:
            node.pop(last)
        else:
            node[last] = value
    return change


@pytest.mark.parametrize(
    "change, methods, message",
    [
        (None, "raft,no-such-method", "no-such-method"),
        (None, "raft,margin-rm", "margin-rm: cannot be compared: it trains a sequence-classification model"),
        (_set("methods.orpo.dataset_name", None), "raft,orpo", "orpo: does not apply to this task: "),
        (_set("metrc", ["x"]), None, "unknown key 'metrc'; did you mean 'metric'?"),
        (_set("heldout.temprature", 1.0), None, "heldout: unknown key 'temprature'; did you mean 'temperature'?"),
        (_set("methods.raft.num_iteratons", 2), None, "methods.raft: unknown key 'num_iteratons'"),
        (_set("methods.raft.reward_funcs", ["vader_sentiment"]), None, "'reward_funcs' is set by metric:"),
        (_set("methods.orpo.max_steps", 5), None, "methods.orpo: 'max_steps' is set by the budget"),
        (_set("methods.raft.seed", 1), None, "'seed' must be the same for every method"),
        (_set("shared.temperature", 0.5), "raft,orpo", "shared (for orpo): unknown key 'temperature'"),
        (_set("budget", 3), "orpo", "orpo: budget 3 is below one optimizer step"),
        (_set("budget", 64), "raft", "raft: the budget asks for 16 prompts per iteration but the training split has 6"),
        (_set("metric", ["exact_match"]), "orpo", "held-out split 'test' lacks column"),
    ],
)
def test_bad_task_or_method_is_one_line_exit_2_before_any_model(change, methods, message, task_file, run_cli,
                                                               no_model_loading, tmp_path):
    path = task_file(change)
    if message.startswith("held-out split"):  # prompts without the metric's column
        for split, prompts in (("train", PROMPTS), ("test", PROMPTS[:4])):
            write_jsonl(tmp_path / "prompts" / f"{split}.jsonl", [{"prompt": p} for p in prompts])
    out = tmp_path / "compare"
    code, _, stderr = run_cli("compare", "--config", path, "--output_dir", out,
                                   *(["--methods", methods] if methods else []))
    assert code == 2, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], stderr
    assert not list(out.rglob("compare_job.json"))  # no method was started


# -- a whole compare, killed and resumed ---------------------------------------------------------------------------
def _compare_command(path, out) -> list[str]:
    return [sys.executable, "-m", "trl_plugins", "compare", "--config", path, "--methods", "orpo,raft",
            "--output_dir", str(out)]


def test_killed_compare_resumes_the_unfinished_method_and_the_table_is_the_runs_numbers(task_file, run_cli,
                                                                                      tmp_path):
    path, out = task_file(), tmp_path / "compare"
    process = subprocess.Popen(_compare_command(path, out), start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    first_iteration = out / "raft" / "iteration_1" / "summary.json"
    deadline = time.time() + 300
    while not first_iteration.is_file() and process.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)  # the compare and the method's process with it
    process.wait()
    assert first_iteration.is_file(), "raft never finished its first iteration"
    assert (out / "orpo" / "compare_result.json").is_file() and not (out / "raft" / "compare_result.json").exists()
    orpo_result = (out / "orpo" / "compare_result.json").read_text()
    generations = out / "raft" / "iteration_1" / "generations.jsonl"
    generated_at = generations.stat().st_mtime_ns

    code, stdout, stderr = run_cli(*_compare_command(path, out)[3:])
    assert code == 0, stderr
    assert "orpo: finished earlier" in stdout and "raft: resuming" in stdout
    assert (out / "orpo" / "compare_result.json").read_text() == orpo_result  # not run again
    assert generations.stat().st_mtime_ns == generated_at  # the finished iteration was not sampled again
    assert "orpo: 16 training examples = 4 steps x 4 per device" in stdout
    assert "raft: 16 generated samples = 2 iterations x 4 prompts x 2 samples" in stdout

    figures = json.loads((out / "compare.json").read_text())["methods"]
    # raft: the sampling engine's own files
    summaries = [json.loads(line) for line in (out / "raft" / "sampling_summary.jsonl").read_text().splitlines()]
    baseline = json.loads((out / "raft" / "heldout_baseline.json").read_text())
    raft = figures["raft"]
    assert len(summaries) == 2 and sum(s["samples"] for s in summaries) == raft["generated_samples"] == 16
    assert raft["before"] == baseline["heldout_reward_mean"] == summaries[-1]["heldout_reward_baseline"]
    assert raft["before_se"] == baseline["heldout_reward_se"]
    assert raft["after"] == summaries[-1]["heldout_reward_mean"]
    assert raft["after_se"] == summaries[-1]["heldout_reward_se"]
    assert (raft["change_low"], raft["change_high"]) == (summaries[-1]["heldout_reward_change_low"],
                                                        summaries[-1]["heldout_reward_change_high"])
    assert [p["metric"] for p in raft["curve"]] == [baseline["heldout_reward_mean"]] + [
        s["heldout_reward_mean"] for s in summaries]
    tokens = [json.loads(line)["num_tokens"] for k in (1, 2)
              for line in (out / "raft" / f"iteration_{k}" / "generations.jsonl").read_text().splitlines()]
    assert raft["generated_tokens"] == sum(tokens) > 0
    phases = [json.loads(line) for line in (out / "raft" / "compare_phases.jsonl").read_text().splitlines()]
    assert [p["iteration"] for p in phases] == [1, 2] and raft["trained_tokens"] == sum(
        p["trained_tokens"] for p in phases) > 0
    # orpo: scored the same way on the same held-out prompts, before and after its 4 steps
    orpo = figures["orpo"]
    final = json.loads((out / "orpo" / "heldout_final.json").read_text())
    assert orpo["after"] == final["heldout_reward_mean"] and final["global_step"] == 4
    assert orpo["before_per_prompt"] == baseline["heldout_per_prompt"]["heldout_reward_mean"]  # same base, same seed
    assert orpo["generated_tokens"] == 0 and orpo["trained_tokens"] > 0 and orpo["optimizer_steps"] == 4
    # the task's monitors reach every method (full fine-tunes here: distinct-2 and length; KL and loglik need a
    # start, test_a_non_sampling_row_...), and the guard judged both: raft each iteration, orpo once after training
    for r in (raft, orpo):
        assert set(r["monitors"]) == {"monitor/distinct2", "monitor/length"}
        assert r["monitors"]["monitor/length"]["before"] == baseline["monitor/length"]  # the same base samples
        assert isinstance(r["guard"]["tripped"], bool)
    assert final["reward_hacking"]["iteration"] == 1 and final["reward_hacking"]["against"] == 0
    assert [s["reward_hacking"]["iteration"] for s in summaries] == [1, 2]
    assert orpo["monitors"]["monitor/length"]["after"] == final["monitor/length"]
    # the printed table is those numbers
    for name, r in figures.items():
        row = next(line for line in stdout.splitlines() if line.startswith(name + " "))
        assert f"{r['before']:.3f} ±{r['before_se']:.3f}" in row and f"{r['after']:.3f} ±{r['after_se']:.3f}" in row
        assert f"{r['change']:+.3f} [{r['change_low']:+.3f}, {r['change_high']:+.3f}]" in row
        assert f"{r['trained_tokens']:,}" in row and f"{r['generated_tokens']:,}" in row
    assert (out / "compare.png").stat().st_size > 0
    head_to_head = json.loads((out / "compare.json").read_text())["against_best"]
    assert head_to_head["best"] in figures and f"against the highest after ({head_to_head['best']})" in stdout

    # the same folder with other settings (here the task's learning rate; a new version's defaults alike): the
    # finished runs are not replaced unasked — one line, exit 2, nothing started or rewritten
    results = {run: (out / run / "compare_result.json").read_text() for run in ("orpo", "raft")}
    code, _, stderr = run_cli(*_compare_command(task_file(_set("shared.learning_rate", 5e-3)), out)[3:])
    assert code == 2
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "compare: orpo finished earlier in" in lines[0], stderr
    assert "(learning_rate); running it again would replace its results: delete that folder" in lines[0]
    assert {run: (out / run / "compare_result.json").read_text() for run in ("orpo", "raft")} == results


def test_against_best_is_a_paired_difference_on_the_same_prompts():
    from trl_plugins.compare.report import against_best, against_best_lines
    from trl_plugins.evaluation.intervals import paired_bootstrap

    results = {"a": {"after": 0.5, "after_per_prompt": [1.0, 0.0, 1.0, 0.0]},
               "b": {"after": 0.75, "after_per_prompt": [1.0, 1.0, 1.0, 0.0]},
               "c": {"after": 0.0, "after_per_prompt": [0.0, 0.0, 0.0, 0.0]},
               "failed": {"after": None, "after_per_prompt": None}}
    figures = against_best(results)
    assert figures["best"] == "b" and set(figures["others"]) == {"a", "c"}
    assert figures["others"]["a"]["difference"] == pytest.approx(-0.25)
    assert figures["others"]["c"]["difference"] == pytest.approx(-0.75)
    low, high = paired_bootstrap([1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0])
    assert (figures["others"]["c"]["low"], figures["others"]["c"]["high"]) == (low, high) and high < 0
    lines = against_best_lines(figures)
    assert lines[0].startswith("against the highest after (b)")
    assert any(line.split()[0] == "c" and "below it beyond noise" in line for line in lines)
    assert any(line.split()[0] == "a" and "within noise of it" in line for line in lines)
    assert against_best({"a": results["a"]}) is None


# -- shipped task files --------------------------------------------------------------------------------------------
TASKS = sorted((REPO / "recipes" / "compare").glob("*.yaml"))


@pytest.mark.parametrize("path", TASKS, ids=lambda p: p.stem)
def test_shipped_task_parses_strictly_for_each_of_its_methods(path, tmp_path):
    from trl_plugins.compare.run import method_recipe
    from trl_plugins.compare.task import load_task

    task = load_task(f"compare/{path.stem}")
    assert task.shared["model_name_or_path"].startswith("embedded:") and task.dataset["dataset_name"].startswith(
        "embedded:")
    for name in task.methods:
        plan = method_recipe(task, name, tmp_path)
        assert plan.share.used == task.budget, plan.share.line(task.budget)  # an exactly equal split
        # the iterative preference trainers run on the sampling engine: they spend the budget on generated samples
        assert plan.sampling == (name != "orpo"), name


# -- one held-out evaluation ----------------------------------------------------------------------------------------
TOOLS = json.dumps([{"type": "function", "function": {"name": "answer", "description": "answer", "parameters": {}}}])


@pytest.mark.slow
def test_a_non_sampling_row_and_an_engine_row_of_the_same_model_agree_to_the_last_digit(tmp_path, run_cli):
    """The base model scored by compare's path for a non-sampling method (orpo: the worker's recorder) and by the
    sampling engine's own baseline (raft, built from the recipe the compare writes for it): the same numbers to the
    last digit — on chat prompts whose rows carry their own tools / chat_template_kwargs (rendered into the prompt
    the model sees), two samples each at temperature 1."""
    from transformers import AutoTokenizer

    from trl_plugins.compare.run import method_recipe
    from trl_plugins.compare.task import parse_task
    from trl_plugins.compare.worker import CompareRecorder, heldout_rows
    from trl_plugins.registry import get_registry
    from trl_plugins.run import flow

    from helpers import TOOLS_TEMPLATE
    from tiny import save_tiny_causal_lm

    model = save_tiny_causal_lm(tmp_path / "lm")
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.chat_template = TOOLS_TEMPLATE  # renders the rows' tools and `mood`: a copy that drops them differs
    tokenizer.save_pretrained(model)
    rows = [{"prompt": [{"role": "user", "content": p}], "tools": TOOLS if i % 2 else None,
             "chat_template_kwargs": {"mood": "happy" if i % 3 == 0 else None}} for i, p in enumerate(PROMPTS)]
    write_jsonl(tmp_path / "prompts" / "train.jsonl", rows)
    write_jsonl(tmp_path / "prompts" / "test.jsonl", rows[1:] + rows[:1])
    pairs = write_jsonl(tmp_path / "pairs.jsonl", preference_rows(16))
    lora = {"use_peft": True, "lora_r": 4, "lora_alpha": 8, "lora_target_modules": ["q_proj", "v_proj"]}
    task = parse_task({"shared": {"model_name_or_path": model, **CPU_RUN, "max_length": 64, "seed": 5, **lora},
                       "dataset": {"name": str(tmp_path / "prompts")}, "metric": ["sampling_rewards:text_fingerprint"],
                       "heldout": {"prompts": 5, "num_generations": 2, "temperature": 1.0, "max_new_tokens": 8},
                       "budget": 24, "methods": {"raft": {"num_iterations": 1, "num_generations": 2},
                                                 "orpo": {"dataset_name": pairs}}}, tmp_path / "task.yaml")
    plans = {name: method_recipe(task, name, tmp_path / "compare") for name in ("raft", "orpo")}

    raft = flow.prepare_run(get_registry().trainer("raft"), ["--config", str(plans["raft"].recipe)])
    engine = flow.build_trainer(raft)
    by_engine = engine.evaluate_policy().scores  # what the engine writes as heldout_baseline.json
    orpo = flow.prepare_run(get_registry().trainer("orpo"), ["--config", str(plans["orpo"].recipe)])
    job = {"metric": task.metric, "heldout": task.heldout, "seed": task.seed, "heldout_source": task.dataset,
           "resume": False, "monitors": task.monitors, "heldout_seed": task.seed}
    recorder = CompareRecorder(tmp_path / "compare" / "orpo", job, heldout_rows(job))
    from peft import get_peft_model  # the model the worker's callback gets: orpo's, with its fresh LoRA adapter

    by_compare = recorder.evaluate(get_peft_model(orpo.load_model(), orpo.peft_config()), orpo.load_processing_class())

    assert [row["prompt"] for row in recorder.rows] == [row["prompt"] for row in engine._heldout_rows]
    assert by_compare.extra.pop("generated_tokens") > 0
    assert by_compare.extra.pop("monitor_seconds") > 0 and by_engine.extra.pop("monitor_seconds") > 0
    assert by_compare.to_json() == by_engine.to_json()
    # the held-out monitors of the same function: the base's log-likelihood of its samples (rendered with each row's
    # tools / chat_template_kwargs, as they were sampled) and KL 0 to itself (a fresh adapter changes nothing)
    assert by_engine.per_prompt["monitor/kl_token"] == [0.0] * 5 and by_engine.means["monitor/loglik"] < 0
    assert len(set(by_engine.per_prompt["heldout_reward_mean"])) == 5  # a fingerprint of every prompt's samples
