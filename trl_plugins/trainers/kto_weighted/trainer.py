"""KTO with class-imbalance weights (Ethayarajh et al. 2024, Eq. 8), per-example weights and mixed batches — a TRL
``KTOTrainer``.

What it adds over ``KTOTrainer``: ``weighting: auto`` computes λ_D/λ_U from the class counts
(:func:`trl_plugins.losses.kto_weights`), ``weight_column`` multiplies them per example, ``mix_batches`` orders the
training set so every per-device batch holds both classes (``batches.py``); the loss is
:func:`trl_plugins.losses.kto_weighted_loss`. Docs: docs/methods/kto_weighted.md.

    trl-plugins train kto-weighted --config demo/kto_weighted
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from numbers import Real

import torch
from datasets import Dataset
from trl import KTOConfig, KTOTrainer
from trl.trainer.kto_trainer import disable_gradient_checkpointing, is_peft_model, use_adapter

from ...checks.lengths import kto_rule
from ...losses import KTO_TARGET_RATIO_RANGE, kto_weight_ratio, kto_weighted_loss, kto_weights
from ...method import Method
from ...planning.memory_plan import MemoryProfile
from ..common.configs import resolve_config
from .batches import EXAMPLE_WEIGHT_KEY, ExampleWeightsCollator, mixed_batch_order
from .checks import check_kto_data
from .metrics import log_kto_metrics, log_weighting

logger = logging.getLogger(__name__)

WEIGHTINGS = ("auto", "manual", "none")


class KTOWeightWarning(UserWarning):
    """Hand-set KTO class weights break the paper's imbalance rule (Eq. 8)."""


@dataclass
class KTOWeightedConfig(KTOConfig):
    """Every :class:`trl.KTOConfig` field plus the weighting and batching knobs."""

    weighting: str = field(
        default="auto",
        metadata={
            "help": "Class weights: `auto` from the class counts so that λ_D·n_D/(λ_U·n_U) = target_ratio, up-weighting "
            "only the rarer class; `manual` = desirable_weight/undesirable_weight (warns when Eq. 8 is broken); "
            "`none` = TRL's KTOTrainer loss unchanged.",
            "choices": list(WEIGHTINGS),
        },
    )
    target_ratio: float = field(
        default=1.0,
        metadata={"help": "For weighting=auto: the ratio λ_D·n_D/(λ_U·n_U) to reach, in [1, 4/3] (paper Eq. 8)."},
    )
    weight_column: str | None = field(
        default=None,
        metadata={"help": "Optional dataset column of non-negative per-example weights that multiply λ(y)."},
    )
    mix_batches: bool = field(
        default=True,
        metadata={
            "help": "Order the training set (seeded) so that every per-device batch holds desirable and undesirable "
            "rows: the KL reference point is estimated from mismatched pairs inside each batch."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"`weighting` must be one of {', '.join(WEIGHTINGS)}, got {self.weighting!r}")
        low, high = KTO_TARGET_RATIO_RANGE
        if not (isinstance(self.target_ratio, Real) and low <= self.target_ratio <= high + 1e-9):
            raise ValueError(f"`target_ratio` must be in [1, 4/3] (KTO paper Eq. 8), got {self.target_ratio}")
        if self.weighting == "auto" and (self.desirable_weight != 1.0 or self.undesirable_weight != 1.0):
            raise ValueError(
                "`desirable_weight`/`undesirable_weight` are computed from the class counts with weighting: auto; "
                "set weighting: manual to choose them yourself"
            )
        if self.desirable_weight < 0 or self.undesirable_weight < 0:
            raise ValueError("`desirable_weight` and `undesirable_weight` must be >= 0")
        if self.weighting == "none" and self.weight_column:
            raise ValueError(
                "`weight_column` needs weighting: auto or manual (weighting: none is TRL's loss exactly, without "
                "per-example weights)"
            )
        if self.loss_type != "apo_zero_unpaired" and self.per_device_train_batch_size < 2:
            raise ValueError(
                f"`per_device_train_batch_size` must be >= 2 for KTO (got {self.per_device_train_batch_size}): the KL "
                "reference point is estimated from mismatched pairs inside each per-device batch"
            )


_NON_MODEL_KEYS = {
    "completion_mask",
    "KL_input_ids",
    "KL_attention_mask",
    "KL_completion_mask",
    "KL_token_type_ids",
    "KL_mm_token_type_ids",
    "label",
    "ref_logps",
    "ref_KL_logps",
}


class KTOWeightedTrainer(KTOTrainer):
    """KTO with automatic class weights, per-example weights and mixed batches: a :class:`trl.KTOTrainer`.

    Constructed exactly like TRL's trainer::

        trainer = KTOWeightedTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", args=KTOWeightedConfig("out"),
                                     train_dataset=dataset, peft_config=LoraConfig(...))
        trainer.train()
    """

    _tag_names = ["trl", "kto", "kto-weighted", "trl-plugins"]
    _name = "KTO (weighted)"

    def __init__(self, model, ref_model=None, args: KTOWeightedConfig | None = None, *pos, **kwargs):
        args = resolve_config(args, KTOWeightedConfig, model, "KTO-weighted")
        self._notes: list[str] = []
        self.class_counts: tuple[int, int] | None = None
        super().__init__(model, ref_model, args, *pos, **kwargs)
        if args.weight_column:
            self.data_collator = ExampleWeightsCollator(self.data_collator, args.weight_column)
        for note in self._notes:
            logger.info("kto-weighted: %s", note)
            self.accelerator.print(f"kto-weighted: {note}")

    # -- data ------------------------------------------------------------------------------------------------------
    def _set_class_weights(self, n_desirable: int, n_undesirable: int, args: KTOWeightedConfig) -> None:
        self.class_counts = (n_desirable, n_undesirable)
        if args.weighting == "auto" and min(n_desirable, n_undesirable) > 0:
            self.desirable_weight, self.undesirable_weight = kto_weights(n_desirable, n_undesirable, args.target_ratio)
        elif args.weighting == "auto":  # one class left (TRL dropped fully truncated rows): nothing to balance
            self.desirable_weight, self.undesirable_weight = 1.0, 1.0
        if args.weighting == "none" or min(n_desirable, n_undesirable) == 0:
            return
        ratio = kto_weight_ratio(self.desirable_weight, self.undesirable_weight, n_desirable, n_undesirable)
        if args.weighting == "manual" and not (1.0 - 1e-9 <= ratio <= 4.0 / 3.0 + 1e-9):
            suggested = kto_weights(n_desirable, n_undesirable)
            warnings.warn(
                f"KTO weights break the paper's rule (Eq. 8): λ_D·n_D/(λ_U·n_U) = {self.desirable_weight:g}·"
                f"{n_desirable}/({self.undesirable_weight:g}·{n_undesirable}) = {ratio:.3f}, outside [1, 4/3]; "
                f"weighting: auto would use desirable_weight={suggested[0]:.4g}, undesirable_weight={suggested[1]:.4g}",
                KTOWeightWarning,
                stacklevel=3,
            )

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        if dataset_name != "train" or not isinstance(args, KTOWeightedConfig) or not isinstance(dataset, Dataset):
            if dataset_name == "train" and isinstance(args, KTOWeightedConfig) and args.weighting == "auto":
                # Streaming: the class counts are unknown without reading the whole stream. Train with λ_D = λ_U = 1
                # (TRL's default) and say so; TRL's own checks (e.g. precompute on a stream) run as for the parent.
                self._notes.append(
                    "weighting auto: the training set is streamed (no length), so the class counts are unknown: "
                    f"λ_D={args.desirable_weight:g}, λ_U={args.undesirable_weight:g} (TRL's default); set weighting: "
                    "manual with desirable_weight/undesirable_weight to balance a stream"
                )
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        # Weights first (so TRL's own imbalance check sees them), from the raw rows: paired rows give one of each.
        columns = dataset.column_names
        if "label" in columns:
            n_desirable = sum(bool(x) for x in dataset["label"])
            self._set_class_weights(n_desirable, len(dataset) - n_desirable, args)
        elif "chosen" in columns and "rejected" in columns:
            self._set_class_weights(len(dataset), len(dataset), args)
        dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        # Then again from the prepared rows (TRL drops rows whose prompt fills max_length).
        labels = [bool(x) for x in dataset["label"]]
        n_desirable = sum(labels)
        if (n_desirable, len(labels) - n_desirable) != self.class_counts:
            self._set_class_weights(n_desirable, len(labels) - n_desirable, args)
        n_d, n_u = self.class_counts
        if args.weighting == "none":
            self._notes.append(f"weighting none (TRL): desirable_weight={self.desirable_weight:g}, "
                               f"undesirable_weight={self.undesirable_weight:g}; {n_d} desirable, {n_u} undesirable")
        elif min(n_d, n_u) == 0:
            self._notes.append(
                f"weighting {args.weighting}: only {'desirable' if n_d else 'undesirable'} rows are left after TRL "
                f"dropped the rows whose prompt fills max_length ({n_d} desirable, {n_u} undesirable): "
                f"λ_D={self.desirable_weight:.4g}, λ_U={self.undesirable_weight:.4g}"
            )
        else:
            ratio = kto_weight_ratio(self.desirable_weight, self.undesirable_weight, n_d, n_u)
            self._notes.append(
                f"weighting {args.weighting}: λ_D={self.desirable_weight:.4g}, λ_U={self.undesirable_weight:.4g} for "
                f"{n_d} desirable and {n_u} undesirable rows; λ_D·n_D/(λ_U·n_U) = {ratio:.3f}"
            )
        if args.mix_batches:
            dataset = self._mix_batches(dataset, labels, args)
        return dataset

    def _mix_batches(self, dataset, labels, args):
        batch_size = args.per_device_train_batch_size
        seed = args.data_seed if args.data_seed is not None else args.seed
        order, mixed, chunks = mixed_batch_order(labels, batch_size, seed)
        dataset = dataset.select(order)
        if self.calculate_KL and "KL_completion_ids" in dataset.column_names:
            # Rebuild TRL's KL completions for the new batches: rotate completions by one inside each batch.
            def rotate(examples):
                examples["KL_completion_ids"] = [examples["completion_ids"][-1]] + examples["completion_ids"][:-1]
                return examples

            dataset = dataset.remove_columns("KL_completion_ids").map(
                rotate, batched=True, batch_size=batch_size, desc="Rebuilding KL completions for mixed batches"
            )
        self._notes.append(
            f"mix_batches: training rows ordered (seed {seed}) so that {mixed} of {chunks} per-device batches of "
            f"{batch_size} hold both classes" + ("" if mixed == chunks else
                                                 " (the others: too few rows of the rarer class, or a last batch of 1)")
        )
        return dataset

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        column = self.args.weight_column
        if column and column not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, column]

    # -- loss --------------------------------------------------------------------------------------------------------
    def _compute_loss(self, model, inputs, return_outputs):
        inputs = dict(inputs)
        example_weights = inputs.pop(EXAMPLE_WEIGHT_KEY, None)
        if self.args.weighting == "none":
            result = super()._compute_loss(model, inputs, return_outputs)
            mode = "train" if self.model.training else "eval"
            kl = self._metrics[mode]["kl"][-1]
            log_weighting(self, mode, inputs["label"], torch.tensor(self.beta * kl), None)
            return result
        return self._compute_weighted_loss(model, inputs, example_weights, return_outputs)

    def _reference_logps(self, batch, model_kwargs, completion_labels, seq_len):
        """Reference log-probs of the completions and of the KL completions, as TRL's ``_compute_loss`` gets them."""
        if self.precompute_ref_logps:
            return batch["ref_logps"], batch["ref_KL_logps"] if self.calculate_KL else None
        ref_kwargs = {k: v for k, v in model_kwargs.items() if k != "output_router_logits"}
        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            if is_peft_model(self.model) and self.ref_model is None:
                unwrapped = self.accelerator.unwrap_model(self.model)
                with use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None):
                    ref_kl_logps = self._compute_kl_logps(self.model, batch)
                    outputs = self.model(**ref_kwargs, labels=completion_labels, fused_lm_head=True)
            else:
                ref_kl_logps = self._compute_kl_logps(self.ref_model, batch)
                outputs = self.ref_model(**ref_kwargs, labels=completion_labels, fused_lm_head=True)
        return outputs.log_probs[:, -seq_len:].sum(-1), ref_kl_logps

    def _compute_weighted_loss(self, model, inputs, example_weights, return_outputs):
        mode = "train" if self.model.training else "eval"
        device = self.accelerator.device
        batch = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}
        labels = torch.as_tensor(batch["label"], dtype=torch.bool, device=device)

        kl_logps = self._compute_kl_logps(model, batch)
        model_kwargs = {k: v for k, v in batch.items() if k not in _NON_MODEL_KEYS}
        model_kwargs["use_cache"] = False
        if self.aux_loss_enabled:
            model_kwargs["output_router_logits"] = True
        completion_labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
        outputs = model(**model_kwargs, labels=completion_labels, fused_lm_head=True)
        seq_len = batch["input_ids"].size(1) - 1  # prompt-learning PEFT prepends virtual tokens: keep the real ones
        policy_logps = outputs.log_probs[:, -seq_len:].sum(-1)
        ref_logps, ref_kl_logps = self._reference_logps(batch, model_kwargs, completion_labels, seq_len)

        if self.calculate_KL:
            kl = (kl_logps - ref_kl_logps).mean().detach()
            kl = self.accelerator.gather_for_metrics(kl).mean().clamp(min=0)
        else:
            kl = torch.zeros((), device=policy_logps.device)
        if example_weights is not None:
            example_weights = example_weights.to(policy_logps.device)
        loss, metrics = kto_weighted_loss(
            policy_logps, ref_logps, labels, kl, self.beta, self.desirable_weight, self.undesirable_weight,
            example_weights,
        )
        log_kto_metrics(self, mode, batch, outputs, labels, policy_logps, ref_logps, kl, seq_len)
        log_weighting(self, mode, labels, metrics["z_ref"], example_weights)

        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss
            self._metrics[mode]["aux_loss"].append(self.accelerator.gather_for_metrics(outputs.aux_loss).mean().item())
        if return_outputs:
            with torch.no_grad():
                outputs = model(**{k: v for k, v in model_kwargs.items() if k != "output_router_logits"})
            return loss, outputs
        return loss


class KTOWeightedMethod(Method):
    """kto-weighted's run hooks: unpaired or paired rows, usable example weights, both classes for ``auto``."""


    memory_profile = MemoryProfile(reference_forward=True, kl_batch=True, lm_head="fused")

    def length_rule(self, config):
        return kto_rule(config)

    def check_data(self, dataset, split, config, role):
        return check_kto_data(dataset, split, config, role)
