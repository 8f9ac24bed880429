"""A trainer a third party might ship: TRL's SFTTrainer with one extra knob."""

from dataclasses import dataclass, field

from trl import SFTConfig, SFTTrainer


@dataclass
class ExampleSFTConfig(SFTConfig):
    example_knob: int = field(default=1, metadata={"help": "An extra field the plugin adds."})


class ExampleSFTTrainer(SFTTrainer):
    _tag_names = ["trl", "sft", "example-plugin"]
