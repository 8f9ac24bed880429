"""Hook specifications for trl-plugins.

A plugin is any importable module (or object) named by an entry point in the group ``trl_plugins``::

    # your package's pyproject.toml
    [project.entry-points.trl_plugins]
    my_plugin = "my_package.trl_plugin"

That module implements one or both hooks below, marked with :data:`trl_plugins.hookimpl`. Hooks *push* into the
``register`` callback they are given instead of returning lists (the pattern of simonw/llm's ``register_models``).

Keep the plugin module light: it is imported every time anybody runs ``trl-plugins list``, so it must not import
torch, transformers or trl. Name your classes and functions with import strings (``"pkg.module:Name"``); they are
imported only when a run actually uses them. The built-in trainers of this package register through exactly this
mechanism (see ``trl_plugins/builtin.py``).
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "trl_plugins"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_trainers(register) -> None:
    """Register one or more trainers.

    Call ``register`` once per trainer::

        @hookimpl
        def register_trainers(register):
            register(
                "my-method",                                   # unique name, used on the command line
                trainer="my_package.trainer:MyTrainer",        # a TRL trainer subclass, imported lazily
                config="my_package.trainer:MyConfig",          # its TrainingArguments/TRL config dataclass
                summary="One line saying what the method does.",
                paper="https://arxiv.org/abs/XXXX.YYYYY",
                data_format="preference",                      # a key of trl_plugins.formats.FORMATS
                required_columns=("prompt", "chosen", "rejected"),
                optional_columns=(),
                model_kind="causal-lm",                        # or "sequence-classification", "vision-language"
                method="my_package.trainer:MyMethod",          # optional: a trl_plugins.method.Method subclass
                recipes="my_package:recipes",                  # optional package directory of YAML recipes
            )

    ``required_columns`` and ``optional_columns`` default to the format's columns (``trl_plugins.formats``).
    ``other_formats=("preference",)`` says the trainer also accepts those formats (its method's ``check_data``
    tells them apart); ``list`` and ``info`` then show each format's columns.
    ``method`` names the run hooks of the trainer (its data checks, run checks and how it is built; see
    ``trl_plugins.method``); without it the trainer is built like a TRL trainer:
    ``Trainer(model=..., args=config, train_dataset=..., eval_dataset=..., processing_class=..., peft_config=...)``.
    """


@hookspec
def register_reward_functions(register) -> None:
    """Register one or more reward functions for the sampling trainers (rejection-sampling, raft, rest, rest-em).

    Call ``register`` once per function::

        @hookimpl
        def register_reward_functions(register):
            register(
                "my_reward",                                   # unique name, used in recipes: reward_funcs: [my_reward]
                function="my_package.rewards:my_reward",       # imported lazily
                summary="One line saying what it scores.",
                reads_columns=("answer",),                     # optional: dataset columns it reads
            )

    The function has TRL's reward-function signature, so every ``trl.rewards`` function also works::

        def my_reward(prompts: list, completions: list, **columns) -> list[float | None]: ...

    ``prompts``/``completions`` are strings (standard data) or lists of chat messages (conversational data);
    ``columns`` holds the dataset's other columns, one list entry per completion. Return ``None`` for a
    completion the function cannot score: that sample is dropped and counted. ``reads_columns`` names the dataset
    columns the function reads from ``columns``: a run whose training split lacks one stops before any model loads.
    """
