"""Hook specifications for trl-plugins.

A plugin is any importable module (or object) named by an entry point in the group ``trl_plugins``::

    # your package's pyproject.toml
    [project.entry-points.trl_plugins]
    my_plugin = "my_package.trl_plugin"

That module implements any of the hooks below, marked with :data:`trl_plugins.hookimpl`. Hooks *push* into the
``register`` callback they are given instead of returning lists (the pattern of simonw/llm's ``register_models``).

Keep the plugin module light: it is imported every time anybody runs ``trl-plugins list``, so it must not import
torch, transformers or trl. Name your classes and functions with import strings (``"pkg.module:Name"``); they are
imported only when a run actually uses them. The built-in trainers, reward functions and generation backend of this
package register through exactly this mechanism (see ``trl_plugins/builtin.py``); docs/plugins.md has a section per
hook.
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


@hookspec
def register_generation_backends(register) -> None:
    """Register one or more generation backends for the sampling trainers: ``register(name, backend=..., summary=...)``.

    ``backend`` is the import string of a class (or factory) called as ``backend(model, tokenizer)`` when a run whose
    recipe says ``generation_backend: NAME`` builds its trainer (``transformers``, built in, is the default)::

        @hookimpl
        def register_generation_backends(register):
            register("my-engine", backend="my_package.engine:MyBackend", summary="What it runs on.")

    The object it returns samples for the engine: ``generate(prompts, num_return_sequences, params, seed, progress,
    chat_kwargs) -> list[list[Generation]]`` (one list per prompt, in input order; ``params`` a
    ``trl_plugins.sampling.generation.SamplingParams``) and a ``last_stats`` dict (at least ``generated_tokens`` and
    ``seconds``) — the ``GenerationBackend`` protocol of that module. It samples what this process is given; the
    engine shares prompts out over processes. An unknown name stops the run in one line before any model loads.
    """
