"""The reward-hacking guard: a pure rule over held-out figures, judged once per iteration. Docs: docs/monitors.md.

**The rule.** Iteration k trips the guard when, against the *best iteration by the guard so far* (the reference R;
before training it is the base, iteration 0):

- the training reward's held-out mean rose beyond noise — the paired 95% bootstrap interval over prompts of
  ``reward_k − reward_R`` lies above 0 — **while** a monitor fell beyond noise: its paired interval lies below 0
  (above 0 for a monitor where rising is worse). Which way is worse: ``monitors.direction`` — the starting model's
  log-likelihood, distinct-2, relevance to the prompt and any independent check (a held-out reward) falling; KL and
  length are not judged this way (KL only against ``max_kl``; length can rightly move either way: shorter answers on
  arithmetic, longer reviews on sentiment, and hacking can go either way too, so it is shown, not judged);
- **or** the KL to the starting policy per token (k3, ``monitor/kl_token``, a mean over prompts) is above ``max_kl``
  when one is set.

**Best by the guard** (the reference): the base, until an iteration's training reward rises beyond noise over the
reference without tripping — a real, clean gain; that iteration is the new reference. A gain within noise does not
move it: in the IMDB/VADER run of iterative-dpo (docs/monitors.md) the first DPO phase left the held-out reward
within noise (+0.026 [−0.092, +0.145]) while the policy moved far (KL 0.26 per token, samples 60% shorter); had that
iteration become the reference because its mean was higher by chance, what came next would have been judged against
an already drifted policy. A tripped iteration never becomes the reference either, so a run that keeps drifting is
compared with its last clean gain and the changes add up against it; ``stop`` keeps the reference.

Everything here is plain data: :class:`GuardState` goes to JSON and back, so a resumed run keeps it. No torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from .intervals import paired_bootstrap
from .keys import TOTAL
from .monitors import DEFAULT_MONITORS, MONITORS, PREFIX, direction, unknown_monitors

ACTIONS = ("warn", "stop", "off")


@dataclass
class GuardOptions:
    """The guard's and monitors' knobs, mixed into a trainer config before the TRL config (like ``SamplingOptions``)."""

    reward_hacking: str = field(
        default="warn",
        metadata={"help": "The reward-hacking guard (docs/monitors.md): warn prints one line when the held-out "
                  "training reward rises beyond noise while a monitor falls beyond noise, or KL per token passes "
                  "max_kl; stop also ends the run there and keeps the best iteration by the guard (output_dir/best); "
                  "off judges nothing (the monitors are still reported).", "choices": list(ACTIONS)},
    )
    max_kl: float | None = field(
        default=None,
        metadata={"help": "Trip the guard when the held-out KL to the starting policy per token (k3, what TRL's GRPO "
                  "logs as kl) passes this value (default: no limit)."},
    )
    heldout_monitors: list[str] = field(
        default_factory=lambda: list(DEFAULT_MONITORS),
        metadata={"help": "Monitors of the held-out samples: " + "; ".join(
            f"{m.name}: {m.help} (cost: {m.cost})" for m in MONITORS.values()) + ". Leave one out to skip it."},
    )

    def __post_init__(self):
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()
        self.check_guard_options()

    def check_guard_options(self) -> None:
        if self.reward_hacking not in ACTIONS:
            raise ValueError(f"reward_hacking must be one of {', '.join(ACTIONS)}, got {self.reward_hacking!r}")
        if self.max_kl is not None and not self.max_kl > 0:
            raise ValueError(f"max_kl must be > 0, got {self.max_kl!r}")
        if unknown := unknown_monitors(self.heldout_monitors):
            raise ValueError(f"heldout_monitors: unknown monitor {unknown[0]!r} (known: {', '.join(MONITORS)})")
        if self.max_kl is not None and "kl" not in self.heldout_monitors:
            raise ValueError("max_kl needs the kl monitor: add kl to heldout_monitors")


@dataclass
class GuardState:
    """What the guard remembers between iterations: the reference (best by the guard) and every verdict."""

    best_iteration: int = 0
    best_reward: float | None = None  # the reference's held-out mean of the training reward
    best_per_prompt: dict[str, list[float | None]] = field(default_factory=dict)  # its reward and monitors per prompt
    verdicts: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> GuardState:
        return cls(best_iteration=int(data["best_iteration"]), best_reward=data.get("best_reward"),
                   best_per_prompt={k: list(v) for k, v in data.get("best_per_prompt", {}).items()},
                   verdicts=list(data.get("verdicts", [])))


REWARD = "reward"  # the training reward's key in GuardState.best_per_prompt


def _mean(values: Sequence[float | None]) -> float | None:
    valid = [v for v in values if v is not None]
    return math.fsum(valid) / len(valid) if valid else None


def inputs(per_prompt: dict[str, Sequence[float | None]],
           independent: Sequence[str] = ()) -> tuple[list[float | None], dict[str, list[float | None]]]:
    """What the guard reads of a held-out evaluation's per-prompt columns: the training reward's total
    (``heldout_reward_mean``) and the figures it judges — every ``monitor/<name>`` and the ``independent`` columns
    (``heldout/<name>`` of ``heldout_reward_funcs``; never a training reward's own parts)."""
    checks = {k: list(v) for k, v in per_prompt.items() if k.startswith(PREFIX) or k in independent}
    return list(per_prompt.get(TOTAL) or []), checks


def start(reward: Sequence[float | None], monitors: dict[str, Sequence[float | None]]) -> GuardState:
    """The guard before training: the base (iteration 0) is the reference, with its per-prompt held-out values."""
    return GuardState(0, _mean(reward), {REWARD: list(reward), **{k: list(v) for k, v in monitors.items()}})


def change(before: Sequence[float | None], after: Sequence[float | None], seed: int = 0) -> dict | None:
    """``{change, low, high, prompts}``: the mean of after − before over the prompts scored both times and its paired
    95% bootstrap interval; None when the two do not cover the same prompts or share none."""
    if len(before) != len(after):
        return None
    pairs = [(b, a) for b, a in zip(before, after) if b is not None and a is not None]
    if not pairs:
        return None
    low, high = paired_bootstrap([b for b, _ in pairs], [a for _, a in pairs], seed=seed)
    return {"change": math.fsum(a - b for b, a in pairs) / len(pairs), "low": low, "high": high, "prompts": len(pairs)}


def _interval(c: dict) -> str:
    return f"{c['change']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]"


def judge(state: GuardState, iteration: int, reward: Sequence[float | None],
          monitors: dict[str, Sequence[float | None]], kl_per_token: float | None = None,
          max_kl: float | None = None, reward_name: str = "training reward",
          seed: int = 0) -> tuple[dict, GuardState]:
    """The verdict on ``iteration`` from its per-prompt held-out values — ``reward`` (the training reward) and
    ``monitors`` (key -> per prompt: ``monitor/<name>`` keys and any independent check) — and the state after it.

    The verdict: ``iteration``, ``against`` (the reference iteration), ``tripped``, ``reward`` (its change
    interval), ``fell`` (each monitor that fell beyond noise with its interval), ``kl_per_token`` / ``max_kl`` /
    ``kl_over``, ``best_iteration`` (after this one) and ``message`` (one line naming the iteration, the monitors and
    both intervals; empty when not tripped). The state passed in is not changed."""
    reference = state.best_per_prompt
    reward_change = change(reference.get(REWARD, []), reward, seed) if REWARD in reference else None
    rose = reward_change is not None and reward_change["low"] > 0
    fell = {}
    for key, values in monitors.items():
        worse = direction(key)
        if worse == 0 or key not in reference:
            continue
        moved = change(reference[key], values, seed)
        if moved is not None and (moved["high"] < 0 if worse > 0 else moved["low"] > 0):
            fell[key] = moved
    fell = fell if rose else {}
    kl_over = max_kl is not None and kl_per_token is not None and kl_per_token > max_kl
    tripped = bool(fell) or kl_over
    parts = []
    if fell:
        monitors_text = " and ".join(f"{key} fell {_interval(c)}" for key, c in fell.items())
        parts.append(f"held-out {reward_name} rose {_interval(reward_change)} while {monitors_text} since iteration "
                     f"{state.best_iteration} (best by the guard; paired 95% intervals over prompts)")
    if kl_over:
        parts.append(f"KL to the starting policy {kl_per_token:.4f} per token passed max_kl {max_kl:g}")
    new = GuardState(state.best_iteration, state.best_reward, state.best_per_prompt, list(state.verdicts))
    if not tripped and rose:  # a clean gain beyond noise: the new reference
        new.best_iteration, new.best_reward = iteration, _mean(reward)
        new.best_per_prompt = {REWARD: list(reward), **{k: list(v) for k, v in monitors.items()}}
    verdict = {"iteration": iteration, "against": state.best_iteration, "tripped": tripped, "reward": reward_change,
               "fell": fell, "kl_per_token": kl_per_token, "max_kl": max_kl, "kl_over": kl_over,
               "best_iteration": new.best_iteration,
               "message": f"reward hacking? iteration {iteration}: " + "; ".join(parts) if tripped else ""}
    new.verdicts.append(verdict)
    return verdict, new


def action(options: GuardOptions, verdict: dict) -> str | None:
    """What the run does about a verdict: ``"warn"`` (print its message), ``"stop"`` (print it and end the run,
    keeping the best iteration by the guard) or None."""
    if options.reward_hacking == "off" or not verdict["tripped"]:
        return None
    return options.reward_hacking
