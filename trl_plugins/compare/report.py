"""What the compare reports: each run's figures read from its own files (the sampling engine's
``sampling_summary.jsonl`` and ``heldout_baseline.json``, or the worker's ``heldout_*.json`` for the others — read as
the engine's records, ``sampling/records.py`` — and ``compare_phases.jsonl``), with its monitors (``monitor/<name>``
columns) and the guard's verdicts (``reward_hacking``) where the run wrote them; the figures of a method over its
training seeds (``--seeds``); the table, the plot ``compare.png`` and ``compare.json`` (every figure of every run).
No torch. Docs: docs/compare.md ("The table").
"""

from __future__ import annotations

import json
from pathlib import Path

from ..evaluation.intervals import paired_bootstrap
from ..evaluation.monitors import MONITORS
from ..sampling.records import TOTAL as KEY  # the task metric's held-out mean, in every file read here
from ..sampling.records import VERDICT, HeldoutScores, IterationSummary
from ..sampling.store import read_jsonl, write_json
from .seeds import against_best_over_seeds, over_seeds

# a monitor's table column: heading, summary key, the figure shown (its value after training or its change since
# before) and what the legend says of it
COLUMNS = {"kl": ("KL/token", "monitor/kl_token", "after", "KL to the starting policy per token after training (k3)"),
           "loglik": ("loglik Δ", "monitor/loglik", "change", "the base model's log-likelihood per token (fluency)"),
           "distinct2": ("distinct-2 Δ", "monitor/distinct2", "change", "distinct-2 of each sample on its own (repetition)"),
           "length": ("length Δ", "monitor/length", "change", "mean completion length in tokens"),
           "relevance": ("relevance Δ", "monitor/relevance", "change",
                         "the base model's log-likelihood of a sample after its own prompt minus after another's")}


def _read(path: Path):
    return json.loads(path.read_text()) if path.suffix == ".json" else read_jsonl(path)


def monitor_figures(before: HeldoutScores, after: HeldoutScores) -> dict:
    """Each monitor column a run's files hold: before, after with its SE, the change and its paired 95% interval."""
    out = {}
    for key in (k for m in MONITORS.values() for k in m.keys):
        if after.means.get(key) is None:
            continue
        was, now = before.means.get(key), after.means[key]
        low, high = after.changes.get(key, (None, None))
        out[key] = {"before": was, "after": now, "after_se": after.se.get(key),
                    "change": None if was is None else now - was, "change_low": low, "change_high": high}
    return out


def guard_figures(verdicts: list[dict]) -> dict:
    """The guard's verdicts on a run: whether it tripped, on which iterations, their messages, the best iteration."""
    tripped = [v for v in verdicts if v and v.get("tripped")]
    return {"tripped": bool(tripped), "iterations": [v["iteration"] for v in tripped],
            "messages": [v["message"] for v in tripped],
            "best_iteration": verdicts[-1].get("best_iteration") if verdicts and verdicts[-1] else None}


def as_metric(scores: HeldoutScores, column: str) -> HeldoutScores:
    """``scores`` with the task metric read from ``column``: a method trained on a reward of its own (``trainer:``)
    holds the metric as the monitor column ``heldout/<name>`` (``MethodPlan.metric_column``)."""
    if column != KEY:
        for values in (scores.means, scores.se, scores.per_prompt, scores.changes):
            if column in values:
                values[KEY] = values[column]
    return scores


def method_figures(plan, attempts: list[dict]) -> dict:
    """Before/after held-out metric with SE, the change's paired 95% interval, the curve by budget spent, tokens;
    the monitors and the guard's verdicts where the run wrote them."""
    out = plan.output_dir
    column = plan.metric_column
    before = as_metric(HeldoutScores.from_json(_read(out / "heldout_baseline.json")), column)
    if plan.sampling:
        summaries = [IterationSummary.from_json(row) for row in _read(out / "sampling_summary.jsonl")]
        for summary in summaries:
            as_metric(summary.heldout, column)
        after = summaries[-1].heldout
        curve = [{"spent": s.iteration / plan.iterations, "iteration": s.iteration, "metric": s.heldout.means[KEY],
                  "se": s.heldout.se.get(KEY)} for s in summaries]
        generated_samples = sum(s.sampled["samples"] for s in summaries)
        generated_tokens = sum(g["num_tokens"] for s in summaries
                               for g in read_jsonl(out / f"iteration_{s.iteration}" / "generations.jsonl"))
    else:
        after = HeldoutScores.from_json(_read(out / "heldout_final.json"))
        curve = [{"spent": 1.0, "step": after.extra["global_step"], "metric": after.means[KEY],
                  "se": after.se.get(KEY)}]
        generated_samples, generated_tokens = 0, 0
    phases = _read(out / "compare_phases.jsonl") if (out / "compare_phases.jsonl").is_file() else []
    low, high = after.changes.get(KEY, (None, None))
    first, last = before.means[KEY], after.means[KEY]
    return {
        "method": plan.name, "sampling": plan.sampling, "budget_unit": plan.share.unit, "budget_used":
        plan.share.used, "budget_detail": plan.share.detail, "budget_setting": plan.share.setting,
        "before": first, "before_se": before.se.get(KEY), "after": last, "after_se": after.se.get(KEY),
        "change": None if None in (last, first) else last - first, "change_low": low, "change_high": high,
        "before_per_prompt": before.per_prompt[KEY],
        "after_per_prompt": after.per_prompt[KEY],
        "curve": [{"spent": 0.0, "metric": first, "se": before.se.get(KEY)}] + curve,
        "wall_seconds": sum(a["seconds"] for a in attempts), "attempts": len(attempts),
        "generated_samples": generated_samples, "generated_tokens": generated_tokens,
        "trained_tokens": sum(p["trained_tokens"] for p in phases), "optimizer_steps": sum(p["steps"] for p in phases),
        "seed": plan.seed, "monitors": monitor_figures(before, after),
        "guard": guard_figures([s.guard for s in summaries] if plan.sampling else [after.extra.get(VERDICT)]),
    }


def _num(value, fmt: str = ".3f") -> str:
    return "-" if value is None else format(value, fmt)


def _shown(results: dict[str, dict], monitors) -> list[str]:
    """The monitors with a column: those of the task that some run reported."""
    return [m for m in monitors if any(COLUMNS[m][1] in (r.get("monitors") or {}) for r in results.values())]


def monitor_cell(figures: dict | None, name: str) -> str:
    """A monitor's cell: KL per token after training, or the change since before; ↑ / ↓ when the change's paired 95%
    interval lies above / below 0 (for a run over several seeds: when every seed's does)."""
    if not figures:
        return "-"
    _, key, shown, _ = COLUMNS[name]
    value = figures.get(shown)
    if value is None:
        return "-"
    text = format(value, ".4f" if shown == "after" else ("+.1f" if name == "length" else "+.3f"))
    if figures.get("change_low") is not None and figures["change_low"] > 0:
        text += "↑"
    elif figures.get("change_high") is not None and figures["change_high"] < 0:
        text += "↓"
    return text


def _flag(name: str, r: dict) -> str:
    return f"{name} !" if (r.get("guard") or {}).get("tripped") else name


def _render(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header] + rows)


def table(results: dict[str, dict], monitors=()) -> str:
    shown = _shown(results, monitors)
    header = ["method", "before ±SE", "after ±SE", "change [95%]", *(COLUMNS[m][0] for m in shown), "wall s",
              "gen tokens", "trained tokens", "budget"]
    rows = []
    for name, r in results.items():
        interval = "" if r["change_low"] is None else f" [{r['change_low']:+.3f}, {r['change_high']:+.3f}]"
        change = "-" if r["change"] is None else f"{r['change']:+.3f}{interval}"
        cells = [monitor_cell((r.get("monitors") or {}).get(COLUMNS[m][1]), m) for m in shown]
        rows.append([_flag(name, r), f"{_num(r['before'])} ±{_num(r['before_se'])}",
                     f"{_num(r['after'])} ±{_num(r['after_se'])}", change, *cells, f"{r['wall_seconds']:.0f}",
                     f"{r['generated_tokens']:,}", f"{r['trained_tokens']:,}",
                     f"{r['budget_used']} {r['budget_unit']}"])
    return _render(header, rows)


def seeds_table(methods: dict[str, dict], monitors=()) -> str:
    """The table over training seeds (``seeds.over_seeds`` figures): means ± SE over seeds, the interval over prompts
    of the averaged change, monitors as means over seeds; tokens per run, wall time of all runs."""
    shown = _shown(methods, monitors)
    header = ["method", "seeds", "before ±SE", "after ±SE", "change ±SE", "[95%] prompts",
              *(COLUMNS[m][0] for m in shown), "wall s", "gen tokens/run", "trained tokens/run", "budget/run"]
    rows = []
    for name, r in methods.items():
        interval = "-" if r["change_low"] is None else f"[{r['change_low']:+.3f}, {r['change_high']:+.3f}]"
        change = "-" if r["change"] is None else f"{r['change']:+.3f} ±{_num(r['change_se'])}"
        flag = f"{name} !" + (f" ({len(r['guard']['seeds'])} of {len(r['seeds'])})" if r["guard"]["tripped"] else "")
        rows.append([flag if r["guard"]["tripped"] else name, str(len(r["seeds"])),
                     f"{_num(r['before'])} ±{_num(r['before_se'])}", f"{_num(r['after'])} ±{_num(r['after_se'])}",
                     change, interval, *(monitor_cell(r["monitors"].get(COLUMNS[m][1]), m) for m in shown),
                     f"{r['wall_seconds']:.0f}", f"{r['generated_tokens_per_run']:,.0f}",
                     f"{r['trained_tokens_per_run']:,.0f}", f"{r['budget_used']} {r['budget_unit']}"])
    return _render(header, rows)


def legend_lines(results: dict[str, dict], monitors=()) -> list[str]:
    """Under the table: what the monitor columns mean, and each flagged row's guard message."""
    lines = []
    if shown := _shown(results, monitors):
        lines.append("monitors (docs/monitors.md): " + ", ".join(
            f"{COLUMNS[m][0]}: {COLUMNS[m][3]}" for m in shown)
            + "; Δ = change since before; ↑ / ↓: beyond noise (paired 95% interval over prompts)")
    flagged = {name: r["guard"] for name, r in results.items() if (r.get("guard") or {}).get("tripped")}
    if flagged:
        lines.append("! = the reward-hacking guard tripped: the metric rose beyond noise while a monitor fell beyond "
                     "noise, or KL per token passed max_kl (docs/monitors.md)")
        for name, guard in flagged.items():
            more = len(guard["messages"]) - 1
            lines.append(f"  {name}: {guard['messages'][0]}" + (f" (and {more} later)" if more > 0 else ""))
    return lines


def against_best(results: dict[str, dict]) -> dict | None:
    """The method with the highest held-out 'after' and each other method's difference to it, after minus after on
    the same held-out prompts, with a paired 95% bootstrap interval over prompts (the per-method intervals of the table
    do not test one method against another). None with fewer than two scored methods."""
    scored = {n: r for n, r in results.items() if r.get("after") is not None and r.get("after_per_prompt")}
    if len(scored) < 2:
        return None
    best = max(scored, key=lambda n: scored[n]["after"])
    others = {}
    for name, r in scored.items():
        pairs = [(b, o) for b, o in zip(scored[best]["after_per_prompt"], r["after_per_prompt"])
                 if b is not None and o is not None]
        if name == best or not pairs or len(r["after_per_prompt"]) != len(scored[best]["after_per_prompt"]):
            continue
        low, high = paired_bootstrap([b for b, _ in pairs], [o for _, o in pairs])
        others[name] = {"difference": sum(o - b for b, o in pairs) / len(pairs), "low": low, "high": high,
                        "prompts": len(pairs)}
    return {"best": best, "others": others}


def against_best_lines(head_to_head: dict | None) -> list[str]:
    if not head_to_head or not head_to_head["others"]:
        return []
    best = head_to_head["best"]
    lines = [f"against the highest after ({best}): after - after of {best} on the same prompts, paired 95% interval"]
    for name, d in head_to_head["others"].items():
        verdict = "below it beyond noise" if d["high"] < 0 else "within noise of it"
        lines.append(f"  {name:<20}{d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]  {verdict}")
    return lines


def against_best_over_seeds_lines(head_to_head: dict | None) -> list[str]:
    if not head_to_head or not head_to_head["others"]:
        return []
    best, n = head_to_head["best"], len(head_to_head["seeds"])
    lines = [f"against the highest mean after ({best}): after - after of {best}, seed by seed on the same prompts; "
             f"mean ±SE and 95% t interval over {n} seeds, and the paired 95% interval over prompts of the difference "
             "averaged over seeds"]
    for name, d in head_to_head["others"].items():
        verdict = "below it beyond seed noise" if d["high"] < 0 else "within seed noise of it"
        prompts = ("" if d["prompts_low"] is None else
                   f"  [{d['prompts_low']:+.3f}, {d['prompts_high']:+.3f}] over prompts")
        lines.append(f"  {name:<20}{d['difference']:+.3f} ±{d['se']:.3f} [{d['low']:+.3f}, {d['high']:+.3f}] over "
                     f"seeds{prompts}  {verdict}")
    return lines


def plot(results: dict[str, dict], metric: str, path: Path) -> Path | None:
    """The held-out metric (± SE) by the fraction of its budget each method has spent; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for i, (name, r) in enumerate(results.items()):
        shift = (i - (len(results) - 1) / 2) * 0.01  # methods side by side, not on top of each other
        xs = [p["spent"] + shift for p in r["curve"]]
        ys = [p["metric"] if p["metric"] is not None else float("nan") for p in r["curve"]]
        errors = [p["se"] or 0.0 for p in r["curve"]]
        ax.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=name)
    ax.set_xlabel("budget spent (sampling: iterations done; others: before / after training)")
    ax.set_ylabel(f"held-out {metric} (± SE)")
    ax.legend(loc="best", fontsize=8)
    ax.set_title("held-out metric by budget spent")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(task, plans, results: dict[str, list[dict]], out: Path) -> str:
    """``compare.json`` and ``compare.png`` in ``out``; returns the table and where the files are. ``results``: each
    method's runs, one per training seed (with one seed, each method's figures are that run's)."""
    metric = ", ".join(task.metric)
    seeds = max(len(runs) for runs in results.values())
    if seeds == 1:
        methods = {n: runs[0] for n, runs in results.items()}
        head_to_head, head_lines = against_best(methods), against_best_lines
    else:
        methods = {n: over_seeds(runs, seed=task.seed) for n, runs in results.items()}
        head_to_head, head_lines = against_best_over_seeds(results, seed=task.seed), against_best_over_seeds_lines
    figures = {"task": str(task.path), "metric": task.metric, "budget": task.budget, "heldout": task.heldout,
               "dataset": task.dataset, "monitors": task.monitors,
               "seeds": [r["seed"] for r in next(iter(results.values()))],
               "methods": {n: _without_jobs(r) for n, r in methods.items()}, "against_best": head_to_head}
    write_json(out / "compare.json", figures)
    image = plot(methods, metric, out / "compare.png")
    heading = (f"held-out {metric} on {task.heldout['prompts']} prompts x {task.heldout['num_generations']} "
               f"(temperature {task.heldout['temperature']}); change = after - before with its paired 95% bootstrap "
               "interval over prompts")
    if seeds == 1:
        lines = [heading, table(methods, task.monitors)]
        bases = {round(r["before"], 6) for r in methods.values() if r["before"] is not None}
    else:
        lines = [heading + f"; {seeds} training seeds per method ({', '.join(map(str, figures['seeds']))}): after "
                 "and change are the mean ±SE over seeds, [95%] is over prompts of the change averaged over seeds",
                 seeds_table(methods, task.monitors)]
        bases = {round(b, 6) for r in methods.values() for b in r["before_by_seed"] if b is not None}
        bases = bases if len({tuple(r["before_by_seed"]) for r in methods.values()}) > 1 else set()
    lines += [*legend_lines(methods, task.monitors), *head_lines(head_to_head)]
    if len(bases) > 1:
        lines.append("note: the 'before' values differ between methods (the same base sampled with the same seed "
                     "should agree; see docs/compare.md)")
    lines.append(f"figures: {out / 'compare.json'}" + (f"; plot: {image}" if image else "; no plot (no matplotlib)"))
    return "\n".join(lines)


def _without_jobs(figures: dict) -> dict:
    out = {k: v for k, v in figures.items() if k != "job"}
    if "runs" in out:
        out["runs"] = {seed: _without_jobs(r) for seed, r in out["runs"].items()}
    return out
