"""The noise of a held-out number: standard error of a mean and a paired bootstrap interval of a before/after
change, and a t interval of a mean over a few runs (no numpy, no torch). Used by the demos, the sampling trainers'
held-out summaries, the guard and the compare."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """``(mean, standard error of the mean)``; the SE is 0 for fewer than two values. For 0/1 outcomes this is
    ``sqrt(p(1-p)/(n-1))``, e.g. about 0.035 for p = 0.5 on 200 pairs."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance / n)


def paired_bootstrap(before: Sequence[float], after: Sequence[float], level: float = 0.95, rounds: int = 2000,
                     seed: int = 0) -> tuple[float, float]:
    """A ``level`` percentile-bootstrap interval of ``mean(after - before)`` over the same items (resampled with
    replacement ``rounds`` times, seeded)."""
    if len(before) != len(after):
        raise ValueError(f"paired values differ in length ({len(before)} vs {len(after)})")
    diffs = [a - b for a, b in zip(after, before)]
    n = len(diffs)
    if n == 0:
        return math.nan, math.nan
    rng = random.Random(seed)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(rounds))
    tail = (1 - level) / 2
    return means[int(tail * (rounds - 1))], means[int(math.ceil((1 - tail) * (rounds - 1)))]


def change_line(label: str, before: Sequence[float], after: Sequence[float], width: int = 50) -> str:
    """``label  before ± se  after ± se  change [low, high]`` for the demos' tables."""
    b, b_se = mean_se(before)
    a, a_se = mean_se(after)
    low, high = paired_bootstrap(before, after)
    return (f"{label:<{width}}{b:>7.3f} ±{b_se:.3f}{a:>9.3f} ±{a_se:.3f}{a - b:>+9.3f} [{low:+.3f}, {high:+.3f}]")


# two-sided 95% Student t quantiles (t_{0.975, df}) for df = 1 .. 30; beyond that the normal's 1.96 plus a 1/df term
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_quantile_975(df: int) -> float:
    """``t_{0.975}`` with ``df`` degrees of freedom (the 95% two-sided quantile)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return _T975[df - 1] if df <= len(_T975) else 1.96 + 2.4 / df


def mean_interval(values: Sequence[float]) -> tuple[float, float]:
    """A 95% Student t interval of the mean of a few independent values (e.g. one figure per training seed):
    ``mean ± t_{0.975, n-1} x SE``; NaN for fewer than two values. With 2 values t is 12.7: honest, and wide."""
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    mean, se = mean_se(values)
    half = t_quantile_975(n - 1) * se
    return mean - half, mean + half
