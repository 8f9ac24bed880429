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
