"""A method's figures over its training seeds (``trl-plugins compare --seeds N``) and the head-to-head over seeds:
plain arithmetic on the runs' figure dicts (``report.method_figures``), no files, no torch. The table: report.py.
Docs: docs/compare.md ("Seeds").

- after / change: mean ± SE over seeds (the spread a user sees when rerunning the method);
- [95%]: the paired bootstrap interval over prompts of the per-prompt change averaged over the seeds (the prompt noise
  of that average; it does not hold the seed spread, the ± SE over seeds does);
- head-to-head: per seed, a method's after minus the best method's after (both trained with that seed, scored on the
  same prompts), its mean ± SE and 95% t interval over seeds, and the interval over prompts of the averaged difference.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from ..evaluation.intervals import mean_interval, mean_se, paired_bootstrap


def _mean_se(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    valid = [v for v in values if v is not None]
    if not valid:
        return None, None
    mean, se = mean_se(valid)
    return mean, se


def pooled(per_run: Sequence[Sequence[float | None] | None]) -> list[float | None]:
    """Per prompt, the mean over runs of their per-prompt values (None where a run has none for it)."""
    if not per_run or any(v is None or len(v) != len(per_run[0]) for v in per_run):
        return []
    return [None if any(v is None for v in column) else math.fsum(column) / len(column) for column in zip(*per_run)]


def _interval(before: list[float | None], after: list[float | None], seed: int) -> tuple[float | None, float | None]:
    pairs = [(b, a) for b, a in zip(before, after) if b is not None and a is not None]
    if not pairs:
        return None, None
    return paired_bootstrap([b for b, _ in pairs], [a for _, a in pairs], seed=seed)


def _monitors(runs: list[dict]) -> dict:
    """Each monitor's after and change as means over seeds; its interval is the hull of the seeds' intervals, so it
    lies above (below) 0 only when every seed's does."""
    keys = [k for r in runs for k in (r.get("monitors") or {})]
    out = {}
    for key in dict.fromkeys(keys):
        figures = [(r.get("monitors") or {}).get(key) or {} for r in runs]
        lows, highs = [f.get("change_low") for f in figures], [f.get("change_high") for f in figures]
        out[key] = {"before": _mean_se([f.get("before") for f in figures])[0],
                    "after": _mean_se([f.get("after") for f in figures])[0],
                    "after_se": _mean_se([f.get("after") for f in figures])[1],
                    "change": _mean_se([f.get("change") for f in figures])[0],
                    "change_low": None if None in lows else min(lows),
                    "change_high": None if None in highs else max(highs),
                    "by_seed": {str(r["seed"]): f for r, f in zip(runs, figures)}}
    return out


def _guard(runs: list[dict]) -> dict:
    guards = [(r["seed"], r.get("guard") or {}) for r in runs]
    tripped = [(seed, g) for seed, g in guards if g.get("tripped")]
    return {"tripped": bool(tripped), "seeds": [seed for seed, _ in tripped],
            "messages": [f"seed {seed}: {g['messages'][0]}" for seed, g in tripped if g.get("messages")]}


def _curve(runs: list[dict]) -> list[dict]:
    """The mean curve over seeds (the same budget points in every run), with the SE over seeds as its error."""
    curve = []
    for points in zip(*(r["curve"] for r in runs)):
        mean, se = _mean_se([p["metric"] for p in points])
        curve.append({**{k: v for k, v in points[0].items() if k not in ("metric", "se")}, "metric": mean,
                      "se": se if len(points) > 1 else points[0].get("se")})
    return curve


def over_seeds(runs: list[dict], seed: int = 0) -> dict:
    """One method's figures over its runs (one per training seed, each ``report.method_figures``); ``seed`` seeds
    the bootstrap. Keeps every run's figures under ``runs`` (training seed -> figures)."""
    first = runs[0]
    before, after, change = ([r[k] for r in runs] for k in ("before", "after", "change"))
    before_pp = pooled([r.get("before_per_prompt") for r in runs])
    after_pp = pooled([r.get("after_per_prompt") for r in runs])
    low, high = _interval(before_pp, after_pp, seed)
    per_run = {k: statistics.fmean(r[k] for r in runs) for k in ("generated_samples", "generated_tokens",
                                                                   "trained_tokens", "optimizer_steps")}
    return {
        "method": first["method"], "sampling": first["sampling"], "budget_unit": first["budget_unit"],
        "budget_used": first["budget_used"], "budget_detail": first["budget_detail"],
        "budget_setting": first["budget_setting"], "seeds": [r["seed"] for r in runs],
        "before": _mean_se(before)[0], "before_se": _mean_se(before)[1], "before_by_seed": before,
        "after": _mean_se(after)[0], "after_se": _mean_se(after)[1], "after_by_seed": after,
        "change": _mean_se(change)[0], "change_se": _mean_se(change)[1], "change_by_seed": change,
        "change_low": low, "change_high": high, "before_per_prompt": before_pp, "after_per_prompt": after_pp,
        "monitors": _monitors(runs), "guard": _guard(runs), "curve": _curve(runs),
        "wall_seconds": sum(r["wall_seconds"] for r in runs), "attempts": sum(r["attempts"] for r in runs),
        **{f"{k}_per_run": v for k, v in per_run.items()},
        "runs": {str(r["seed"]): r for r in runs},
    }


def against_best_over_seeds(results: dict[str, list[dict]], seed: int = 0) -> dict | None:
    """The method with the highest mean after over seeds, and each other method's difference to it seed by seed
    (after − after of the best, both trained with the same seed, on the same prompts): mean ± SE and a 95% t interval
    over seeds, and the paired 95% bootstrap interval over prompts of the difference averaged over seeds. None with
    fewer than two methods scored in every seed."""
    scored = {n: runs for n, runs in results.items()
              if runs and all(r.get("after") is not None and r.get("after_per_prompt") for r in runs)}
    if len(scored) < 2:
        return None
    best = max(scored, key=lambda n: statistics.fmean(r["after"] for r in scored[n]))
    seeds = [r["seed"] for r in scored[best]]
    others = {}
    for name, runs in scored.items():
        if name == best or [r["seed"] for r in runs] != seeds:
            continue
        diffs = [r["after"] - b["after"] for r, b in zip(runs, scored[best])]
        mean, se = mean_se(diffs)
        low, high = mean_interval(diffs)
        best_pp, other_pp = pooled([b["after_per_prompt"] for b in scored[best]]), pooled([r["after_per_prompt"]
                                                                                          for r in runs])
        p_low, p_high = _interval(best_pp, other_pp, seed) if len(best_pp) == len(other_pp) else (None, None)
        others[name] = {"difference": mean, "se": se, "low": low, "high": high, "by_seed": diffs,
                        "prompts_low": p_low, "prompts_high": p_high, "prompts": len(best_pp)}
    return {"best": best, "seeds": seeds, "others": others}
