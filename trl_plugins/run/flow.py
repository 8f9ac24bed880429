"""The ``train`` and ``check-data`` flow shared by every trainer.

1. parse the recipe strictly (``recipe.py``) and check it against the launch (``run/distributed.py``); 2. cheap
model-source, installed-package (``checks/packages.py``) and output-directory checks; 3. load the dataset and check every split against the trainer's format
(``checks/data.py``) and its method's ``check_data``; 4. the method's ``check_run``; 5. token lengths against the trainer's
limit (``checks/lengths.py``, tokenizer only) — all before any model is loaded; then 6. the method's ``build`` loads the
model and returns the trainer, which trains, saves and writes its model card (and pushes to the hub when asked).

The method hooks are the contract in ``method.py`` (docs/plugins.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import NothingTrainedError
from ..method import Method
from ..registry import TrainerSpec
from .recipe import check_output_dir, parse_run, resume_value

logger = logging.getLogger(__name__)


@dataclass
class RunContext:
    """Everything a run knows once its inputs are checked: what a method's ``check_run`` and ``build`` receive."""

    spec: TrainerSpec
    trainer_cls: type
    config_cls: type
    method: Method
    script_args: Any  # trl.ScriptArguments plus trl-plugins' run arguments (recipe.RunArguments)
    training_args: Any  # an instance of config_cls (a transformers.TrainingArguments subclass)
    model_args: Any  # trl.ModelConfig
    dataset_args: Any  # trl.DatasetMixtureConfig
    recipe: Path | None
    datasets: Any = None  # datasets.DatasetDict (or IterableDatasetDict) of every split
    data_summary: Any = None  # data.DataSummary: the line `check-data` prints
    length_line: str | None = None  # lengths.check_lengths: token lengths vs the trainer's limit, and what it does

    @property
    def train_dataset(self):
        return self.datasets[self.script_args.dataset_train_split]

    @property
    def eval_dataset(self):
        if str(getattr(self.training_args, "eval_strategy", "no")) in ("no", "IntervalStrategy.NO"):
            return None
        return self.datasets.get(self.script_args.dataset_test_split)

    def load_model(self, **overrides):
        from ..models.loading import load_model

        return load_model(self.model_args, self.training_args, self.spec.model_kind, **overrides)

    def load_processing_class(self):
        from ..models.loading import load_processing_class

        return load_processing_class(self.model_args, self.training_args, self.spec.model_kind,
                                     chat_template=getattr(self.script_args, "chat_template", None))

    def peft_config(self):
        from trl import get_peft_config

        return get_peft_config(self.model_args)


def prepare_run(spec: TrainerSpec, argv: list[str], check_output: bool = True) -> RunContext:
    """Parse and check everything that can be checked without a model; raises one-line errors."""
    from ..checks.data import check_datasets, load_datasets
    from ..checks.lengths import check_lengths
    from ..checks.packages import check_packages
    from ..models.loading import check_model_source
    from .distributed import check_installed, check_launch, launch_from_env

    trainer_cls, config_cls = spec.load()
    method = spec.load_method()(spec)
    check_installed(launch_from_env())
    parsed = parse_run(spec, argv, prog=f"trl-plugins train {spec.name}", config_cls=config_cls)
    parsed.require_model(" (e.g. embedded:smollm2-135m-instruct)")
    check_model_source(parsed.model_args.model_name_or_path)
    check_launch(method, parsed.model_args, parsed.training_args, launch_from_env(), parsed.where)
    check_packages(parsed.training_args, parsed.model_args, parsed.where)
    if check_output:
        check_output_dir(parsed.script_args, parsed.training_args, resume_value(parsed.training_args))
    run = RunContext(spec=spec, trainer_cls=trainer_cls, config_cls=config_cls, method=method,
                     script_args=parsed.script_args, training_args=parsed.training_args, model_args=parsed.model_args,
                     dataset_args=parsed.dataset_args, recipe=parsed.recipe)
    run.datasets = load_datasets(run.script_args, run.dataset_args)
    run.data_summary = check_datasets(spec, run.datasets, run.script_args, run.training_args, method)
    method.check_run(run)
    run.length_line = check_lengths(run)  # tokenizer only; DataError (exit 2) when no training row would remain
    return run


def build_trainer(run: RunContext):
    return run.method.build(run)


def train(run: RunContext):
    """Build the trainer, train, save the model and its card; returns the trainer."""
    from accelerate import PartialState

    args = run.training_args
    if PartialState().is_main_process:
        print(f"trl-plugins: {run.spec.name} — {run.data_summary.line().removeprefix('ok: ')} -> {args.output_dir}")
        print(f"trl-plugins: {run.length_line}")
    trainer = build_trainer(run)
    out = trainer.train(resume_from_checkpoint=resume_value(args))
    trainer.save_model(args.output_dir)
    if trainer.accelerator.is_main_process:
        dataset_name = run.script_args.dataset_name
        trainer.create_model_card(
            model_name=Path(args.output_dir).name,
            dataset_name=dataset_name if dataset_name and not dataset_name.startswith(("/", ".")) else None,
        )
    if getattr(args, "push_to_hub", False):
        trainer.push_to_hub(dataset_name=run.script_args.dataset_name)
    if _trained_nothing(trainer, out):
        raise NothingTrainedError(
            f"{run.spec.name} trained nothing: no iteration took an optimizer step (every sample cut off, unscored or "
            f"unselected: see the table above); the model in {args.output_dir} is the one it started from")
    trainer.accelerator.print(f"trl-plugins: {run.spec.name} done; model saved to {args.output_dir}")
    return trainer


def _trained_nothing(trainer, out) -> bool:
    """No optimizer step in the whole run. Sampling trainers keep one summary per iteration (resumed ones too), with
    the phase's ``train_loss`` or None where nothing was selected; other trainers count ``global_step``."""
    summaries = getattr(trainer, "summaries", None)
    if summaries is not None:
        return bool(summaries) and all(s.train_loss is None for s in summaries)
    return out is not None and getattr(out, "global_step", 1) == 0
