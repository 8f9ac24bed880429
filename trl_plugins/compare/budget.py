"""The equal-budget rule of ``trl-plugins compare`` (docs/compare.md, "Budget"), pure arithmetic.

A sampling method (config with ``SamplingOptions``: SamplingConfig, iterative-dpo, iterative-orpo) spends the budget on generated samples:
``num_iterations x prompts_per_iteration x num_generations``; the compare sets ``prompts_per_iteration``. Any other
method spends it on training examples seen: ``max_steps x per_device_train_batch_size x gradient_accumulation_steps x
processes``; the compare sets ``max_steps``. Both are rounded down, so a method never gets more than the budget;
``used`` says what it gets.
"""

from __future__ import annotations

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


def sampling_share(method: str, budget: int, iterations: int, generations: int) -> Share:
    per_prompt = iterations * generations
    prompts = budget // per_prompt
    if prompts < 1:
        raise ConfigError(f"{method}: budget {budget} is below one prompt per iteration ({iterations} iterations x "
                          f"{generations} samples = {per_prompt} generated samples); raise --budget")
    return Share(method, True, {"prompts_per_iteration": prompts}, prompts * per_prompt,
                 f"{iterations} iterations x {prompts} prompts x {generations} samples")


def training_share(method: str, budget: int, batch: int, accumulation: int, processes: int = 1) -> Share:
    per_step = batch * accumulation * processes
    steps = budget // per_step
    if steps < 1:
        raise ConfigError(f"{method}: budget {budget} is below one optimizer step ({batch} per device x "
                          f"{accumulation} accumulation x {processes} processes = {per_step} examples); raise --budget")
    return Share(method, False, {"max_steps": steps}, steps * per_step,
                 f"{steps} steps x {batch} per device x {accumulation} accumulation x {processes} processes")
