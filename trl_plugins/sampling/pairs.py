"""Pair rules of the iterative preference trainers as pure functions over a reward table (no torch, no model).

A table is two parallel lists as in ``selection.py``: ``groups[i]`` is the prompt of sample ``i``, ``rewards[i]`` its
reward, ``None`` when it may not be used (unscorable). ``choosable[i]`` (default: all true) says whether sample ``i``
may be the chosen side of a pair — the trainer passes false for samples cut off at ``max_new_tokens`` unless
``keep_unfinished`` (training towards them would teach stopping mid-sentence); they may still be rejected. Every rule
returns a :class:`PairSet`: ``(chosen, rejected)`` index pairs in increasing order (deterministic; ties of
reward are broken by the lower index), the prompts whose usable samples all tie (no pair, counted) and the prompts
with fewer than two usable samples. Docs: docs/methods/iterative_dpo.md.

- :func:`best_worst`: the best against the worst sample of each prompt (Xiong et al. 2024; Dong et al. 2024, RLHFlow);
  also rejection-sampling's preference export, which passes cut-off samples as unusable (neither side).
- :func:`all_pairs`: every two samples of a prompt whose rewards differ by at least ``min_reward_gap``.
- :func:`correct_incorrect`: correct (reward >= ``correct``) against incorrect samples (IRPO, Pang et al. 2024).
- :func:`judge_pairwise`: a judge's comparisons of two samples in both orders, kept where the orders agree (RLAIF).
- :func:`spin`: the row's reference completion against the policy's sample (SPIN, Chen et al. 2024).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

from .selection import by_group


@dataclass
class PairSet:
    """What a rule made of one iteration's table."""

    pairs: list[tuple[int, int]] = field(default_factory=list)  # (chosen, rejected) sample indices
    ties: int = 0  # prompts with >= 2 usable samples that make no pair (equal rewards, gap too small, all one class)
    too_few: int = 0  # prompts with fewer than 2 usable samples


def _check_gap(min_reward_gap: float) -> None:
    if min_reward_gap < 0:
        raise ValueError(f"min_reward_gap must be >= 0, got {min_reward_gap}")


def _split(groups, rewards):
    """Usable samples by prompt (in first-appearance order) and the count of prompts with fewer than two."""
    usable = by_group(groups, rewards)
    too_few = len(set(groups)) - sum(len(members) >= 2 for members in usable.values())
    return {g: m for g, m in usable.items() if len(m) >= 2}, too_few


def _choosable(choosable, rewards) -> Sequence[bool]:
    if choosable is None:
        return [True] * len(rewards)
    if len(choosable) != len(rewards):
        raise ValueError(f"choosable and rewards differ in length ({len(choosable)} vs {len(rewards)})")
    return choosable


def _separates(high: float, low: float, min_reward_gap: float) -> bool:
    return high > low and high - low >= min_reward_gap


def best_worst(groups: Sequence[Hashable], rewards: Sequence[float | None], min_reward_gap: float = 0.0,
               choosable: Sequence[bool] | None = None) -> PairSet:
    """One (best, worst) pair per prompt whose best choosable reward is above its worst by at least
    ``min_reward_gap`` (and strictly above it); the earlier sample wins a tie for best and for worst."""
    _check_gap(min_reward_gap)
    usable, too_few = _split(groups, rewards)
    ok = _choosable(choosable, rewards)
    out = PairSet(too_few=too_few)
    for members in usable.values():
        candidates = [i for i in members if ok[i]]
        best = min(candidates, key=lambda i: (-rewards[i], i)) if candidates else None
        worst = min(members, key=lambda i: (rewards[i], i))
        if best is not None and _separates(rewards[best], rewards[worst], min_reward_gap):
            out.pairs.append((best, worst))
        else:
            out.ties += 1
    out.pairs.sort()
    return out


def all_pairs(groups: Sequence[Hashable], rewards: Sequence[float | None], min_reward_gap: float = 0.0,
              choosable: Sequence[bool] | None = None) -> PairSet:
    """Every (higher, lower) pair of samples of the same prompt whose rewards differ by at least ``min_reward_gap``
    (and strictly) and whose higher one is choosable: up to K(K-1)/2 pairs per prompt."""
    _check_gap(min_reward_gap)
    usable, too_few = _split(groups, rewards)
    ok = _choosable(choosable, rewards)
    out = PairSet(too_few=too_few)
    for members in usable.values():
        made = [(a, b) for a in members for b in members
                if ok[a] and _separates(rewards[a], rewards[b], min_reward_gap)]
        out.pairs += made
        out.ties += not made
    out.pairs.sort()
    return out


def correct_incorrect(groups: Sequence[Hashable], rewards: Sequence[float | None], correct: float = 1.0,
                      pairs_per_prompt: int = 1, choosable: Sequence[bool] | None = None) -> PairSet:
    """IRPO's pairs: the i-th choosable correct sample (reward >= ``correct``) of a prompt against its i-th incorrect
    one, for i < ``pairs_per_prompt`` (no sample used twice); prompts with no choosable correct sample or no incorrect
    one tie."""
    if pairs_per_prompt < 1:
        raise ValueError(f"pairs_per_prompt must be >= 1, got {pairs_per_prompt}")
    usable, too_few = _split(groups, rewards)
    ok = _choosable(choosable, rewards)
    out = PairSet(too_few=too_few)
    for members in usable.values():
        right = [i for i in members if rewards[i] >= correct and ok[i]]
        wrong = [i for i in members if rewards[i] < correct]
        made = list(zip(right, wrong))[:pairs_per_prompt]
        out.pairs += made
        out.ties += not made
    out.pairs.sort()
    return out


# pair_rule name -> the rule, called with the table and every knob (each rule reads its own): a new rule is one entry
RULES = {
    "best_worst": lambda groups, rewards, knobs: best_worst(groups, rewards, knobs["min_reward_gap"],
                                                            knobs["choosable"]),
    "all_pairs": lambda groups, rewards, knobs: all_pairs(groups, rewards, knobs["min_reward_gap"], knobs["choosable"]),
    "correct_incorrect": lambda groups, rewards, knobs: correct_incorrect(groups, rewards, knobs["correct"],
                                                                          knobs["pairs_per_prompt"],
                                                                          knobs["choosable"]),
}


def make_pairs(rule: str, groups: Sequence[Hashable], rewards: Sequence[float | None], *, min_reward_gap: float = 0.0,
               correct: float = 1.0, pairs_per_prompt: int = 1, choosable: Sequence[bool] | None = None) -> PairSet:
    """The pairs of rule ``rule`` (a key of :data:`RULES`)."""
    if rule not in RULES:
        raise ValueError(f"pair_rule must be one of {', '.join(RULES)}, got {rule!r}")
    knobs = {"min_reward_gap": min_reward_gap, "correct": correct, "pairs_per_prompt": pairs_per_prompt,
             "choosable": choosable}
    return RULES[rule](groups, rewards, knobs)


# pair_rule names whose pairs need more than the reward table: the preference engine feeds them the judge's
# comparisons (judge_pairwise) or the rows' reference completions (spin); pair_rule's choices are RULES + these
ENGINE_RULES = ("judge_pairwise", "spin")


# -- pairs from a judge's comparisons and from the data's own completions (docs/methods/judges.md) -----------------
@dataclass
class JudgedPairs(PairSet):
    """:func:`judge_pairwise`'s pairs; ``disagreements``: comparisons whose two orders disagree (position bias)."""

    disagreements: int = 0


def comparison_candidates(groups: Sequence[Hashable], usable: Sequence[bool] | None = None) -> list[tuple[int, int]]:
    """Every two usable samples ``(i, j)``, ``i < j``, of the same prompt: what :func:`judge_pairwise` needs judged
    (K(K-1)/2 comparisons per prompt of K samples, each in both orders)."""
    ok = [True] * len(groups) if usable is None else usable
    members: dict[Hashable, list[int]] = {}
    for i, group in enumerate(groups):
        if ok[i]:
            members.setdefault(group, []).append(i)
    return [(a, b) for indices in members.values() for n, a in enumerate(indices) for b in indices[n + 1:]]


def judge_pairwise(groups: Sequence[Hashable], comparisons: dict[tuple[int, int], tuple[float, float]],
                   min_margin: float = 0.0, pairs_per_prompt: int = 1,
                   choosable: Sequence[bool] | None = None) -> JudgedPairs:
    """RLAIF's position-bias control (Lee et al. 2023): ``comparisons[(i, j)] = (forward, backward)``, the judge's
    preference for ``i`` with ``i`` shown first and for ``j`` with ``j`` shown first
    (``judge.pairwise_preferences``). A comparison makes a pair only when both orders agree (``forward > 0.5 >
    backward``: ``i`` wins; ``forward < 0.5 < backward``: ``j`` wins) and the order-averaged preference
    ``(forward + 1 - backward) / 2`` is at least ``min_margin`` away from 0.5; the winner must be choosable. Per
    prompt, the ``pairs_per_prompt`` strongest such pairs using no sample twice (ties: the lower indices). Prompts
    with fewer than two judged samples count as ``too_few``, the others without a pair as ``ties``."""
    if not 0 <= min_margin < 0.5:
        raise ValueError(f"min_margin must be in [0, 0.5), got {min_margin}")
    if pairs_per_prompt < 1:
        raise ValueError(f"pairs_per_prompt must be >= 1, got {pairs_per_prompt}")
    ok = _choosable(choosable, groups)
    by_prompt: dict[Hashable, list] = {group: [] for group in groups}
    out = JudgedPairs()
    for (i, j), (forward, backward) in sorted(comparisons.items()):
        if groups[i] != groups[j]:
            raise ValueError(f"samples {i} and {j} answer different prompts")
        if (forward > 0.5) == (backward > 0.5) or forward == 0.5 or backward == 0.5:
            out.disagreements += 1
            continue
        strength = (forward + 1 - backward) / 2  # preference for i, both orders averaged
        chosen, rejected = (i, j) if strength > 0.5 else (j, i)
        if abs(strength - 0.5) >= min_margin and ok[chosen]:
            by_prompt[groups[i]].append((-abs(strength - 0.5), min(i, j), max(i, j), chosen, rejected))
    judged = {group: set() for group in groups}
    for i, j in comparisons:
        judged[groups[i]] |= {i, j}
    for group, candidates in by_prompt.items():
        if len(judged[group]) < 2:
            out.too_few += 1
            continue
        used: set[int] = set()
        made = 0
        for *_, chosen, rejected in sorted(candidates):
            if made < pairs_per_prompt and not {chosen, rejected} & used:
                out.pairs.append((chosen, rejected))
                used |= {chosen, rejected}
                made += 1
        out.ties += not made
    out.pairs.sort()
    return out


@dataclass
class SpinPairs:
    """:func:`spin`'s pairs: ``(row, rejected sample index)``, the chosen side being the row's reference completion;
    ``matched``: prompts whose policy sample equals the reference (no pair: SPIN's fixed point), ``missing``: prompts
    without a usable sample."""

    pairs: list[tuple[int, int]] = field(default_factory=list)
    matched: int = 0
    missing: int = 0


def spin(rows: Sequence[int], usable: Sequence[bool] | None = None,
         same_as_reference: Sequence[bool] | None = None) -> SpinPairs:
    """SPIN's pairs (Chen et al. 2024): for each dataset row, chosen = its reference ``completion``, rejected = the
    policy's first usable sample of that row (``rows[i]`` is sample ``i``'s row; ``usable`` default all). A sample
    equal to the reference (``same_as_reference``) makes no pair: the policy already writes the data."""
    ok = [True] * len(rows) if usable is None else usable
    same = [False] * len(rows) if same_as_reference is None else same_as_reference
    if not len(ok) == len(same) == len(rows):
        raise ValueError("rows, usable and same_as_reference differ in length")
    first: dict[int, int] = {}
    for i, row in enumerate(rows):
        first.setdefault(row, -1)
        if ok[i] and first[row] == -1:
            first[row] = i
    out = SpinPairs()
    for row, i in first.items():
        if i == -1:
            out.missing += 1
        elif same[i]:
            out.matched += 1
        else:
            out.pairs.append((row, i))
    out.pairs.sort()
    return out


def spin_data_problem(column_names: Sequence[str], first_row: dict | None, where: str) -> str | None:
    """One line saying why a split cannot feed SPIN (it needs a ``prompt`` and a reference ``completion``, both text
    or both chat messages), or None: checked before any model loads."""
    missing = [c for c in ("prompt", "completion") if c not in column_names]
    if missing:
        return (f"{where}: pair_rule spin needs the columns prompt and completion (the reference answer); missing "
                f"{', '.join(missing)} (found: {', '.join(column_names)})")
    if first_row is not None and isinstance(first_row.get("prompt"), str) != isinstance(first_row.get("completion"),
                                                                                        str):
        return f"{where}: pair_rule spin needs prompt and completion of one kind (both text or both chat messages)"
    return None
