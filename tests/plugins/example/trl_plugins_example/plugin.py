"""Registers through the `trl_plugins` entry point; imports nothing heavy."""

from trl_plugins import hookimpl


@hookimpl
def register_trainers(register):
    register(
        "example-sft",
        trainer="trl_plugins_example.trainer:ExampleSFTTrainer",
        config="trl_plugins_example.trainer:ExampleSFTConfig",
        summary="Supervised fine-tuning on prompt/completion pairs (a third-party example).",
        paper=None,
        data_format="prompt_completion",
    )


@hookimpl
def register_reward_functions(register):
    register(
        "example_length",
        function="trl_plugins_example.rewards:length_reward",
        summary="Completion length in words divided by 10.",
    )
