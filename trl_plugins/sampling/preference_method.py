"""The run hooks of the iterative preference trainers (iterative-dpo, iterative-orpo): the sampling trainers' checks
(rewards resolved before any model loads, held-out split), a pair per training row in the memory plan and the
DPOTrainer collator's length rule for the generated pairs."""

from __future__ import annotations

from ..checks.lengths import LengthRule, _limit
from ..planning.memory_plan import MemoryProfile
from .method import SamplingMethod


class PreferenceSamplingMethod(SamplingMethod):
    # each phase backpropagates chosen + rejected rows through TRL's fused LM head; the reference log-probs are one
    # no-grad forward per phase before its first step (never beside the training step), the generation as RAFT's
    memory_profile = MemoryProfile(sequences_per_example=2, lm_head="fused", generation=True)

    def length_rule(self, config):
        """Prompts are never truncated for generation; each phase's collator truncates prompt + chosen and prompt +
        rejected to ``max_length`` (``truncation_mode``) as DPOTrainer does; with ``keep_start`` pairs whose prompt alone
        fills ``max_length`` are dropped first."""
        limit, side = _limit(config), getattr(config, "truncation_mode", "keep_start")
        new = int(getattr(config, "max_new_tokens", 0) or 0) or None
        common = dict(columns=("completion",), layout="generation", unit="prompts", max_new_tokens=new)
        if limit is None:
            return LengthRule("max_length", None, "none", **common)
        return LengthRule("max_length", limit, "truncate", side=side, drop_prompt_fills=side == "keep_start", **common)
