"""ReST (Gulcehre et al. 2023): Grow N samples per prompt, then Improve steps on rising reward thresholds; ReST-EM
(Singh et al. 2023): keep correct samples (binary reward, capped per problem) and fine-tune the BASE model each
iteration — sampling trainers (``SFTTrainer``).

No official code exists; trlx's ReST is the reference for the percentile schedule. Docs: docs/methods/rest.md.

    trl-plugins train rest-em --config demo/rest_em
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..sampling.config import SamplingConfig
from ..sampling.records import mark_selected
from ..sampling.selection import binary_capped, threshold
from ..sampling.trainer import SamplingTrainer
from .common.papers import REST, REST_EM


@dataclass
class ReSTConfig(SamplingConfig):
    """Every :class:`SamplingConfig` field plus the Improve schedule (steps, rising thresholds, their mode)."""

    improve_steps: int = field(default=4, metadata={"help": "Improve steps (fine-tuning phases) per Grow step."})
    improve_thresholds: list[float] = field(
        default_factory=lambda: [0.7, 0.8, 0.9, 0.95],
        metadata={"help": "One strictly rising threshold per Improve step."},
    )
    threshold_mode: str = field(
        default="percentile", metadata={"help": "percentile (per-prompt quantile in [0, 1]) or absolute."}
    )
    num_generations: int = field(default=8, metadata={"help": "N: completions sampled per prompt in Grow."})

    def __post_init__(self):
        super().__post_init__()
        taus = list(self.improve_thresholds or [])
        if self.improve_steps < 1:
            raise ValueError(f"improve_steps must be >= 1, got {self.improve_steps}")
        if len(taus) != self.improve_steps:
            raise ValueError(f"improve_thresholds has {len(taus)} values for {self.improve_steps} improve_steps")
        if any(b <= a for a, b in zip(taus, taus[1:])):
            raise ValueError(f"improve_thresholds must be strictly rising, got {taus}")
        if self.threshold_mode not in ("percentile", "absolute"):
            raise ValueError(f"threshold_mode must be 'percentile' or 'absolute', got {self.threshold_mode!r}")
        if self.threshold_mode == "percentile" and not all(0 <= t <= 1 for t in taus):
            raise ValueError(f"percentile thresholds must be in [0, 1], got {taus}")


class ReSTTrainer(SamplingTrainer):
    """ReST: Grow (N samples per prompt), then Improve steps on rising thresholds over the same grown data."""

    _tag_names = ["trl", "sft", "trl-plugins", "rest"]
    _name = "ReST"
    _paper = REST

    def update_policy(self, k, samples):
        """One SFT phase per Improve step, each on the samples above its threshold (the summary's selection: the
        last step's)."""
        groups, usable = [s.row for s in samples], self.selectable(samples)
        kept, losses = [], []
        for step, tau in enumerate(self.args.improve_thresholds, 1):
            rows = [s.selection_row() for s in mark_selected(samples, threshold(groups, usable, tau,
                                                                               self.args.threshold_mode))]
            self.store.write_rows(k, f"selection_step{step}.jsonl", rows)
            out = self.sft_phase(rows, f"iteration_{k}_improve_{step}", seed=self.args.seed + 1000 * k + step)
            kept.append(len(rows))
            losses.append(out.training_loss if out else None)
        return {"kept_per_step": kept, "train_loss": losses[-1], "train_loss_per_step": losses}


@dataclass
class ReSTEMConfig(SamplingConfig):
    """Every :class:`SamplingConfig` field plus the correctness threshold, the per-problem cap and the restart rule."""

    max_per_prompt: int = field(default=10, metadata={"help": "Cap on correct samples kept per problem."})
    correct_threshold: float = field(default=1.0, metadata={"help": "Reward >= this counts as correct."})
    restart_from_base: bool = field(default=True, metadata={"help": "Fine-tune the base model every iteration."})
    reward_funcs: list[str] = field(
        default_factory=lambda: ["exact_match"],
        metadata={"help": "Binary rewards (default exact_match against the 'answer' column)."},
    )
    num_generations: int = field(default=8, metadata={"help": "N: completions sampled per problem."})

    def __post_init__(self):
        super().__post_init__()
        if self.max_per_prompt < 1:
            raise ValueError(f"max_per_prompt must be >= 1, got {self.max_per_prompt}")


class ReSTEMTrainer(SamplingTrainer):
    """ReST-EM: binary reward, keep correct samples (capped per problem), fine-tune from the base model."""

    _tag_names = ["trl", "sft", "trl-plugins", "rest-em"]
    _name = "ReST-EM"
    _paper = REST_EM

    @property
    def restart_from_base(self) -> bool:
        return self.args.restart_from_base

    def select(self, k, samples, rewards):
        return binary_capped([s.row for s in samples], rewards, self.args.max_per_prompt,
                             self.args.correct_threshold)

    def update_policy(self, k, samples):
        result = super().update_policy(k, samples)
        valid = [s.reward for s in samples if s.reward is not None]
        result["train_accuracy"] = sum(r >= self.args.correct_threshold for r in valid) / len(valid) if valid else None
        return result
