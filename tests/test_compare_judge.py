"""``trl-plugins compare`` with a method listed twice under two labels (``trainer:``), one trained on a reward of its
own — a judge — while the task metric scores both on the same held-out prompts; a judge as the task metric (the
``judge:`` section); their refusals in one line before any model loads.

    python -m pytest tests/test_compare_judge.py -q
"""

from __future__ import annotations

import json
import os

import pytest
import yaml

from helpers import CPU_RUN, PROMPTS, REPO, TESTS, write_jsonl

YES_NO = "review : {completion} . is it good ? yes or no ?"


@pytest.fixture
def task_file(tmp_path, tiny_model_dir, monkeypatch):
    """A task for the tiny model: raft on the metric, raft-judge (trainer raft) on a judge; ``change(task)`` edits it."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), str(TESTS), os.environ.get("PYTHONPATH", "")]))
    for split, prompts in (("train", PROMPTS), ("test", PROMPTS[:4])):
        write_jsonl(tmp_path / "prompts" / f"{split}.jsonl", [{"prompt": p, "answer": "3"} for p in prompts])
    template = tmp_path / "yes_no.txt"
    template.write_text(YES_NO)
    raft = {"num_iterations": 2, "num_generations": 2, "keep_unfinished": True, "max_steps": 2}

    def make(change=None) -> str:
        task = {"shared": {"model_name_or_path": tiny_model_dir, **CPU_RUN, "learning_rate": 1e-2, "max_length": 64,
                           "per_device_train_batch_size": 4, "seed": 3, "use_peft": True, "lora_r": 4,
                           "lora_target_modules": ["all-linear"]},
                "dataset": {"name": str(tmp_path / "prompts")}, "metric": ["sampling_rewards:good_words"],
                "heldout": {"prompts": 4, "num_generations": 2, "temperature": 1.0, "max_new_tokens": 6,
                            "batch_size": 16},
                "budget": 16,
                "methods": {"raft": dict(raft),
                            "raft-judge": {"trainer": "raft", "reward_funcs": [f"judge:{tiny_model_dir}"],
                                           "judge_template": str(template), **raft}}}
        if change:
            change(task)
        path = tmp_path / "task.yaml"
        path.write_text(yaml.safe_dump(task, sort_keys=False))
        return str(path)

    return make


def test_a_method_under_a_label_trains_on_its_own_reward_and_is_scored_by_the_metric(task_file, tmp_path,
                                                                                     tiny_model_dir):
    from trl_plugins.compare.run import method_recipe
    from trl_plugins.compare.task import load_task

    task = load_task(task_file(_set("methods.raft-judge.reward_weights", [2.0])))
    assert task.trainers == {"raft-judge": "raft"} and "trainer" not in task.methods["raft-judge"]
    plain, judged = (method_recipe(task, name, tmp_path / "out") for name in ("raft", "raft-judge"))
    assert (plain.name, plain.trainer, plain.metric_column) == ("raft", None, "heldout_reward_mean")
    assert (judged.name, judged.trainer) == ("raft-judge", "raft")
    assert judged.output_dir == tmp_path / "out" / "raft-judge" and judged.recipe.name == "raft-judge.yaml"
    assert judged.metric_column == "heldout/good_words"  # the metric is its held-out monitor
    recipe = yaml.safe_load(judged.recipe.read_text())
    assert recipe["reward_funcs"] == [f"judge:{tiny_model_dir}"] and recipe["reward_weights"] == [2.0]
    assert recipe["heldout_reward_funcs"] == ["sampling_rewards:good_words"]
    assert recipe["prompts_per_iteration"] == yaml.safe_load(plain.recipe.read_text())["prompts_per_iteration"]
    assert plain.share.used == judged.share.used == 16


def test_the_metric_is_read_from_the_monitor_column():
    from trl_plugins.compare.report import as_metric
    from trl_plugins.sampling.records import HeldoutScores

    scores = HeldoutScores(means={"heldout_reward_mean": 0.9, "heldout/vader": 0.2}, se={"heldout/vader": 0.05},
                           per_prompt={"heldout_reward_mean": [0.9], "heldout/vader": [0.2]},
                           changes={"heldout/vader": (-0.1, 0.3)})
    metric = as_metric(scores, "heldout/vader")
    assert (metric.means["heldout_reward_mean"], metric.se["heldout_reward_mean"]) == (0.2, 0.05)
    assert metric.per_prompt["heldout_reward_mean"] == [0.2] and metric.changes["heldout_reward_mean"] == (-0.1, 0.3)
    same = HeldoutScores(means={"heldout_reward_mean": 0.9})
    assert as_metric(same, "heldout_reward_mean").means == {"heldout_reward_mean": 0.9}


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


def _both(*changes):
    def change(task):
        for c in changes:
            c(task)
    return change


@pytest.mark.parametrize("change, methods, message", [
    (_set("methods.raft-judge.trainer", None), None, "'reward_funcs' is set by metric:"),
    (_set("methods.raft-judge.trainer", "no-such-trainer"), None, "unknown trainer 'no-such-trainer'"),
    (_set("methods.raft-judge.trainer", ""), None, "methods.raft-judge.trainer must name a registered trainer"),
    (_set("methods.orpo", {"trainer": "raft", "num_iterations": 2}), "orpo", "cannot be the name of trainer 'orpo'"),
    (_set("methods.orpo-judge", {"trainer": "orpo", "reward_funcs": ["vader_sentiment"]}), "orpo-judge",
     "reward_funcs of its own applies to a sampling method"),
    (_set("metric", ["sampling_rewards:good_words", "sampling_rewards:even_length"]), None,
     "scored on a metric of one entry"),
    (_set("metric", ["judge:policy"]), None, "judge:policy"),
    (_set("metric", ["judge:embedded:smollm2-135m-instruct"]), None, "needs judge.template"),
    (_set("judge", {"template": "sentiment_positive"}), None, "judge: sets the knobs of a judge:MODEL metric"),
    (_set("judge", {"tempate": "x"}), None, "judge: unknown key 'tempate'; did you mean 'template'?"),
    (_both(_set("metric", ["judge:embedded:smollm2-135m-instruct"]), _set("judge", {"template": "sentiment_positive"}),
           _set("shared.judge_batch_size", 4)), None, "'judge_batch_size' is set by judge:"),
])
def test_bad_labels_rewards_and_judges_are_one_line_exit_2_before_any_model(change, methods, message, task_file,
                                                                           run_cli, no_model_loading, tmp_path):
    out = tmp_path / "compare"
    code, _, stderr = run_cli("compare", "--config", task_file(change), "--output_dir", out,
                              "--methods", methods or "raft,raft-judge")
    assert code == 2, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], stderr
    assert not list(out.rglob("compare_job.json"))  # no method was started


@pytest.mark.slow
def test_raft_and_raft_trained_by_a_judge_are_compared_on_the_metric(task_file, run_cli, tmp_path):
    out = tmp_path / "compare"
    code, stdout, stderr = run_cli("compare", "--config", task_file(), "--output_dir", out)
    assert code == 0, stderr
    figures = json.loads((out / "compare.json").read_text())["methods"]
    assert set(figures) == {"raft", "raft-judge"}
    judged = [json.loads(line) for line in (out / "raft-judge" / "sampling_summary.jsonl").read_text().splitlines()]
    baseline = json.loads((out / "raft-judge" / "heldout_baseline.json").read_text())
    # raft-judge trained on the judge; its row is the metric (its monitor column), never the judge's own numbers
    assert figures["raft-judge"]["after"] == judged[-1]["heldout/good_words"] != judged[-1]["heldout_reward_mean"]
    assert figures["raft-judge"]["before"] == baseline["heldout/good_words"]
    assert all(row["judge_seconds"] > 0 for row in judged)
    # the same base sampled the same way: both rows start from the same metric value, prompt by prompt
    assert figures["raft"]["before_per_prompt"] == figures["raft-judge"]["before_per_prompt"]
    assert "raft-judge" in stdout and "note: the 'before' values differ" not in stdout


def test_a_judge_metric_scores_every_method_alike(task_file, tmp_path, tiny_model_dir):
    """metric judge:MODEL with the task's judge: knobs: the worker's held-out scores of a model (how a non-sampling
    method is scored) equal the sampling engine's scores of the same model from the recipe the compare writes."""
    from trl_plugins.compare.run import _job, method_recipe
    from trl_plugins.compare.task import load_task
    from trl_plugins.compare.worker import CompareRecorder, heldout_rows
    from trl_plugins.registry import get_registry
    from trl_plugins.run import flow

    def judge_metric(task):
        task["metric"] = [f"judge:{tiny_model_dir}"]
        task["judge"] = {"template": str(tmp_path / "yes_no.txt"), "batch_size": 3}
        task["methods"].pop("raft-judge")

    task = load_task(task_file(judge_metric))
    assert task.judge == {"judge_template": str(tmp_path / "yes_no.txt"), "judge_batch_size": 3}
    plan = method_recipe(task, "raft", tmp_path / "compare")
    assert yaml.safe_load(plan.recipe.read_text())["judge_batch_size"] == 3
    run = flow.prepare_run(get_registry().trainer("raft"), ["--config", str(plan.recipe)])
    engine = flow.build_trainer(run)
    by_engine = engine.evaluate_policy().scores
    job = {**_job(task, plan), "resume": False}
    assert job["judge"] == task.judge
    recorder = CompareRecorder(tmp_path / "compare" / "raft", job, heldout_rows(job))
    by_compare = recorder.evaluate(engine.model, run.load_processing_class())
    by_compare.extra.pop("generated_tokens")
    assert by_compare.extra.pop("monitor_seconds") > 0 and by_engine.extra.pop("monitor_seconds") > 0
    assert by_compare.to_json() == by_engine.to_json()
    assert 0 < by_engine.means["heldout_reward_mean"] < 1
