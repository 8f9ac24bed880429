"""The ``train`` and ``check-data`` flow shared by every trainer.

1. parse the recipe strictly (``recipe.py``), 2. cheap model-source and output-directory checks, 3. load and check
the dataset (``data.py``) — all before any model is loaded — then 4. load model + processor, build the trainer,
train, save, write the model card (and push to the hub when asked).

A trainer class may define ``from_run(cls, run: RunContext)`` to build itself (e.g. a reward model trainer that
loads a sequence classifier, or a sampling trainer that needs reward sources); otherwise it is built like a TRL
trainer: ``Trainer(model=..., args=..., train_dataset=..., eval_dataset=..., processing_class=..., peft_config=...)``.
A trainer class may also define ``check_run(cls, run: RunContext)``, called after the data checks and before any
model loads, for checks that need the whole run (e.g. reading the model's config files); it raises one-line errors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .recipe import StrictParser, check_output_dir, resolve_recipe, resume_value, split_config_flag

logger = logging.getLogger(__name__)


@dataclass
class RunContext:
    """Everything a run knows once its inputs are checked; handed to ``Trainer.from_run`` when defined."""

    spec: Any
    trainer_cls: type
    config_cls: type
    script_args: Any
    training_args: Any
    model_args: Any
    dataset_args: Any
    recipe: Path | None
    explicit_keys: set[str] = field(default_factory=set)
    datasets: Any = None
    data_summary: Any = None

    @property
    def train_dataset(self):
        return self.datasets[self.script_args.dataset_train_split]

    @property
    def eval_dataset(self):
        if str(getattr(self.training_args, "eval_strategy", "no")) in ("no", "IntervalStrategy.NO"):
            return None
        return self.datasets.get(self.script_args.dataset_test_split)

    def load_model(self, **overrides):
        from .models import load_model

        return load_model(self.model_args, self.training_args, self.spec.model_kind, **overrides)

    def load_processing_class(self):
        from .models import load_processing_class

        return load_processing_class(self.model_args, self.training_args, self.spec.model_kind)

    def peft_config(self):
        from trl import get_peft_config

        return get_peft_config(self.model_args)


def prepare_run(spec, argv: list[str], check_output: bool = True) -> RunContext:
    """Parse and check everything that can be checked without a model; raises one-line errors."""
    from .data import check_datasets, load_datasets
    from .errors import ConfigError
    from .models import check_model_source

    recipe_value, rest = split_config_flag(argv)
    recipe = resolve_recipe(spec, recipe_value) if recipe_value else None
    trainer_cls, config_cls = spec.load()
    parser = StrictParser(config_cls, prog=f"trl-plugins train {spec.name}")
    (script_args, training_args, model_args, dataset_args), explicit = parser.parse(rest, recipe)
    if not model_args.model_name_or_path:
        raise ConfigError(f"{recipe or 'command line'}: set model_name_or_path (e.g. embedded:smollm2-135m-instruct)")
    check_model_source(model_args.model_name_or_path)
    if check_output:
        check_output_dir(script_args, training_args, resume_value(training_args))
    run = RunContext(
        spec=spec,
        trainer_cls=trainer_cls,
        config_cls=config_cls,
        script_args=script_args,
        training_args=training_args,
        model_args=model_args,
        dataset_args=dataset_args,
        recipe=recipe,
        explicit_keys=explicit,
    )
    run.datasets = load_datasets(script_args, dataset_args)
    run.data_summary = check_datasets(spec, run.datasets, script_args, training_args)
    check_run = getattr(trainer_cls, "check_run", None)
    if callable(check_run):  # trainer-specific checks that need the run (e.g. the model's config files, no weights)
        check_run(run)
    return run


def build_trainer(run: RunContext):
    if hasattr(run.trainer_cls, "from_run"):
        return run.trainer_cls.from_run(run)
    return run.trainer_cls(
        model=run.load_model(),
        args=run.training_args,
        train_dataset=run.train_dataset,
        eval_dataset=run.eval_dataset,
        processing_class=run.load_processing_class(),
        peft_config=run.peft_config(),
    )


def train(run: RunContext):
    """Build the trainer, train, save the model and its card; returns the trainer."""
    args = run.training_args
    print(f"trl-plugins: {run.spec.name} — {run.data_summary.line().removeprefix('ok: ')} -> {args.output_dir}")
    trainer = build_trainer(run)
    trainer.train(resume_from_checkpoint=resume_value(args))
    trainer.save_model(args.output_dir)
    if trainer.accelerator.is_main_process:
        dataset_name = run.script_args.dataset_name
        trainer.create_model_card(
            model_name=Path(args.output_dir).name,
            dataset_name=dataset_name if dataset_name and not dataset_name.startswith(("/", ".")) else None,
        )
    if getattr(args, "push_to_hub", False):
        trainer.push_to_hub(dataset_name=run.script_args.dataset_name)
    trainer.accelerator.print(f"trl-plugins: {run.spec.name} done; model saved to {args.output_dir}")
    end = getattr(trainer, "end", None)
    if callable(end):
        end()
    return trainer
