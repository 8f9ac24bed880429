"""ReST — Reinforced Self-Training (Gulcehre et al. 2023, arXiv:2308.08998) and ReST-EM (Singh et al. 2023,
arXiv:2312.06585).

ReST (``rest``), per iteration ("Grow" + I "Improve" steps):

- Grow: sample N completions per prompt from the current policy (``num_generations``) and score them.
- Improve step i = 1..I (``improve_steps``): keep the samples with reward >= tau_i, tau rising
  (``improve_thresholds``; ``threshold_mode: percentile`` computes tau_i as the per-prompt quantile, as trlx's
  ReST; ``absolute`` compares the reward itself), fine-tune the policy on them with the BC/NLL loss (the paper's
  best), and go on to the next, higher threshold on the same grown data. Then Grow again.

ReST-EM (``rest-em``), per iteration:

- E-step: sample N completions per problem, score them with a binary reward (``exact_match``: 1 if the final answer
  is right), keep the correct ones (reward >= ``correct_threshold``), at most ``max_per_prompt`` per problem.
- M-step: fine-tune the BASE model (not the last policy) on them; the new model samples the next iteration.

How they depart from the papers: no official code exists; trlx's ``accelerate_rft_trainer.py`` is the reference
for ReST's percentile schedule (0.7 -> 0.95 over 4 steps, 32 samples per prompt). Fine-tuning is TRL's SFTTrainer loop
(completion-only NLL, PEFT/QLoRA, accelerate). With LoRA, "from the base model" resets the adapter to its initial
weights; with full fine-tuning the base weights are kept in CPU memory to reset to. Iteration files and resume as
every sampling trainer (``output_dir/iteration_K/``).

Run them::

    trl-plugins train rest-em --config recipes/demo/rest_em.yaml          # CPU: single-digit addition, exact match
    trl-plugins train rest --config recipes/demo/rest.yaml                # CPU: IMDB openings, VADER
    accelerate launch --config_file recipes/accelerate_configs/single_gpu.yaml -m trl_plugins \\
        train rest-em --config recipes/qwen2.5-1.5b-instruct/rest_em/config_qlora.yaml
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

from ..sampling.selection import binary_capped, threshold
from ..sampling.store import write_jsonl
from ..sampling.trainer import SamplingConfig, SamplingTrainer

_REST_PAPER = {
    "title": "Reinforced Self-Training (ReST) for Language Modeling",
    "id": "2308.08998",
    "citation": textwrap.dedent("""\
        @article{gulcehre2023rest,
            title        = {{Reinforced Self-Training (ReST) for Language Modeling}},
            author       = {Caglar Gulcehre and Tom Le Paine and Srivatsan Srinivasan and others},
            year         = 2023,
            eprint       = {arXiv:2308.08998}
        }"""),
}
_RESTEM_PAPER = {
    "title": "Beyond Human Data: Scaling Self-Training for Problem-Solving with Language Models",
    "id": "2312.06585",
    "citation": textwrap.dedent("""\
        @article{singh2023beyond,
            title        = {{Beyond Human Data: Scaling Self-Training for Problem-Solving with Language Models}},
            author       = {Avi Singh and John D. Co-Reyes and Rishabh Agarwal and others},
            year         = 2023,
            eprint       = {arXiv:2312.06585}
        }"""),
}


@dataclass
class ReSTConfig(SamplingConfig):
    r"""Configuration for :class:`ReSTTrainer`: every :class:`SamplingConfig` / :class:`trl.SFTConfig` field, plus:

    Parameters:
        improve_steps (`int`, defaults to `4`): Improve steps (fine-tuning phases) per Grow step.
        improve_thresholds (`list[float]`, defaults to `[0.7, 0.8, 0.9, 0.95]`): one threshold per Improve step,
            strictly rising.
        threshold_mode (`str`, defaults to `"percentile"`): `percentile` (per-prompt quantile, thresholds in [0, 1])
            or `absolute` (reward >= threshold).
    """

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
    _paper = _REST_PAPER

    def run_iteration(self, k, samples, rewards):
        groups = [s["row"] for s in samples]
        kept, losses, chosen = [], [], []
        for step, tau in enumerate(self.args.improve_thresholds, 1):
            chosen = threshold(groups, rewards, tau, self.args.threshold_mode)
            selected = [dict(samples[i], index=i, reward=rewards[i]) for i in chosen]
            write_jsonl(self.store.path(k, f"selection_step{step}.jsonl"), selected)
            out = self.sft_phase(selected, f"iteration_{k}_improve_{step}", seed=self.args.seed + 1000 * k + step)
            kept.append(len(chosen))
            losses.append(out.training_loss if out else None)
        return {"selected": chosen, "kept_per_step": kept, "train_loss": losses[-1], "train_loss_per_step": losses}


@dataclass
class ReSTEMConfig(SamplingConfig):
    r"""Configuration for :class:`ReSTEMTrainer`: every :class:`SamplingConfig` / :class:`trl.SFTConfig` field, plus:

    Parameters:
        max_per_prompt (`int`, defaults to `10`): cap on correct samples kept per problem (the paper's 10).
        correct_threshold (`float`, defaults to `1.0`): a sample is correct when its reward is >= this.
        restart_from_base (`bool`, defaults to `True`): fine-tune the base model each iteration (the paper), not the
            last policy.
    """

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
    _paper = _RESTEM_PAPER

    @property
    def restart_from_base(self) -> bool:
        return self.args.restart_from_base

    def select(self, k, samples, rewards):
        return binary_capped([s["row"] for s in samples], rewards, self.args.max_per_prompt,
                             self.args.correct_threshold)

    def run_iteration(self, k, samples, rewards):
        result = super().run_iteration(k, samples, rewards)
        valid = [r for r in rewards if r is not None]
        result["train_accuracy"] = sum(r >= self.args.correct_threshold for r in valid) / len(valid) if valid else None
        return result
