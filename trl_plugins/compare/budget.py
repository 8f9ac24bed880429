"""The equal-budget rule of ``trl-plugins compare`` (docs/compare.md, "Budget"), pure arithmetic.

A sampling method (config with ``SamplingOptions``: SamplingConfig, iterative-dpo, iterative-orpo) spends the budget on generated samples:
``num_iterations x prompts_per_iteration x num_generations``; the compare sets ``prompts_per_iteration``. Any other
method spends it on training examples seen: ``max_steps x per_device_train_batch_size x gradient_accumulation_steps x
processes``; the compare sets ``max_steps``. Both are rounded down, so a method never gets more than the budget;
``used`` says what it gets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class Share:
    method: str
    sampling: bool
    setting: dict  # the recipe keys the compare sets: {"prompts_per_iteration": P} or {"max_steps": S}
    used: int  # generated samples (sampling) or training examples seen (others)
    detail: str  # how `used` is made up

    @property
    def unit(self) -> str:
        return "generated samples" if self.sampling else "training examples"

    def line(self, budget: int) -> str:
        rest = "" if self.used == budget else f" ({budget - self.used} of the budget unused: not a multiple)"
        return f"{self.method}: {self.used} {self.unit} = {self.detail}{rest}"


def _units(method: str, budget: int, factors: list[tuple[int, str]], one: str, unit: str) -> tuple[int, int]:
    """How many whole units of ``product(factors)`` the budget buys (``one`` names a unit in the error), and that
    product; a budget below one unit is refused in one line."""
    per_unit = math.prod(n for n, _ in factors)
    if budget < per_unit:
        parts = " x ".join(f"{n} {label}" for n, label in factors)
        raise ConfigError(f"{method}: budget {budget} is below {one} ({parts} = {per_unit} {unit}); raise --budget")
    return budget // per_unit, per_unit


def sampling_share(method: str, budget: int, iterations: int, generations: int) -> Share:
    prompts, per_prompt = _units(method, budget, [(iterations, "iterations"), (generations, "samples")],
                                 "one prompt per iteration", "generated samples")
    return Share(method, True, {"prompts_per_iteration": prompts}, prompts * per_prompt,
                 f"{iterations} iterations x {prompts} prompts x {generations} samples")


def training_share(method: str, budget: int, batch: int, accumulation: int, processes: int = 1) -> Share:
    factors = [(batch, "per device"), (accumulation, "accumulation"), (processes, "processes")]
    steps, per_step = _units(method, budget, factors, "one optimizer step", "examples")
    return Share(method, False, {"max_steps": steps}, steps * per_step,
                 f"{steps} steps x " + " x ".join(f"{n} {label}" for n, label in factors))
