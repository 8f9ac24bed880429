"""KTO with class-imbalance weighting and mixed batches (Ethayarajh et al. 2024, arXiv:2402.01306).

The algorithm: for a prompt x and an unpaired completion y labelled desirable or undesirable,

    L = E[ w(y) · (1 - v(x, y)) ],   v = σ(β(r - z_0)) if y desirable,  σ(β(z_0 - r)) if undesirable,

with r = log π(y|x) - log π_ref(y|x), w(y) = λ_D or λ_U, and the reference point z_0 a detached batch estimate of
KL(π‖π_ref) from mismatched pairs (x_i with y_{i-1}), averaged over processes and clamped at 0. The paper (Eq. 8)
asks for λ_D·n_D / (λ_U·n_U) ∈ [1, 4/3]; TRL's KTOTrainer only warns when hand-set weights break it. The loss is
:func:`trl_plugins.losses.kto_weighted_loss`; the weights are :func:`trl_plugins.losses.kto_weights`.

What this trainer adds to TRL's ``KTOTrainer`` (it subclasses it; data, config fields, PEFT, reference handling,
precomputed reference log-probs and every argument are TRL's):

- ``weighting: auto`` (default) computes λ_D, λ_U from the training set's class counts so that the ratio lands at
  ``target_ratio`` (default 1, allowed [1, 4/3]), up-weighting only the rarer class. ``manual`` uses
  ``desirable_weight``/``undesirable_weight`` and warns when they break Eq. 8. ``none`` runs TRL's ``_compute_loss``
  unchanged (only extra metrics are logged).
- ``weight_column``: an optional per-example weight (e.g. feedback strength) that multiplies w(y).
- ``mix_batches`` (default true): TRL samples sequentially and builds the KL completions by rotating completions
  inside each per-device batch, so label-sorted data gives single-class batches and a degenerate z_0. The training
  set is ordered (seeded by ``data_seed`` or ``seed``) so that every per-device batch holds both classes whenever
  there are enough rows of the rarer class, and the KL completions are rebuilt for the new batches. The order is
  fixed for all epochs (TRL's sampler is sequential); the evaluation set keeps its order.
- Per step it logs ``z_ref`` (= β·z_0, comparable to the rewards), ``weights/desirable``/``weights/undesirable``
  (effective, with example weights), ``count/desirable``/``count/undesirable`` (rows in the step's batches) next to
  TRL's ``kl`` and ``rewards/chosen``/``rewards/rejected``.
- Paired data (prompt, chosen, rejected) is accepted: TRL's ``_prepare_dataset`` unpairs it (each pair gives one
  desirable and one undesirable row).

Departures from the paper: z_0 is TRL's per-batch estimate (the paper's code uses the same mismatched-pair batch
estimate); ``auto`` counts rows, not example weights.

Run it::

    trl-plugins train kto-weighted --config recipes/demo/kto_weighted.yaml          # CPU, embedded model and data
    accelerate launch --config_file recipes/accelerate_configs/single_gpu.yaml -m trl_plugins \\
        train kto-weighted --config recipes/qwen2.5-1.5b-instruct/kto_weighted/config_qlora.yaml
"""

from __future__ import annotations

import logging
import math
import random
import warnings
from dataclasses import dataclass, field
from numbers import Real

import torch
from datasets import Dataset
from trl import KTOConfig, KTOTrainer
from trl.trainer.kto_trainer import disable_gradient_checkpointing, is_peft_model, use_adapter

from ..losses import KTO_TARGET_RATIO_RANGE, kto_weight_ratio, kto_weighted_loss, kto_weights

logger = logging.getLogger(__name__)

EXAMPLE_WEIGHT_KEY = "kto_example_weight"  # batch key of the per-example weights (never passed to the model)
WEIGHTINGS = ("auto", "manual", "none")


class KTOWeightWarning(UserWarning):
    """Hand-set KTO class weights break the paper's imbalance rule (Eq. 8)."""


@dataclass
class KTOWeightedConfig(KTOConfig):
    r"""Configuration for :class:`KTOWeightedTrainer`: every :class:`trl.KTOConfig` field, plus:

    Parameters:
        weighting (`str`, defaults to `"auto"`): `auto` computes λ_D/λ_U from the class counts (`target_ratio`),
            `manual` uses `desirable_weight`/`undesirable_weight` and warns when they break Eq. 8, `none` is TRL.
        target_ratio (`float`, defaults to `1.0`): λ_D·n_D / (λ_U·n_U) for `auto`, in [1, 4/3].
        weight_column (`str` or `None`): dataset column of non-negative per-example weights multiplying w(y).
        mix_batches (`bool`, defaults to `True`): order the training set so every per-device batch holds both classes.
    """

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


def mixed_batch_order(labels, batch_size: int, seed: int) -> tuple[list[int], int, int]:
    """A seeded order of ``range(len(labels))`` whose consecutive chunks of ``batch_size`` rows hold both classes.

    The rarer class is spread over the chunks in proportion to their sizes (cumulative rounding), so a full chunk
    gets at least one rare row whenever there are at least as many rare rows as chunks; rows are shuffled inside
    each class and inside each chunk. Returns ``(order, mixed_chunks, chunks)``.
    """
    labels = [bool(x) for x in labels]
    n = len(labels)
    rng = random.Random(seed)
    desirable = [i for i, label in enumerate(labels) if label]
    undesirable = [i for i, label in enumerate(labels) if not label]
    rng.shuffle(desirable)
    rng.shuffle(undesirable)
    rare, common = (desirable, undesirable) if len(desirable) <= len(undesirable) else (undesirable, desirable)
    sizes = [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])
    order: list[int] = []
    seen = taken = mixed = 0
    for size in sizes:
        seen += size
        m = min(size, max(0, math.floor(len(rare) * seen / n + 0.5) - taken))
        chunk = rare[taken : taken + m] + common[len(order) - taken : len(order) - taken + size - m]
        taken += m
        mixed += 0 < m < size
        rng.shuffle(chunk)
        order += chunk
    assert sorted(order) == list(range(n)), "mixed_batch_order lost rows"
    return order, mixed, len(sizes)


class _WithExampleWeights:
    """Wraps a collator: adds the ``weight_column`` values of the examples as a float tensor under
    ``EXAMPLE_WEIGHT_KEY`` (when the examples have that column; the evaluation set may not)."""

    def __init__(self, collator, column: str):
        self.collator = collator
        self.column = column

    def __call__(self, examples):
        batch = self.collator(examples)
        if examples and self.column in examples[0]:
            batch[EXAMPLE_WEIGHT_KEY] = torch.tensor([float(e[self.column]) for e in examples], dtype=torch.float32)
        return batch


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
        if args is None:
            name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "model")
            args = KTOWeightedConfig(f"{str(name).rstrip('/').split('/')[-1]}-KTO-weighted")
        elif not isinstance(args, KTOWeightedConfig):
            raise TypeError(f"`args` must be a KTOWeightedConfig, got {type(args).__name__}")
        self._notes: list[str] = []
        self.class_counts: tuple[int, int] | None = None
        super().__init__(model, ref_model, args, *pos, **kwargs)
        if args.weight_column:
            self.data_collator = _WithExampleWeights(self.data_collator, args.weight_column)
        for note in self._notes:
            logger.info("kto-weighted: %s", note)
            self.accelerator.print(f"kto-weighted: {note}")

    # -- data ------------------------------------------------------------------------------------------------------
    def _set_class_weights(self, n_desirable: int, n_undesirable: int, args: KTOWeightedConfig) -> None:
        self.class_counts = (n_desirable, n_undesirable)
        if args.weighting == "auto":
            self.desirable_weight, self.undesirable_weight = kto_weights(n_desirable, n_undesirable, args.target_ratio)
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
                raise ValueError("weighting: auto needs a training set with a length (not streaming); use manual")
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
        elif min(n_d, n_u) > 0:
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
            self._log_weighting(mode, inputs["label"], torch.tensor(self.beta * kl), None)
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
        self._log_trl_metrics(mode, batch, outputs, labels, policy_logps, ref_logps, kl, seq_len)
        self._log_weighting(mode, labels, metrics["z_ref"], example_weights)

        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss
            self._metrics[mode]["aux_loss"].append(self.accelerator.gather_for_metrics(outputs.aux_loss).mean().item())
        if return_outputs:
            with torch.no_grad():
                outputs = model(**{k: v for k, v in model_kwargs.items() if k != "output_router_logits"})
            return loss, outputs
        return loss

    # -- metrics -----------------------------------------------------------------------------------------------------
    def _log_trl_metrics(self, mode, batch, outputs, labels, policy_logps, ref_logps, kl, seq_len):
        """The metrics TRL's KTOTrainer logs, under the same names and reductions across processes."""
        gather = self.accelerator.gather_for_metrics
        metrics = self._metrics[mode]
        metrics["kl"].append(kl.item())
        mask = batch["completion_mask"][:, 1:]
        if getattr(outputs, "entropy", None) is not None:
            tokens = gather(mask.sum()).sum()
            entropy = gather((outputs.entropy[:, -seq_len:].detach() * mask).sum()).sum()
            metrics["entropy"].append((entropy / tokens).item() if tokens > 0 else 0.0)
        if mode == "train":
            self._total_train_tokens += gather(batch["attention_mask"].sum()).sum().item() // self._tp_size
        metrics["num_tokens"] = [self._total_train_tokens]
        mean_logits = getattr(outputs, "mean_logits", None)
        rewards = self.beta * (policy_logps - ref_logps).detach()
        means = {}
        for name, rows in (("chosen", labels), ("rejected", ~labels)):
            if mean_logits is not None:
                row_mask = mask[rows].bool()
                total = gather(mean_logits[:, -seq_len:][rows][row_mask].sum()).sum().item()
                count = gather(row_mask.sum()).sum().item()
                if count > 0:
                    metrics[f"logits/{name}"].append(total / count)
            n = gather(rows.sum()).sum().item()
            if n > 0:
                means[name] = gather(rewards[rows].nansum()).nansum().item() / n
                metrics[f"rewards/{name}"].append(means[name])
                metrics[f"logps/{name}"].append(gather(policy_logps.detach()[rows].nansum()).nansum().item() / n)
        if len(means) == 2:
            metrics["rewards/margins"].append(means["chosen"] - means["rejected"])

    def _log_weighting(self, mode, labels, z_ref, example_weights):
        """z_ref, per-class row counts and effective weights of this batch (all processes)."""
        gather = self.accelerator.gather_for_metrics
        device = self.accelerator.device
        labels = torch.as_tensor(labels, dtype=torch.bool, device=device)
        metrics = self._metrics[mode]
        metrics["z_ref"].append(float(z_ref))
        for name, rows, weight in (
            ("desirable", labels, self.desirable_weight),
            ("undesirable", ~labels, self.undesirable_weight),
        ):
            count = gather(rows.sum()).sum().item()
            metrics[f"count/{name}"].append(count)
            if example_weights is None:
                metrics[f"weights/{name}"].append(float(weight))
            elif count > 0:
                total = gather(example_weights.to(device)[rows].sum()).sum().item()
                metrics[f"weights/{name}"].append(float(weight) * total / count)


# -- data check (run by the CLI before any model is loaded) -----------------------------------------------------------
def check_kto_data(dataset, split: str, config, role: str = "train") -> list[str]:
    """Unpaired (prompt, completion, label) or paired (prompt, chosen, rejected) rows; the weight column holds
    non-negative numbers; ``weighting: auto`` needs both classes in the training split."""
    from ..data import MAX_ROWS_NAMED, check_text_columns, iter_rows

    columns = list(dataset.column_names or [])
    unpaired = "completion" in columns or "label" in columns
    paired = "chosen" in columns and "rejected" in columns
    if unpaired or not paired:
        missing = [c for c in ("prompt", "completion", "label") if c not in columns]
        if missing:
            return [
                f"missing column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} (found: "
                f"{', '.join(columns) or 'none'}); kto-weighted expects prompt, completion, label (unpaired) "
                "or prompt, chosen, rejected (paired; the prompt may be implicit in conversational data)"
            ]
    problems: list[str] = []
    if paired and not unpaired:  # the generic check covered prompt only
        lines, _ = check_text_columns(dataset, "", [c for c in ("prompt", "chosen", "rejected") if c in columns])
        problems += [line.removeprefix(", ") for line in lines]
    column = getattr(config, "weight_column", None)
    if column:
        if column not in columns:
            return problems + [f"weight_column {column!r} is not a column (found: {', '.join(columns)})"]
        bad: dict[str, list[int]] = {}
        total = 0.0
        for row, values in iter_rows(dataset, [column]):
            value = values[column]
            if isinstance(value, bool) or not isinstance(value, Real):
                kind = f"not a number ({type(value).__name__})"
            elif math.isnan(value):
                kind = "NaN"
            elif math.isinf(value):
                kind = "infinite"
            elif value < 0:
                kind = "negative"
            else:
                total += value
                continue
            bad.setdefault(kind, []).append(row)
        for kind, rows in bad.items():
            named = ", ".join(map(str, rows[:MAX_ROWS_NAMED])) + (
                f" and {len(rows) - MAX_ROWS_NAMED} more" if len(rows) > MAX_ROWS_NAMED else "")
            problems.append(f"column {column!r} (weight_column): {kind} weight in row{'s' if len(rows) > 1 else ''} "
                            f"{named}; weights must be finite numbers >= 0")
        if not bad and total == 0:
            problems.append(f"column {column!r} (weight_column): every weight is 0, nothing would be learned")
    if role == "train" and getattr(config, "weighting", "auto") == "auto" and unpaired and "label" in columns:
        counts = [0, 0]
        for _, values in iter_rows(dataset, ["label"]):
            counts[bool(values["label"])] += 1
        if 0 in counts:
            which = "desirable (label true)" if counts[1] else "undesirable (label false)"
            problems.append(
                f"weighting: auto needs desirable and undesirable rows, but all {sum(counts)} rows are {which}; "
                "add rows of the other class, or set weighting: manual (or none)"
            )
    return problems
