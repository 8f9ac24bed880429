"""Selection rules as pure functions over a reward table (no torch, no model).

A table is two parallel lists: ``groups[i]`` is the prompt of sample ``i`` and ``rewards[i]`` its reward, ``None``
when no reward could be computed (such samples are never selected). Every function returns the selected sample
indices in increasing order, so results are deterministic; ties are broken by the lower index (the earlier sample).

- :func:`best_of_n`: the best sample of each prompt (rejection sampling, RAFT ``local``).
- :func:`top_alpha`: the global top ``alpha`` fraction of all samples (RAFT ``top``).
- :func:`threshold`: reward >= tau, absolute or as a per-prompt percentile (ReST Improve steps).
- :func:`binary_capped`: correct samples only (reward >= ``correct``), at most ``cap`` per prompt (ReST-EM).

Pairs of samples (iterative-dpo, rejection-sampling's preference export) are ``pairs.py``'s rules.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence


def _valid(rewards: Sequence[float | None]) -> list[int]:
    return [i for i, r in enumerate(rewards) if r is not None and not (isinstance(r, float) and math.isnan(r))]


def by_group(groups: Sequence[Hashable], rewards: Sequence[float | None]) -> dict[Hashable, list[int]]:
    """The samples with a reward, by prompt (in first-appearance order)."""
    if len(groups) != len(rewards):
        raise ValueError(f"groups and rewards differ in length ({len(groups)} vs {len(rewards)})")
    out: dict[Hashable, list[int]] = {}
    for i in _valid(rewards):
        out.setdefault(groups[i], []).append(i)
    return out


def best_of_n(groups: Sequence[Hashable], rewards: Sequence[float | None], n: int = 1) -> list[int]:
    """The ``n`` highest-reward samples of each prompt (ties: the earlier sample wins)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    keep = []
    for members in by_group(groups, rewards).values():
        keep += sorted(members, key=lambda i: (-rewards[i], i))[:n]
    return sorted(keep)


def top_alpha(rewards: Sequence[float | None], alpha: float) -> list[int]:
    """The top ``ceil(alpha * valid)`` samples over all prompts (at least one when any is valid)."""
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    valid = _valid(rewards)
    if not valid:
        return []
    count = max(1, math.ceil(alpha * len(valid) - 1e-9))
    return sorted(sorted(valid, key=lambda i: (-rewards[i], i))[:count])


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) with linear interpolation, as ``numpy.percentile(values, 100 * q)``."""
    if not values:
        raise ValueError("percentile of an empty list")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def threshold(
    groups: Sequence[Hashable], rewards: Sequence[float | None], tau: float, mode: str = "absolute"
) -> list[int]:
    """Samples with reward >= ``tau`` (``absolute``), or >= the ``tau``-quantile of their prompt's rewards
    (``percentile``, tau in [0, 1], as trlx's ReST). With all rewards of a prompt equal, percentile keeps them all."""
    if mode == "absolute":
        return [i for i in _valid(rewards) if rewards[i] >= tau]
    if mode != "percentile":
        raise ValueError(f"mode must be 'absolute' or 'percentile', got {mode!r}")
    if not 0 <= tau <= 1:
        raise ValueError(f"a percentile threshold must be in [0, 1], got {tau}")
    keep = []
    for members in by_group(groups, rewards).values():
        cut = percentile([rewards[i] for i in members], tau)
        keep += [i for i in members if rewards[i] >= cut - 1e-12]
    return sorted(keep)


def binary_capped(
    groups: Sequence[Hashable], rewards: Sequence[float | None], cap: int | None, correct: float = 1.0
) -> list[int]:
    """Samples counted correct (reward >= ``correct``), the first ``cap`` of each prompt (``None``: no cap)."""
    if cap is not None and cap < 1:
        raise ValueError(f"cap must be >= 1, got {cap}")
    keep = []
    for members in by_group(groups, rewards).values():
        right = [i for i in members if rewards[i] >= correct]
        keep += right if cap is None else right[:cap]
    return sorted(keep)
