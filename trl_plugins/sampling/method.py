"""The run hooks of the sampling trainers (rejection-sampling, raft, rest, rest-em): the reward entries are resolved
once, before any model loads — reward-model paths exist and are sequence classifiers, offline hub reward models are
cached, the columns the rewards read are in the data — and handed to the trainer, with the held-out prompts."""

from __future__ import annotations

from ..checks.lengths import sampling_rule
from ..errors import ConfigError
from ..method import Method
from ..planning.memory_plan import MemoryProfile
from . import reward_sources

STREAMING_REFUSED = ("dataset_streaming: the sampling trainers sample from the whole training split every iteration "
                     "(and resume by row number), so it cannot be a stream; load it without streaming")


class SamplingMethod(Method):
    rewards: list[reward_sources.RewardEntry]
    heldout_rewards: list[reward_sources.RewardEntry]

    generates = True
    memory_profile = MemoryProfile(lm_head="fused", generation=generates)  # SFTTrainer (TRL 1.16) always fuses the head

    def length_rule(self, config):
        return sampling_rule(config)

    def check_data(self, dataset, split, config, role):
        from datasets import IterableDataset

        return [STREAMING_REFUSED] if role == "train" and isinstance(dataset, IterableDataset) else []

    def check_run(self, run) -> None:
        config = run.training_args
        self.rewards = reward_sources.resolve(config.reward_funcs, config.reward_weights, "reward_funcs", config,
                                              required=config.rewards_required())
        self.heldout_rewards = (reward_sources.resolve(config.heldout_reward_funcs, key="heldout_reward_funcs",
                                                       options=config)
                                if config.heldout_reward_funcs else [])
        columns = list(run.train_dataset.column_names or [])
        for key, resolved in (("reward_funcs", self.rewards), ("heldout_reward_funcs", self.heldout_rewards)):
            for entry, reward in zip(getattr(config, key) or [], resolved):  # the columns its registration declares
                for column in [c for c in reward.reads_columns if c not in columns]:
                    raise ConfigError(f"{key}: reward {entry!r} needs a column {column!r} in the training split "
                                      f"(found: {', '.join(columns)})")
        self.heldout = self._heldout_split(run)

    @staticmethod
    def _heldout_split(run):
        args = run.training_args
        return heldout_split(run.datasets, run.script_args.dataset_test_split, args.heldout_prompts) \
            if args.heldout_prompts else None

    def build(self, run):
        return run.trainer_cls(model=run.load_model(), args=run.training_args, train_dataset=run.train_dataset,
                               processing_class=run.load_processing_class(), peft_config=run.peft_config(),
                               heldout_dataset=self.heldout, rewards=self.rewards, heldout_rewards=self.heldout_rewards)


def heldout_split(datasets, split: str, prompts: int):
    """The held-out prompts of a run: the first ``prompts`` rows of ``datasets[split]`` (compare's other methods get
    theirs here too); one line naming what is missing otherwise."""
    test = datasets.get(split) if hasattr(datasets, "get") else None
    if test is None:
        raise ConfigError(f"heldout_prompts is {prompts} but the dataset has no split {split!r}")
    if "prompt" not in test.column_names:
        raise ConfigError(f"held-out split {split!r} has no 'prompt' column")
    return test.select(range(min(prompts, len(test))))
