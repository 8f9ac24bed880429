"""Iterative ORPO — our ``ORPOTrainer`` (Hong et al. 2024) on the sampling engine: sample K completions per prompt,
score them, pair them by the rule of ``pair_rule`` (as iterative-dpo), run ORPOTrainer's own step loop on the pairs,
repeat. ORPO needs no reference model, so no reference is computed or held. Docs: docs/methods/iterative_dpo.md.

    trl-plugins train iterative-orpo --config demo/iterative_orpo
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..sampling.config import SamplingOptions
from ..sampling.preference import PairOptions, PreferenceEngine
from .common.papers import ORPO
from .orpo import ORPOConfig, ORPOTrainer


@dataclass
class IterativeORPOConfig(PairOptions, SamplingOptions, ORPOConfig):
    """Every :class:`ORPOConfig` field (they apply to each phase), the sampling loop's knobs and the pair rule."""

    num_generations: int = field(default=8, metadata={"help": "K: completions sampled per prompt."})


class IterativeORPOTrainer(PreferenceEngine, ORPOTrainer):
    """Iterative ORPO: generate, score, pair, ORPOTrainer's loop on the pairs, repeat. Built like the sampling
    trainers on prompt-only data."""

    _tag_names = ["trl", "orpo", "trl-plugins", "iterative-orpo"]
    _name = "Iterative ORPO"
    _paper = ORPO
