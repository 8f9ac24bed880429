"""The run hooks of the iterative preference trainers (iterative-dpo, iterative-orpo): the sampling trainers' checks
(rewards resolved before any model loads, held-out split), a pair per training row in the memory plan and the
DPOTrainer collator's length rule for the generated pairs."""

from __future__ import annotations

from ..checks.lengths import preference_generation_rule
from ..planning.memory_plan import MemoryProfile
from .method import SamplingMethod


class PreferenceSamplingMethod(SamplingMethod):
    # each phase backpropagates chosen + rejected rows through TRL's fused LM head; the reference log-probs are one
    # no-grad forward per phase before its first step (never beside the training step), the generation as RAFT's
    memory_profile = MemoryProfile(sequences_per_example=2, lm_head="fused", generation=True)

    def length_rule(self, config):
        return preference_generation_rule(config)
