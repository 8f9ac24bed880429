"""The run hooks of the iterative preference trainers (iterative-dpo, iterative-orpo): the sampling trainers' checks
(rewards resolved before any model loads, held-out split) and the pair rules' own — spin's prompt + reference
completion columns, judge_pairwise's judge and template —, a pair per training row in the memory plan and the
DPOTrainer collator's length rule for the generated pairs."""

from __future__ import annotations

from ..checks.lengths import preference_generation_rule
from ..errors import ConfigError, DataError
from ..planning.memory_plan import MemoryProfile
from . import reward_sources
from .method import SamplingMethod
from .pairs import spin_data_problem


class PreferenceSamplingMethod(SamplingMethod):
    # each phase backpropagates chosen + rejected rows through TRL's fused LM head; the reference log-probs are one
    # no-grad forward per phase before its first step (never beside the training step), the generation as RAFT's
    memory_profile = MemoryProfile(sequences_per_example=2, lm_head="fused", generation=True)

    def length_rule(self, config):
        return preference_generation_rule(config)

    def check_run(self, run) -> None:
        config, train = run.training_args, run.train_dataset
        if config.pair_rule == "spin":
            problem = spin_data_problem(list(train.column_names or []), train[0] if len(train) else None,
                                        f"training split {run.script_args.dataset_train_split!r}")
            if problem:
                raise DataError(problem)
        super().check_run(run)
        if config.pair_rule == "judge_pairwise":
            spec = reward_sources.pairwise_judge(config, self.rewards)
            columns = list(train.column_names or [])
            for column in [c for c in spec.columns if c not in columns]:
                raise ConfigError(f"judge_pairwise_template: {spec.template_name!r} reads a column {column!r} the "
                                  f"training split lacks (found: {', '.join(columns)})")
