"""What the compare reports: each method's figures read from its own run's files (the sampling engine's
``sampling_summary.jsonl`` and ``heldout_baseline.json``, or the worker's ``heldout_*.json`` for the others — read as
the engine's records, ``sampling/records.py`` — and ``compare_phases.jsonl``), the table, the plot ``compare.png`` and
``compare.json`` (every figure). No torch. Docs: docs/compare.md ("Outputs").
"""

from __future__ import annotations

import json
from pathlib import Path

from ..evaluation.intervals import paired_bootstrap
from ..sampling.records import TOTAL as KEY  # the task metric's held-out mean, in every file read here
from ..sampling.records import HeldoutScores, IterationSummary
from ..sampling.store import read_jsonl, write_json


def _read(path: Path):
    return json.loads(path.read_text()) if path.suffix == ".json" else read_jsonl(path)


def as_metric(scores: HeldoutScores, column: str) -> HeldoutScores:
    """``scores`` with the task metric read from ``column``: a method trained on a reward of its own (``trainer:``)
    holds the metric as the monitor column ``heldout/<name>`` (``MethodPlan.metric_column``)."""
    if column != KEY:
        for values in (scores.means, scores.se, scores.per_prompt, scores.changes):
            if column in values:
                values[KEY] = values[column]
    return scores


def method_figures(plan, attempts: list[dict]) -> dict:
    """Before/after held-out metric with SE, the change's paired 95% interval, the curve by budget spent, tokens."""
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
    }


def _num(value, fmt: str = ".3f") -> str:
    return "-" if value is None else format(value, fmt)


def table(results: dict[str, dict]) -> str:
    header = ["method", "before ±SE", "after ±SE", "change [95%]", "wall s", "gen tokens", "trained tokens",
              "budget"]
    rows = []
    for name, r in results.items():
        interval = "" if r["change_low"] is None else f" [{r['change_low']:+.3f}, {r['change_high']:+.3f}]"
        change = "-" if r["change"] is None else f"{r['change']:+.3f}{interval}"
        rows.append([name, f"{_num(r['before'])} ±{_num(r['before_se'])}",
                     f"{_num(r['after'])} ±{_num(r['after_se'])}", change, f"{r['wall_seconds']:.0f}",
                     f"{r['generated_tokens']:,}", f"{r['trained_tokens']:,}",
                     f"{r['budget_used']} {r['budget_unit']}"])
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header] + rows)


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


def write_report(task, plans, results: dict[str, dict], out: Path) -> str:
    """``compare.json`` and ``compare.png`` in ``out``; returns the table and where the files are."""
    metric = ", ".join(task.metric)
    figures = {"task": str(task.path), "metric": task.metric, "budget": task.budget, "heldout": task.heldout,
               "dataset": task.dataset, "methods": {n: {k: v for k, v in r.items() if k != "job"}
                                                    for n, r in results.items()},
               "against_best": against_best(results)}
    write_json(out / "compare.json", figures)
    image = plot(results, metric, out / "compare.png")
    bases = {round(r["before"], 6) for r in results.values() if r["before"] is not None}
    heading = (f"held-out {metric} on {task.heldout['prompts']} prompts x {task.heldout['num_generations']} "
               f"(temperature {task.heldout['temperature']}); change = after - before with its paired 95% bootstrap "
               "interval over prompts")
    lines = [heading, table(results), *against_best_lines(figures["against_best"])]
    if len(bases) > 1:
        lines.append("note: the 'before' values differ between methods (the same base sampled with the same seed "
                     "should agree; see docs/compare.md)")
    lines.append(f"figures: {out / 'compare.json'}" + (f"; plot: {image}" if image else "; no plot (no matplotlib)"))
    return "\n".join(lines)
