"""Reward model with Llama 2's margin loss (Touvron et al. 2023, §3.2.2) — a TRL ``RewardTrainer``.

What it adds over ``RewardTrainer``: margins from a ``margin`` column, Llama 2 rating labels (Table 27) or score
differences (``margin_source``); the loss :func:`trl_plugins.losses.margin_reward_loss`; held-out accuracy per margin
bucket in the metrics and the model card (``report.py``); with LoRA, a merged checkpoint on save
(``lora_merge.py``). Docs: docs/methods/margin_rm.md.

    trl-plugins train margin-rm --config demo/margin_rm
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from accelerate.utils import is_peft_model
from trl import RewardConfig, RewardTrainer

from ...checks.lengths import reward_rule
from ...losses import margin_reward_loss
from ...method import Method
from ...planning.memory_plan import MemoryProfile
from ..common.configs import resolve_config
from ..common.lora_merge import merge_adapter_checkpoint
from ..common.papers import LLAMA2
from .checks import check_margin_data
from .ratings import ALIASES, LLAMA2_MARGINS, UNSURE, normalize_label
from .report import card_section, pairwise_report, report_metrics

logger = logging.getLogger(__name__)

MARGIN_SOURCES = ("auto", "none", "margin", "rating", "scores")


@dataclass
class MarginRewardConfig(RewardConfig):
    """Every :class:`trl.RewardConfig` field plus where margins come from (``margin_source``) and merged saving."""

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
        table.update({alias: table[UNSURE] for alias in ALIASES})
        return table

    def resolved_source(self, columns) -> str:
        """The effective source for a dataset with these columns: ``auto`` becomes ``margin`` or ``none``."""
        if self.margin_source == "auto":
            return "margin" if self.margin_column in columns else "none"
        return self.margin_source


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
        args = resolve_config(args, MarginRewardConfig, model, "MarginRM")
        self._eval_pairs: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        self.eval_reports: dict[str, dict[str, Any]] = {}
        self._last_eval_step: int | None = None
        super().__init__(model, args, *pos, **kwargs)

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
            if label in ALIASES:
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
        text = card_section(self.args, self.eval_reports, model_name, self.state.global_step)
        with open(path, encoding="utf-8") as f:
            card = f.read()
        at = card.find("\n## Citations")
        card = card[:at] + text + card[at:] if at >= 0 else card + text
        with open(path, "w", encoding="utf-8") as f:
            f.write(card)


class MarginRewardMethod(Method):
    """margin-rm's run hooks: the margin source's columns hold usable values; built as a sequence classifier."""


    memory_profile = MemoryProfile(sequences_per_example=2, lm_head="none")

    def length_rule(self, config):
        return reward_rule(config)

    def check_data(self, dataset, split, config, role):
        return check_margin_data(dataset, split, config)

    def build(self, run):
        """A sequence classifier with one output, the pad token on its config, LoRA as SEQ_CLS."""
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
        return MarginRewardTrainer(
            model=model,
            args=run.training_args,
            train_dataset=run.train_dataset,
            eval_dataset=run.eval_dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
        )
