"""The per-method contract: what a run asks of a registered method beyond its trainer and config classes.

A plugin registers ``method="pkg.module:MyMethod"``, a subclass of :class:`Method` (or none: the base is used). Every
hook has a default that does nothing special, so a method overrides only what it needs. The train flow (run/flow.py) makes one
instance per run and calls, in this order (all but ``build`` before any model loads):

1. :meth:`Method.check_data` for every split the run uses, after the generic format checks of ``checks/data.py``;
2. :meth:`Method.check_run` once, with the whole run (model config files, reward sources, ...);
3. :meth:`Method.build`, which loads the model(s) and returns the trainer.

:meth:`Method.length_rule` tells the length check (``checks/lengths.py``) what the trainer does to over-long rows.

Guide for plugin authors: docs/plugins.md ("The method class").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .planning.memory_plan import MemoryProfile

if TYPE_CHECKING:
    from .registry import TrainerSpec
    from .run.flow import RunContext


class Method:
    """Base of every method's run hooks; subclass it and override what your trainer needs."""

    memory_profile = MemoryProfile()  # what one example puts on the GPU, for `trl-plugins plan` (planning/memory_plan.py)
    generates = False  # generates with the policy while training: refused under FSDP/ZeRO-3 (run/distributed.py)

    def __init__(self, spec: TrainerSpec):
        self.spec = spec

    def check_data(self, dataset, split: str, config, role: str) -> list[str]:
        """Problems of one split (``role`` is ``"train"`` or ``"eval"``), one line each; the train flow prefixes the
        dataset and split. Runs after the format checks passed, before any model loads."""
        return []

    def check_run(self, run: RunContext) -> None:
        """Checks that need the whole run (e.g. the model's config files, never its weights); raise a one-line
        :class:`trl_plugins.errors.TrlPluginsError`. What it resolves can be kept on ``self`` for :meth:`build`."""

    def length_rule(self, config):
        """What the trainer does to rows longer than its limit (a :class:`trl_plugins.checks.lengths.LengthRule`); the
        default reports token lengths against ``max_length`` with the action unknown."""
        from .checks.lengths import generic_rule

        return generic_rule(config)

    def build(self, run: RunContext) -> Any:
        """Load the model and processor and return the trainer; by default exactly as TRL's trainers are built."""
        return run.trainer_cls(
            model=run.load_model(),
            args=run.training_args,
            train_dataset=run.train_dataset,
            eval_dataset=run.eval_dataset,
            processing_class=run.load_processing_class(),
            peft_config=run.peft_config(),
        )
