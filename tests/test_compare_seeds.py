"""``trl-plugins compare --seeds N`` and the task's ``monitors:``: bad values are one line before any model; the table
and compare.json over seeds and with monitor columns and flagged rows, from figures built by hand (the numbers must be
the means, SEs and intervals of those figures); a run's monitor keys and guard verdicts read from its files; and a
killed compare with two seeds resumes the unfinished (method, seed) only; a compare stopped by SIGTERM stops its worker.

    python -m pytest tests/test_compare_seeds.py -q
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_compare import task_file  # noqa: F401  (the fixture: a task for the tiny model)

from trl_plugins.compare.report import (
    COLUMNS,
    against_best_over_seeds_lines,
    legend_lines,
    method_figures,
    seeds_table,
    table,
    write_report,
)
from trl_plugins.compare.seeds import against_best_over_seeds, over_seeds, pooled
from trl_plugins.compare.task import Task
from trl_plugins.evaluation.intervals import mean_interval, mean_se, paired_bootstrap
from trl_plugins.evaluation.monitors import DEFAULT_MONITORS

from helpers import write_jsonl


# -- refusals ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("monitors, extra, message", [
    (["kl", "entropy"], [], "monitors: unknown monitor 'entropy' (known: kl, loglik, distinct2, length, relevance)"),
    (["distinct-2"], [], "monitors: unknown monitor 'distinct-2'; did you mean 'distinct2'?"),
    (["kl", "kl"], [], "monitors: names a monitor twice"),
    ("default", ["--seeds", "0"], "--seeds must be an integer >= 1, got 0"),
])
def test_bad_monitors_or_seeds_are_one_line_exit_2_before_any_model(monitors, extra, message, task_file,  # noqa: F811
                                                                     run_cli, no_model_loading, tmp_path):
    def change(task):
        if monitors != "default":
            task["monitors"] = monitors

    out = tmp_path / "compare"
    code, _, stderr = run_cli("compare", "--config", task_file(change), "--output_dir", out, *extra)
    assert code == 2, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], stderr
    assert not out.exists() or not list(out.rglob("compare_job.json"))


def test_task_monitors_default_and_choice(tmp_path):
    from trl_plugins.compare.task import parse_task

    base = {"shared": {"model_name_or_path": "m"}, "dataset": {"name": "d"}, "metric": "exact_match",
            "heldout": {"prompts": 4}, "budget": 8}
    assert parse_task(base, tmp_path / "t.yaml").monitors == list(DEFAULT_MONITORS)
    assert parse_task({**base, "monitors": []}, tmp_path / "t.yaml").monitors == []
    assert parse_task({**base, "monitors": ["distinct2"]}, tmp_path / "t.yaml").monitors == ["distinct2"]


# -- figures built by hand ----------------------------------------------------------------------------------------------
def run_figures(method: str, seed: int, before: list[float], after: list[float], monitors: dict | None = None,
                guard: dict | None = None) -> dict:
    """A run's figures as ``report.method_figures`` makes them (before/after per prompt given; the rest follows)."""
    b, b_se = mean_se(before)
    a, a_se = mean_se(after)
    low, high = paired_bootstrap(before, after, seed=seed)
    return {"method": method, "sampling": True, "budget_unit": "generated samples", "budget_used": 16,
            "budget_detail": "2 iterations x 4 prompts x 2 samples", "budget_setting": {"prompts_per_iteration": 4},
            "before": b, "before_se": b_se, "after": a, "after_se": a_se, "change": a - b, "change_low": low,
            "change_high": high, "before_per_prompt": before, "after_per_prompt": after,
            "curve": [{"spent": 0.0, "metric": b, "se": b_se}, {"spent": 1.0, "iteration": 2, "metric": a,
                                                                 "se": a_se}],
            "wall_seconds": 10.0, "attempts": 1, "generated_samples": 16, "generated_tokens": 100 + seed,
            "trained_tokens": 200, "optimizer_steps": 4, "seed": seed, "monitors": monitors or {},
            "guard": guard or {"tripped": False, "iterations": [], "messages": [], "best_iteration": 2}}


BEFORE = [0.1, 0.4, 0.2, 0.5, 0.3, 0.6]
TRIPPED = {"tripped": True, "iterations": [2], "best_iteration": 1,
           "messages": ["reward hacking? iteration 2: held-out metric rose +0.300 [+0.200, +0.400] while "
                        "monitor/distinct2 fell -0.140 [-0.200, -0.080] since iteration 1 (best by the guard; ...)"]}


def monitor(before, after, low, high):
    return {"before": before, "after": after, "after_se": 0.01, "change": after - before, "change_low": low,
            "change_high": high}


def test_monitor_columns_and_a_flagged_row_from_figures():
    methods = {
        "raft": run_figures("raft", 42, BEFORE, [v + 0.2 for v in BEFORE], {
            "monitor/kl_token": monitor(0.0, 0.0123, 0.010, 0.015),
            "monitor/loglik": monitor(-2.072, -1.578, 0.421, 0.566),
            "monitor/distinct2": monitor(0.77, 0.76, -0.03, 0.01)}),
        "iterative-dpo": run_figures("iterative-dpo", 42, BEFORE, [v + 0.4 for v in BEFORE], {
            "monitor/kl_token": monitor(0.0, 0.2051, 0.18, 0.23),
            "monitor/loglik": monitor(-2.072, -2.3, -0.3, -0.15),
            "monitor/distinct2": monitor(0.77, 0.63, -0.2, -0.08)}, TRIPPED),
        "orpo": run_figures("orpo", 42, BEFORE, [v + 0.1 for v in BEFORE]),  # a run that reported no monitors
    }
    text = table(methods, ["kl", "loglik", "distinct2", "length"])
    header, *rows = text.splitlines()
    assert [COLUMNS[m][0] in header for m in ("kl", "loglik", "distinct2", "length")] == [True, True, True, False]
    raft = next(r for r in rows if r.startswith("raft "))
    assert "0.0123" in raft and "+0.494↑" in raft and "-0.010 " in raft and "!" not in raft  # within noise: no arrow
    dpo = next(r for r in rows if r.startswith("iterative-dpo !"))
    assert "0.2051" in dpo and "-0.228↓" in dpo and "-0.140↓" in dpo
    orpo = next(r for r in rows if r.startswith("orpo "))
    assert re.split(r"\s{2,}", orpo)[4:7] == ["-", "-", "-"]  # cells: method, before, after, change, monitors
    legend = legend_lines(methods, ["kl", "loglik", "distinct2"])
    assert legend[0].startswith("monitors (docs/monitors.md): KL/token: KL to the starting policy")
    assert legend[1].startswith("! = the reward-hacking guard tripped")
    assert legend[2] == "  iterative-dpo: " + TRIPPED["messages"][0]
    # no run reported a monitor (as before the engine wrote them): the table is the one without monitors
    plain = {n: {**r, "monitors": {}, "guard": None} for n, r in methods.items()}
    assert table(plain, DEFAULT_MONITORS) == table(plain) and legend_lines(plain, DEFAULT_MONITORS) == []


def test_method_figures_read_the_monitors_and_verdicts_a_run_wrote(tmp_path):
    from trl_plugins.compare.budget import sampling_share
    from trl_plugins.compare.run import MethodPlan
    from trl_plugins.sampling.store import write_json

    out = tmp_path / "raft"
    base = {"heldout_reward_mean": 0.2, "heldout_reward_se": 0.05, "monitor/loglik": -2.0, "monitor/loglik_se": 0.03,
            "heldout_per_prompt": {"heldout_reward_mean": [0.1, 0.3], "monitor/loglik": [-2.0, -2.0]}}
    write_json(out / "heldout_baseline.json", base)
    summaries = []
    for k, (reward, loglik, tripped) in enumerate([(0.4, -2.1, False), (0.6, -2.5, True)], start=1):
        write_jsonl(out / f"iteration_{k}" / "generations.jsonl", [{"num_tokens": 5}, {"num_tokens": 7}])
        summaries.append({"iteration": k, "samples": 2, "heldout_reward_mean": reward, "heldout_reward_se": 0.05,
                          "monitor/loglik": loglik, "monitor/loglik_se": 0.02, "monitor/loglik_change_low": -0.6,
                          "monitor/loglik_change_high": -0.4, "heldout_per_prompt": {"heldout_reward_mean":
                                                                                    [reward, reward],
                                                                                    "monitor/loglik": [loglik, loglik]},
                          "reward_hacking": {"iteration": k, "tripped": tripped, "best_iteration": 1,
                                             "message": f"reward hacking? iteration {k}: ..." if tripped else ""}})
    write_jsonl(out / "sampling_summary.jsonl", summaries)
    plan = MethodPlan("raft", True, sampling_share("raft", 4, 2, 1), tmp_path / "raft.yaml", out, 2, seed=43)
    figures = method_figures(plan, [{"seconds": 3.0}])
    assert figures["seed"] == 43 and figures["generated_tokens"] == 24
    assert figures["monitors"] == {"monitor/loglik": {"before": -2.0, "after": -2.5, "after_se": 0.02,
                                                      "change": pytest.approx(-0.5), "change_low": -0.6,
                                                      "change_high": -0.4}}
    assert figures["guard"] == {"tripped": True, "iterations": [2], "messages": ["reward hacking? iteration 2: ..."],
                                "best_iteration": 1}


def test_figures_over_seeds_are_means_and_ses_of_the_runs_and_the_head_to_head_is_paired_by_seed(tmp_path):
    shifts = {"raft": [0.20, 0.30, 0.16], "rest-em": [0.22, 0.05, 0.10]}
    results = {name: [run_figures(name, 42 + i, BEFORE, [v + s + 0.01 * (j % 2) for j, v in enumerate(BEFORE)],
                                  {"monitor/distinct2": monitor(0.8, 0.8 - s, -s - 0.05, 0.02 if i == 1 else -0.01)},
                                  TRIPPED if (name, i) == ("rest-em", 1) else None)
                      for i, s in enumerate(shift)] for name, shift in shifts.items()}
    raft = over_seeds(results["raft"], seed=42)
    afters = [r["after"] for r in results["raft"]]
    assert raft["seeds"] == [42, 43, 44] and raft["after_by_seed"] == afters
    assert (raft["after"], raft["after_se"]) == pytest.approx(mean_se(afters))
    assert (raft["change"], raft["change_se"]) == pytest.approx(mean_se([r["change"] for r in results["raft"]]))
    assert raft["before_se"] == pytest.approx(0.0, abs=1e-12)  # the same base values in every seed
    pooled_after = [v + 0.22 + 0.01 * (j % 2) for j, v in enumerate(BEFORE)]  # per prompt, the mean over seeds
    assert pooled([r["after_per_prompt"] for r in results["raft"]]) == pytest.approx(pooled_after)
    assert raft["after_per_prompt"] == pytest.approx(pooled_after)
    assert (raft["change_low"], raft["change_high"]) == pytest.approx(paired_bootstrap(BEFORE, pooled_after, seed=42))
    assert raft["monitors"]["monitor/distinct2"]["change"] == pytest.approx(-0.22)
    assert raft["monitors"]["monitor/distinct2"]["change_low"] == pytest.approx(-0.35)  # the lowest low
    assert raft["monitors"]["monitor/distinct2"]["change_high"] == 0.02  # the hull of the seeds' intervals
    assert raft["generated_tokens_per_run"] == 143 and raft["wall_seconds"] == 30.0 and not raft["guard"]["tripped"]
    assert set(raft["runs"]) == {"42", "43", "44"}
    rest = over_seeds(results["rest-em"], seed=42)
    assert rest["guard"]["tripped"] and rest["guard"]["seeds"] == [43]
    assert rest["guard"]["messages"] == [f"seed 43: {TRIPPED['messages'][0]}"]

    head = against_best_over_seeds(results, seed=42)
    assert head["best"] == "raft" and head["seeds"] == [42, 43, 44]
    diffs = [o["after"] - b["after"] for o, b in zip(results["rest-em"], results["raft"])]
    d = head["others"]["rest-em"]
    assert d["by_seed"] == diffs and (d["difference"], d["se"]) == pytest.approx(mean_se(diffs))
    assert (d["low"], d["high"]) == pytest.approx(mean_interval(diffs)) and d["low"] < 0 < d["high"]
    (line,) = against_best_over_seeds_lines(head)[1:]
    assert line.split()[0] == "rest-em" and line.endswith("within seed noise of it")
    assert f"{d['difference']:+.3f} ±{d['se']:.3f} [{d['low']:+.3f}, {d['high']:+.3f}] over seeds" in line

    methods = {"raft": raft, "rest-em": rest}
    rows = seeds_table(methods, ["distinct2"]).splitlines()
    assert rows[0].split()[:2] == ["method", "seeds"]
    rest_row = next(r for r in rows if r.startswith("rest-em ! (1 of 3)"))
    assert f"{rest['after']:.3f} ±{rest['after_se']:.3f}" in rest_row and f"{rest['change']:+.3f}" in rest_row
    raft_row = next(r for r in rows if r.startswith("raft "))
    assert "-0.220↓" not in raft_row and "-0.220" in raft_row  # one seed's distinct-2 interval reaches above 0

    task = Task(path=tmp_path / "task.yaml", shared={"seed": 42}, dataset={"dataset_name": "d"}, metric=["m"],
                heldout={"prompts": 6, "num_generations": 1, "temperature": 0.0}, budget=16, monitors=["distinct2"])
    printed = write_report(task, [], results, tmp_path)
    saved = json.loads((tmp_path / "compare.json").read_text())
    assert saved["seeds"] == [42, 43, 44] and set(saved["methods"]["raft"]["runs"]) == {"42", "43", "44"}
    assert saved["methods"]["raft"]["runs"]["43"]["after"] == results["raft"][1]["after"]
    assert saved["against_best"]["others"]["rest-em"]["by_seed"] == pytest.approx(diffs)
    assert "3 training seeds per method (42, 43, 44)" in printed and "rest-em: seed 43: reward hacking?" in printed
    assert not math.isnan(saved["methods"]["rest-em"]["after_se"])


# -- a whole compare with two seeds, killed and resumed ---------------------------------------------------------------
@pytest.mark.slow
def test_killed_compare_with_two_seeds_resumes_the_unfinished_run_only(task_file, run_cli, tmp_path):  # noqa: F811
    path, out = task_file(), tmp_path / "compare"
    command = [sys.executable, "-m", "trl_plugins", "compare", "--config", path, "--methods", "orpo,raft",
               "--output_dir", str(out), "--seeds", "2"]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first_iteration = out / "raft-seed4" / "iteration_1" / "summary.json"
    deadline = time.time() + 600
    while not first_iteration.is_file() and process.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert first_iteration.is_file(), "raft with the second seed never finished its first iteration"
    finished = {run: (out / run / "compare_result.json").read_text() for run in ("orpo", "raft", "orpo-seed4")}
    assert not (out / "raft-seed4" / "compare_result.json").exists()
    recipes = {run: (out / "recipes" / f"{run}.yaml").read_text() for run in ("raft", "raft-seed4")}
    assert re.findall(r"^seed: .*$", recipes["raft-seed4"], re.M) == ["seed: 4"]
    assert re.findall(r"^seed: .*$", recipes["raft"], re.M) == ["seed: 3"]  # the task's seed: 3
    assert all(re.findall(r"^heldout_seed: .*$", r, re.M) == ["heldout_seed: 3"] for r in recipes.values())

    code, stdout, stderr = run_cli(*command[3:])
    assert code == 0, stderr
    for run in finished:
        assert (out / run / "compare_result.json").read_text() == finished[run]  # not run again
    assert "orpo (seed 4): finished earlier" in stdout and "raft (seed 4): resuming" in stdout
    assert "training seeds 3, 4" in stdout
    figures = json.loads((out / "compare.json").read_text())
    assert figures["seeds"] == [3, 4]
    for name in ("orpo", "raft"):
        runs = figures["methods"][name]["runs"]
        assert set(runs) == {"3", "4"} and [runs[s]["seed"] for s in ("3", "4")] == [3, 4]
        folder = {"3": name, "4": f"{name}-seed4"}
        for seed, run in runs.items():  # every run's figures are its own folder's result
            saved = json.loads((out / folder[seed] / "compare_result.json").read_text())
            assert run["after"] == saved["after"] and "job" not in run
        afters = [runs[s]["after"] for s in ("3", "4")]
        assert figures["methods"][name]["after"] == pytest.approx(sum(afters) / 2)
        row = next(line for line in stdout.splitlines() if line.startswith(name + " "))
        assert f"{figures['methods'][name]['after']:.3f} ±{figures['methods'][name]['after_se']:.3f}" in row
    for seed in ("3", "4"):  # within a seed every method's base is sampled alike: the pairs stay paired
        runs = {name: figures["methods"][name]["runs"][seed] for name in ("orpo", "raft")}
        assert runs["orpo"]["before_per_prompt"] == runs["raft"]["before_per_prompt"]
    assert Path(out / "compare.png").stat().st_size > 0
    assert "against the highest mean after" in stdout


def _workers(job_file: Path) -> list[int]:
    """Pids of the compare workers running ``job_file`` (Linux /proc)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"trl_plugins.compare.worker" in args and str(job_file).encode() in args:
            pids.append(int(cmdline.parent.name))
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads the workers from /proc")
def test_a_compare_stopped_by_sigterm_stops_its_worker(task_file, tmp_path):  # noqa: F811
    out = tmp_path / "compare"
    command = [sys.executable, "-m", "trl_plugins", "compare", "--config", task_file(), "--methods", "raft",
               "--output_dir", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    job_file, deadline = out / "raft" / "compare_job.json", time.time() + 300
    while not _workers(job_file) and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert _workers(job_file), "the compare never started its worker"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM
    assert _workers(job_file) == []  # the worker is gone with it: a resumed compare is the only writer
