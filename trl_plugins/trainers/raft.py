"""RAFT, Reward rAnked FineTuning (Dong et al. 2023): per iteration keep the best of K samples per prompt (``local``)
or the global top-alpha (``top``), then SFT — a sampling trainer (``SFTTrainer``).

What it adds over LMFlow's RAFT: batched generation, TRL's SFT loop (PEFT, QLoRA, accelerate), iteration files and
resume, distinct-2 in every summary row. Docs: docs/methods/raft.md.

    trl-plugins train raft --config demo/raft
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..sampling.config import SamplingConfig
from ..sampling.selection import best_of_n, top_alpha
from ..sampling.trainer import SamplingTrainer
from .common.papers import RAFT


@dataclass
class RAFTConfig(SamplingConfig):
    """Every :class:`SamplingConfig` field plus the selection rule; defaults follow LMFlow (K 8, temperature 0.85)."""

    raft_selection: str = field(default="local", metadata={"help": "local (best of K per prompt) or top (global top-alpha)."})
    top_alpha: float = field(default=0.125, metadata={"help": "Fraction of all samples kept by top selection, in (0, 1]."})
    num_generations: int = field(default=8, metadata={"help": "K: completions sampled per prompt."})
    temperature: float = field(default=0.85, metadata={"help": "Sampling temperature (LMFlow: 0.85)."})

    def __post_init__(self):
        super().__post_init__()
        if self.raft_selection not in ("local", "top"):
            raise ValueError(f"raft_selection must be 'local' or 'top', got {self.raft_selection!r}")
        if not 0 < self.top_alpha <= 1:
            raise ValueError(f"top_alpha must be in (0, 1], got {self.top_alpha}")


class RAFTTrainer(SamplingTrainer):
    """RAFT: best-of-K (or global top-alpha) selection, SFT, repeat. Built like an SFTTrainer on prompt-only data."""

    _tag_names = ["trl", "sft", "trl-plugins", "raft"]
    _name = "RAFT"
    _paper = RAFT

    def select(self, k, samples, rewards):
        if self.args.raft_selection == "top":
            return top_alpha(rewards, self.args.top_alpha)
        return best_of_n([s.row for s in samples], rewards)
