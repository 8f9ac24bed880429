"""Margin-loss reward model (Touvron et al. 2023, "Llama 2: Open Foundation and Fine-Tuned Chat Models", §3.2.2).

The algorithm: a sequence classifier with one output scores ``r(x, y)``; for a prompt x with a chosen y_c and a
rejected y_r,

    L = -log σ( r(x, y_c) - r(x, y_r) - m(r) )          [ + c · mean((r_c + r_r)²) ]   (optional reward centering)

where the margin ``m(r)`` grows with how strongly the annotator preferred y_c: Llama 2 maps its four rating labels
to margins (Table 27, "small": 1, 2/3, 1/3, 0 or "large": 3, 2, 1, 0). The loss is
:func:`trl_plugins.losses.margin_reward_loss`. Llama 2 reports RM accuracy per rating bucket; so does this trainer.

How it departs from TRL's ``RewardTrainer`` (which it subclasses; everything else — tokenization, collator, PEFT,
quantization, logging — is TRL's):
- ``margin_source`` chooses where margins come from: ``margin`` (a float column, TRL's only option), ``rating``
  (Llama 2 labels mapped by ``margin_scale`` or a user ``rating_margins`` table), ``scores`` (``margin_factor`` x
  ``chosen_score - rejected_score``, e.g. UltraFeedback ratings), ``none``, or ``auto`` (TRL: ``margin`` if present).
- Evaluation adds the exact pairwise accuracy overall and per margin bucket (rating label, or margin value) and the
  mean reward gap, to the trainer's metrics and to the model card; a final evaluation runs after training.
- Bad margin data (unknown rating label, NaN margins, missing columns) stops the CLI before the model loads
  (:func:`check_margin_data`).
- With LoRA, the final save merges the adapters into a plain checkpoint that loads with
  ``AutoModelForSequenceClassification`` (``merge_adapters_on_save: true``); the adapter is kept in ``adapter/``.
- From the paper: margins come from human ratings there; the embedded demo data derives them from VADER score
  differences (documented in ``trl_plugins/embedded/reward_pairs.py``).

Run it::

    trl-plugins train margin-rm --config recipes/demo/margin_rm.yaml            # CPU, embedded model and data
    accelerate launch --config_file recipes/accelerate_configs/single_gpu.yaml -m trl_plugins \\
        train margin-rm --config recipes/qwen2.5-1.5b-instruct/margin_rm/config_qlora.yaml
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

import torch
from accelerate.utils import is_peft_model
from trl import RewardConfig, RewardTrainer

from ..losses import margin_reward_loss
from .papers import LLAMA2

logger = logging.getLogger(__name__)

UNSURE = "negligibly better or unsure"
# Llama 2, Table 27: margin per rating label.
LLAMA2_MARGINS: dict[str, dict[str, float]] = {
    "small": {"significantly better": 1.0, "better": 2.0 / 3.0, "slightly better": 1.0 / 3.0, UNSURE: 0.0},
    "large": {"significantly better": 3.0, "better": 2.0, "slightly better": 1.0, UNSURE: 0.0},
}
_ALIASES = {"negligibly better": UNSURE, "unsure": UNSURE, "negligibly better / unsure": UNSURE}
MARGIN_SOURCES = ("auto", "none", "margin", "rating", "scores")
MAX_VALUE_BUCKETS = 8  # numeric margins with at most this many distinct values get one bucket per value


def normalize_label(label: Any) -> str:
    """``"Significantly_Better"`` -> ``"significantly better"`` (case, ``_``/``-`` and spacing do not matter)."""
    return " ".join(str(label).lower().replace("_", " ").replace("-", " ").split())


@dataclass
class MarginRewardConfig(RewardConfig):
    r"""Configuration for :class:`MarginRewardTrainer`: every :class:`trl.RewardConfig` field plus the margin knobs.

    Parameters:
        margin_source (`str`, defaults to `"auto"`): where the margin comes from — `margin` (float column),
            `rating` (Llama 2 rating labels), `scores` (score columns), `none`, or `auto` (`margin` if the column
            exists, else none: TRL's behaviour).
        margin_column (`str`, defaults to `"margin"`): the float margin column (`margin_source: margin`/`auto`).
        rating_column (`str`, defaults to `"rating"`): the rating label column (`margin_source: rating`).
        margin_scale (`str`, defaults to `"small"`): Llama 2 Table 27 scale, `small` (1, 2/3, 1/3, 0) or `large`
            (3, 2, 1, 0), for the labels significantly better / better / slightly better / negligibly better or unsure.
        rating_margins (`dict[str, float]`, *optional*): your own label -> margin table (replaces `margin_scale`);
            set it as a YAML mapping in the recipe.
        chosen_score_column, rejected_score_column (`str`): score columns (`margin_source: scores`).
        margin_factor (`float`, defaults to `1.0`): margin = `margin_factor` x (chosen score - rejected score).
        merge_adapters_on_save (`bool`, defaults to `True`): with LoRA, the final save writes a merged full checkpoint
            (loads with `AutoModelForSequenceClassification`) and keeps the adapter in `output_dir/adapter`.
        center_rewards_coefficient (`float`, *optional*): TRL's field; c of the centering term (~0.01).
    """

    margin_source: str = field(
        default="auto",
        metadata={"help": "Margin source: auto (TRL: `margin` column if present), none, margin, rating, scores.",
                  "choices": list(MARGIN_SOURCES)},
    )
    margin_column: str = field(default="margin", metadata={"help": "Float margin column (margin_source margin/auto)."})
    rating_column: str = field(default="rating", metadata={"help": "Rating label column (margin_source rating)."})
    margin_scale: str = field(
        default="small",
        metadata={"help": "Llama 2 Table 27 margins: small (1, 2/3, 1/3, 0) or large (3, 2, 1, 0).",
                  "choices": ["small", "large"]},
    )
    rating_margins: dict[str, float] | None = field(
        default=None,
        metadata={"help": "Your own rating label -> margin table (replaces margin_scale); a YAML mapping in the recipe."},
    )
    chosen_score_column: str = field(default="chosen_score", metadata={"help": "Score of the chosen completion."})
    rejected_score_column: str = field(default="rejected_score", metadata={"help": "Score of the rejected completion."})
    margin_factor: float = field(
        default=1.0, metadata={"help": "margin_source scores: margin = margin_factor * (chosen - rejected score)."}
    )
    merge_adapters_on_save: bool = field(
        default=True,
        metadata={"help": "With LoRA, save a merged checkpoint that loads with AutoModelForSequenceClassification "
                  "(the adapter is kept in output_dir/adapter)."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.margin_source not in MARGIN_SOURCES:
            raise ValueError(f"`margin_source` must be one of {', '.join(MARGIN_SOURCES)}, got {self.margin_source!r}")
        if self.margin_scale not in LLAMA2_MARGINS:
            raise ValueError(f"`margin_scale` must be small or large, got {self.margin_scale!r}")
        if isinstance(self.rating_margins, str):
            try:
                self.rating_margins = json.loads(self.rating_margins)
            except json.JSONDecodeError as exc:
                raise ValueError(f"`rating_margins` must be a mapping label: margin (JSON), got {self.rating_margins!r}") from exc
        if self.rating_margins is not None:
            if not isinstance(self.rating_margins, dict) or not self.rating_margins:
                raise ValueError("`rating_margins` must be a non-empty mapping of rating label -> margin")
            if self.margin_source != "rating":
                raise ValueError("`rating_margins` only applies with `margin_source: rating`")
            for label, value in self.rating_margins.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ValueError(f"`rating_margins`: margin of {label!r} must be a finite number, got {value!r}")
        if not math.isfinite(self.margin_factor):
            raise ValueError(f"`margin_factor` must be a finite number, got {self.margin_factor}")

    def margin_table(self) -> dict[str, float]:
        """Normalized rating label -> margin (the user's table, or Llama 2's at ``margin_scale``, with aliases)."""
        if self.rating_margins is not None:
            return {normalize_label(k): float(v) for k, v in self.rating_margins.items()}
        table = dict(LLAMA2_MARGINS[self.margin_scale])
        table.update({alias: table[UNSURE] for alias in _ALIASES})
        return table

    def resolved_source(self, columns) -> str:
        """The effective source for a dataset with these columns: ``auto`` becomes ``margin`` or ``none``."""
        if self.margin_source == "auto":
            return "margin" if self.margin_column in columns else "none"
        return self.margin_source


# ----------------------------------------------------------------------------------------------------------------
# data checks (run by the CLI before any model is loaded)
# ----------------------------------------------------------------------------------------------------------------
def _rows(rows: list[int], limit: int = 5) -> str:
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return ("row " if len(rows) == 1 else "rows ") + ", ".join(map(str, rows[:limit])) + more


def _bad_number(value) -> bool:
    return isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)


def check_margin_data(dataset, split: str, config: MarginRewardConfig) -> list[str]:
    """The margin source's columns exist and hold usable values; chosen differs from rejected somewhere."""
    from ..data import check_preference_pairs, iter_rows

    problems = check_preference_pairs(dataset, split, config)
    columns = list(dataset.column_names or [])
    source = config.resolved_source(columns)
    found = f"(found: {', '.join(columns)})"
    if source == "none":
        return problems
    if source == "margin":
        if config.margin_column not in columns:
            return problems + [f"margin_source is 'margin' but column {config.margin_column!r} is absent {found}"]
        bad = [i for i, row in iter_rows(dataset, [config.margin_column]) if _bad_number(row[config.margin_column])]
        if bad:
            problems.append(f"column {config.margin_column!r}: NaN, missing or non-numeric margin in {_rows(bad)}")
    elif source == "rating":
        if config.rating_column not in columns:
            return problems + [f"margin_source is 'rating' but column {config.rating_column!r} is absent {found}"]
        table = config.margin_table()
        unknown: dict[str, list[int]] = {}
        for i, row in iter_rows(dataset, [config.rating_column]):
            if normalize_label(row[config.rating_column]) not in table:
                unknown.setdefault(str(row[config.rating_column]), []).append(i)
        if unknown:
            known = ", ".join(k for k in table if k not in _ALIASES or config.rating_margins is not None)
            where = "rating_margins" if config.rating_margins is not None else f"margin_scale {config.margin_scale!r}"
            named = "; ".join(f"{label!r} in {_rows(rows)}" for label, rows in unknown.items())
            problems.append(
                f"column {config.rating_column!r}: unknown rating label{'s' if len(unknown) > 1 else ''} {named} "
                f"(known in {where}: {known})"
            )
    elif source == "scores":
        score_columns = [config.chosen_score_column, config.rejected_score_column]
        missing = [c for c in score_columns if c not in columns]
        if missing:
            return problems + [
                f"margin_source is 'scores' but score column{'s' if len(missing) > 1 else ''} "
                f"{', '.join(map(repr, missing))} {'are' if len(missing) > 1 else 'is'} missing {found}"
            ]
        for column in score_columns:
            bad = [i for i, row in iter_rows(dataset, [column]) if _bad_number(row[column])]
            if bad:
                problems.append(f"column {column!r}: NaN, missing or non-numeric score in {_rows(bad)}")
    return problems


# ----------------------------------------------------------------------------------------------------------------
# evaluation: pairwise accuracy overall and per margin bucket
# ----------------------------------------------------------------------------------------------------------------
def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9.=-]+", "_", name.lower()).strip("_")


def pairwise_report(
    gaps: torch.Tensor, margins: torch.Tensor | None = None, labels: dict[float, str] | None = None
) -> dict[str, Any]:
    """Pairwise accuracy (``r_c > r_r``) and mean reward gap, overall and per margin bucket.

    Buckets: one per distinct margin value when there are at most ``MAX_VALUE_BUCKETS`` of them (named by ``labels``,
    e.g. the rating label whose margin it is, else ``margin=<value>``), otherwise the margin quartiles.
    Returns ``{"accuracy", "reward_gap", "n", "buckets": [{"name", "n", "accuracy", "reward_gap", "margin"}]}``.
    """
    gaps = gaps.detach().float().reshape(-1).cpu()
    report: dict[str, Any] = {
        "accuracy": (gaps > 0).float().mean().item() if gaps.numel() else float("nan"),
        "reward_gap": gaps.mean().item() if gaps.numel() else float("nan"),
        "n": int(gaps.numel()),
        "buckets": [],
    }
    if margins is None or gaps.numel() == 0:
        return report
    margins = margins.detach().float().reshape(-1).cpu()
    if margins.shape != gaps.shape:
        raise ValueError(f"one margin per pair expected: {tuple(margins.shape)} vs {tuple(gaps.shape)}")
    rounded = torch.round(margins * 1e6) / 1e6
    values = sorted(set(rounded.tolist()))
    if len(values) <= MAX_VALUE_BUCKETS:
        groups = []
        for value in values:
            name = (labels or {}).get(round(value, 6)) or f"margin={value:g}"
            groups.append((name, rounded == value, value))
    else:
        edges = torch.quantile(margins, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])).tolist()
        index = torch.bucketize(margins, torch.tensor(edges[1:4]), right=True)  # 0..3, lower edge inclusive
        groups = []
        for q in range(4):
            closing = "]" if q == 3 else ")"
            groups.append((f"margin in [{edges[q]:.3g}, {edges[q + 1]:.3g}{closing}", index == q, None))
    for name, mask, value in groups:
        n = int(mask.sum())
        if n == 0:
            continue
        bucket_gaps = gaps[mask]
        report["buckets"].append(
            {
                "name": name,
                "n": n,
                "accuracy": (bucket_gaps > 0).float().mean().item(),
                "reward_gap": bucket_gaps.mean().item(),
                "margin": value if value is not None else margins[mask].mean().item(),
            }
        )
    return report


def report_metrics(report: dict[str, Any], prefix: str = "eval") -> dict[str, float]:
    """Flat metric names for a :func:`pairwise_report`: ``eval_pairwise_accuracy``, ``eval_bucket_accuracy/<name>``."""
    metrics = {
        f"{prefix}_pairwise_accuracy": report["accuracy"],
        f"{prefix}_reward_gap": report["reward_gap"],
    }
    for bucket in report["buckets"]:
        slug = _slug(bucket["name"])
        metrics[f"{prefix}_bucket_accuracy/{slug}"] = bucket["accuracy"]
        metrics[f"{prefix}_bucket_reward_gap/{slug}"] = bucket["reward_gap"]
        metrics[f"{prefix}_bucket_size/{slug}"] = bucket["n"]
    return metrics


def report_markdown(report: dict[str, Any], title: str) -> str:
    lines = [
        f"### {title}",
        "",
        f"Pairwise accuracy (reward of chosen > rejected): **{report['accuracy']:.4f}** on {report['n']} pairs; "
        f"mean reward gap {report['reward_gap']:.4f}.",
    ]
    if report["buckets"]:
        lines += ["", "| margin bucket | margin | pairs | accuracy | mean reward gap |", "|---|---|---|---|---|"]
        for b in report["buckets"]:
            lines.append(f"| {b['name']} | {b['margin']:.4g} | {b['n']} | {b['accuracy']:.4f} | {b['reward_gap']:.4f} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# saving: merge LoRA adapters into a plain sequence-classification checkpoint
# ----------------------------------------------------------------------------------------------------------------
def merge_adapter_checkpoint(adapter_dir: str, output_dir: str, tokenizer, dtype=None, trust_remote_code=False) -> None:
    """Load the base model named in ``adapter_dir`` (unquantized, on the CPU), apply the adapter (LoRA and the
    ``modules_to_save`` score head), merge, and save a plain checkpoint + tokenizer to ``output_dir``."""
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForSequenceClassification
    from trl.trainer.reward_trainer import suppress_seqcls_warning

    peft_config = PeftConfig.from_pretrained(adapter_dir)
    with suppress_seqcls_warning():
        base = AutoModelForSequenceClassification.from_pretrained(
            peft_config.base_model_name_or_path,
            num_labels=1,
            dtype=dtype or torch.float32,
            revision=peft_config.revision,
            trust_remote_code=trust_remote_code,
        )
    base.config.pad_token_id = tokenizer.pad_token_id
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    merged.config.pad_token_id = tokenizer.pad_token_id
    merged.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)


# ----------------------------------------------------------------------------------------------------------------
# the trainer
# ----------------------------------------------------------------------------------------------------------------
class MarginRewardTrainer(RewardTrainer):
    """A :class:`trl.RewardTrainer` with Llama 2's margin sources, per-bucket evaluation and merged saving.

    Constructed exactly like TRL's trainer::

        trainer = MarginRewardTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", train_dataset=pairs_with_ratings,
                                      args=MarginRewardConfig("out", margin_source="rating", margin_scale="small"))
        trainer.train()
    """

    _tag_names = ["trl", "reward-trainer", "margin-rm", "trl-plugins"]
    _name = "Margin reward model"
    _paper = LLAMA2

    def __init__(self, model, args: MarginRewardConfig | None = None, *pos, **kwargs):
        if args is None:
            name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "model")
            args = MarginRewardConfig(f"{str(name).rstrip('/').split('/')[-1]}-MarginRM")
        elif not isinstance(args, MarginRewardConfig):
            raise TypeError(f"`args` must be a MarginRewardConfig, got {type(args).__name__}")
        self._eval_pairs: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        self.eval_reports: dict[str, dict[str, Any]] = {}
        self._last_eval_step: int | None = None
        super().__init__(model, args, *pos, **kwargs)

    @classmethod
    def from_run(cls, run):
        """CLI construction: a sequence classifier with one output, pad token on its config, LoRA as SEQ_CLS."""
        from trl.trainer.reward_trainer import suppress_seqcls_warning

        tokenizer = run.load_processing_class()
        with suppress_seqcls_warning():
            model = run.load_model(num_labels=1)
        model.config.pad_token_id = tokenizer.pad_token_id
        peft_config = run.peft_config()
        if peft_config is not None and str(peft_config.task_type) != "SEQ_CLS":
            # SEQ_CLS makes peft train and save the new `score` head (modules_to_save) next to the LoRA weights.
            logger.info("margin-rm: LoRA task_type %s -> SEQ_CLS (the score head is trained in full)", peft_config.task_type)
            peft_config.task_type = "SEQ_CLS"
        return cls(
            model=model,
            args=run.training_args,
            train_dataset=run.train_dataset,
            eval_dataset=run.eval_dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
        )

    # -- data: add the margin column from the configured source, then TRL's tokenization -----------------------
    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        from trl.data_utils import get_dataset_column_names

        columns = get_dataset_column_names(dataset)
        source = args.resolved_source(columns)
        if source == "none":
            if "margin" in columns:  # TRL's collator would use it: margin_source none means none
                dataset = dataset.remove_columns("margin")
        elif source == "margin":
            if args.margin_column != "margin":
                if "margin" in columns:
                    dataset = dataset.remove_columns("margin")
                dataset = dataset.map(lambda ex: {"margin": float(ex[args.margin_column])})
        elif source == "rating":
            table, column = args.margin_table(), args.rating_column

            def rating_margin(example):
                label = normalize_label(example[column])
                if label not in table:
                    raise ValueError(f"unknown rating label {example[column]!r} in column {column!r}")
                return {"margin": table[label]}

            dataset = dataset.map(rating_margin)
        elif source == "scores":
            factor, chosen, rejected = args.margin_factor, args.chosen_score_column, args.rejected_score_column
            dataset = dataset.map(lambda ex: {"margin": factor * (float(ex[chosen]) - float(ex[rejected]))})
        return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

    # -- loss ----------------------------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        margin = inputs.pop("margin", None)
        inputs["use_cache"] = False
        outputs = model(**inputs)
        rewards_chosen, rewards_rejected = torch.chunk(outputs.logits.squeeze(-1), chunks=2)
        loss, metrics = margin_reward_loss(
            rewards_chosen, rewards_rejected, margin, self.args.center_rewards_coefficient
        )

        if mode == "train":
            num_tokens = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
            self._total_train_tokens += num_tokens // self._tp_size
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        with torch.no_grad():
            gather = self.accelerator.gather_for_metrics
            all_rewards = self.accelerator.gather(outputs.logits)
            self._metrics[mode]["min_reward"].append(all_rewards.min().item())
            self._metrics[mode]["mean_reward"].append(all_rewards.mean().item())
            self._metrics[mode]["max_reward"].append(all_rewards.max().item())
            # TRL's names: `accuracy` and `margin` (= mean reward gap r_c - r_r)
            self._metrics[mode]["accuracy"].append(gather(metrics["accuracy"]).mean().item())
            self._metrics[mode]["margin"].append(gather(metrics["reward_gap"]).mean().item())
            for key in ("center_loss", "margin_target", "gap_above_margin"):
                if key in metrics:
                    self._metrics[mode][key].append(gather(metrics[key]).mean().item())
            if mode == "eval":
                gaps = gather((rewards_chosen - rewards_rejected).detach().float())
                margins = gather(margin.detach().float()) if margin is not None else None
                self._eval_pairs.append((gaps.cpu(), margins.cpu() if margins is not None else None))

        return (loss, outputs) if return_outputs else loss

    # -- evaluation ----------------------------------------------------------------------------------------------
    def _bucket_labels(self) -> dict[float, str] | None:
        if self.args.margin_source != "rating":
            return None
        labels: dict[float, list[str]] = {}
        for label, value in self.args.margin_table().items():
            if label in _ALIASES:
                continue
            labels.setdefault(round(value, 6), []).append(label)
        return {value: " / ".join(names) for value, names in labels.items()}

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval"):
        self._eval_pairs = []
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        if self._eval_pairs:
            gaps = torch.cat([g for g, _ in self._eval_pairs])
            has_margin = all(m is not None for _, m in self._eval_pairs)
            margins = torch.cat([m for _, m in self._eval_pairs]) if has_margin else None
            report = pairwise_report(gaps, margins, self._bucket_labels())
            self.eval_reports[metric_key_prefix] = report
            output.metrics.update(report_metrics(report, metric_key_prefix))
            self._last_eval_step = self.state.global_step
        self._eval_pairs = []
        return output

    def train(self, *args, **kwargs):
        """TRL's training, then one final evaluation (when there is an eval set) so that the model card and the
        returned metrics hold the held-out accuracy of the final model."""
        result = super().train(*args, **kwargs)
        if self.eval_dataset is not None and self._last_eval_step != self.state.global_step:
            self.evaluate()
        return result

    # -- saving and the model card -------------------------------------------------------------------------------
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        output_dir = output_dir or self.args.output_dir
        unwrapped = self.accelerator.unwrap_model(self.model)
        if _internal_call or not self.args.merge_adapters_on_save or not is_peft_model(unwrapped):
            return super().save_model(output_dir, _internal_call)
        adapter_dir = os.path.join(output_dir, "adapter")
        super().save_model(adapter_dir, _internal_call=True)  # gathers sharded weights; writes adapter + tokenizer
        if self.args.should_save:
            base = unwrapped.get_base_model()
            quantized = getattr(base, "is_loaded_in_4bit", False) or getattr(base, "is_loaded_in_8bit", False)
            dtype = getattr(base.config, "dtype", None)
            if quantized or not isinstance(dtype, torch.dtype):
                dtype = torch.bfloat16 if quantized else torch.float32
            merge_adapter_checkpoint(adapter_dir, output_dir, self.processing_class, dtype, self.args.trust_remote_code)
            logger.info("margin-rm: merged LoRA adapters into %s (adapter kept in %s)", output_dir, adapter_dir)
        self.accelerator.wait_for_everyone()
        if self.args.push_to_hub:
            self.push_to_hub(commit_message="Model save", revision=self.args.hub_revision)

    def create_model_card(self, model_name=None, dataset_name=None, tags=None):
        super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
        if not self.is_world_process_zero():
            return
        path = os.path.join(self.args.output_dir, "README.md")
        if not os.path.isfile(path):
            return
        args = self.args
        source = args.margin_source
        if source == "rating":
            table = args.rating_margins or LLAMA2_MARGINS[args.margin_scale]
            detail = f"rating column `{args.rating_column}` mapped to margins {json.dumps(table)}"
        elif source == "scores":
            detail = (f"{args.margin_factor} x (`{args.chosen_score_column}` - `{args.rejected_score_column}`)")
        elif source in ("margin", "auto"):
            detail = f"column `{args.margin_column}` (if present)"
        else:
            detail = "no margin"
        section = [
            "",
            "## Margin reward model (trl-plugins `margin-rm`)",
            "",
            f"Loss: `-log σ(r_c - r_r - m)` (Llama 2 §3.2.2); margin source `{source}`: {detail}"
            + (f"; reward centering c = {args.center_rewards_coefficient}" if args.center_rewards_coefficient else "")
            + ".",
            "",
            "Load it as a reward model:",
            "",
            "```python",
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
            f'model = AutoModelForSequenceClassification.from_pretrained("{model_name or args.output_dir}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{model_name or args.output_dir}")',
            "reward = model(**tokenizer(text, return_tensors='pt')).logits[0, 0]",
            "```",
        ]
        for prefix, report in self.eval_reports.items():
            section += ["", report_markdown(report, f"Held-out evaluation (`{prefix}`, step {self.state.global_step})")]
        with open(path, encoding="utf-8") as f:
            card = f.read()
        text = "\n".join(section) + "\n"
        at = card.find("\n## Citations")
        card = card[:at] + text + card[at:] if at >= 0 else card + text
        with open(path, "w", encoding="utf-8") as f:
            f.write(card)
