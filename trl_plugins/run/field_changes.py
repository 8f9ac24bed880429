"""Recipe keys that transformers, TRL or alignment-handbook renamed or removed, so that a recipe written for an older
version is read or refused with a hint instead of "unknown key". Docs: docs/plugins.md ("Keys from older versions").

A change with ``new`` (same meaning) is migrated with one printed line; one without names what to use instead. Each
entry cites the release that dropped the old name; tests/test_field_changes.py checks every entry against the
installed libraries (the old name gone, or still a deprecated alias where ``alias``; the new name present).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldChange:
    old: str
    since: str  # the release that renamed or removed ``old``
    new: str | None = None  # same meaning under this name: migrated
    hint: str = ""  # otherwise (or when ``keeps_meaning`` says no): what to use instead
    alias: bool = False  # the library still accepts ``old`` as a deprecated alias of ``new``
    keeps_meaning: Callable[[Any], bool] | None = None  # the values for which ``new`` means the same

    def migrates(self, value: Any) -> bool:
        return self.new is not None and (self.keeps_meaning is None or self.keeps_meaning(value))

    def message(self) -> str:
        if self.new and not self.hint:
            return f"renamed to {self.new!r} in {self.since}"
        return f"removed in {self.since}: {self.hint}"


def _ratio_below_one(value: Any) -> bool:
    try:
        return 0 <= float(value) < 1  # warmup_steps < 1 is a ratio of the training steps (transformers 5)
    except (TypeError, ValueError):
        return False


_TF5 = "transformers 5.0"
_REMOVE = "remove it"
CHANGES = (
    # transformers TrainingArguments (MIGRATION_GUIDE_V5.md, "Trainer"; evaluation_strategy: removed in 4.46).
    # fsdp_min_num_params / fsdp_transformer_layer_cls_to_wrap (removed in 5.0) are `accelerate launch` options: a
    # recipe key of that name goes to the launcher, as `trl sft --config` passes it (run/distributed.py).
    FieldChange("gradient_checkpointing", "transformers 5.25", "activation_checkpointing", alias=True),
    FieldChange("gradient_checkpointing_kwargs", "transformers 5.25", "activation_checkpointing_kwargs", alias=True),
    FieldChange("evaluation_strategy", "transformers 4.46", "eval_strategy"),
    FieldChange("warmup_ratio", _TF5, "warmup_steps", keeps_meaning=_ratio_below_one,
                hint="warmup_steps takes the ratio when below 1 (warmup_steps: 0.1); a ratio of 1 is warmup_steps: "
                     "the number of training steps"),
    FieldChange("per_gpu_train_batch_size", _TF5, "per_device_train_batch_size"),
    FieldChange("per_gpu_eval_batch_size", _TF5, "per_device_eval_batch_size"),
    FieldChange("no_cuda", _TF5, "use_cpu"),
    FieldChange("push_to_hub_token", _TF5, "hub_token"),
    FieldChange("push_to_hub_model_id", _TF5, hint="use hub_model_id (ORGANIZATION/NAME)"),
    FieldChange("push_to_hub_organization", _TF5, hint="use hub_model_id (ORGANIZATION/NAME)"),
    FieldChange("include_inputs_for_metrics", _TF5, hint="use include_for_metrics: [inputs]"),
    FieldChange("include_tokens_per_second", _TF5, hint="use include_num_input_tokens_seen"),
    FieldChange("tpu_metrics_debug", _TF5, hint="use debug: tpu_metrics_debug"),
    FieldChange("use_mps_device", _TF5, hint=f"{_REMOVE}: MPS is used when detected"),
    FieldChange("fp16_backend", _TF5, hint=f"{_REMOVE}: mixed precision always runs through torch.amp"),
    FieldChange("half_precision_backend", _TF5, hint=f"{_REMOVE}: mixed precision always runs through torch.amp"),
    FieldChange("use_legacy_prediction_loop", _TF5, hint=f"{_REMOVE}: evaluation always uses evaluation_loop"),
    FieldChange("logging_dir", _TF5, hint="set the TENSORBOARD_LOGGING_DIR environment variable (recipe key env:)"),
    FieldChange("jit_mode_eval", _TF5, hint="use torch_compile"),
    FieldChange("tpu_num_cores", _TF5, hint="set the TPU_NUM_CORES environment variable (recipe key env:)"),
    FieldChange("ray_scope", _TF5, hint="set the RAY_SCOPE environment variable (recipe key env:)"),
    FieldChange("past_index", _TF5, hint=_REMOVE),
    FieldChange("mp_parameters", _TF5, hint=_REMOVE),
    # TRL: ModelConfig (#4000 renamed, #4651 removed), SFTConfig (#2895, #3704), ScriptArguments (#4811), DPOConfig
    # (deprecated in #4969 with these replacements, removed in #3906; padding_value #4607; use_liger_loss #4364) and
    # KTOConfig (aligned with DPO in #4792, #4808, #4837, #4839, #4862, #4875, #5551).
    FieldChange("torch_dtype", "TRL 0.27", "dtype"),
    FieldChange("max_seq_length", "TRL 0.20", "max_length"),
    FieldChange("gradient_checkpointing_use_reentrant", "TRL 0.27",
                hint="use gradient_checkpointing_kwargs: {use_reentrant: true}"),
    FieldChange("max_prompt_length", "TRL 0.29 (DPO; KTO 0.27)",
                hint="prompts are no longer cut on their own: max_length bounds prompt + completion (cut as "
                     "truncation_mode says); filter overlong prompts from the dataset"),
    FieldChange("max_completion_length", "TRL 0.29 (DPO; KTO 0.27)", hint="use max_length"),
    FieldChange("label_pad_token_id", "TRL 0.29 (DPO; KTO 0.28)", hint=f"{_REMOVE}: it can no longer be set"),
    FieldChange("padding_value", "TRL 0.26 (DPO; KTO 0.28)", hint="use pad_token (the token as text)"),
    FieldChange("is_encoder_decoder", "TRL 0.27 (KTO)", hint=f"{_REMOVE}: encoder-decoder models are not supported"),
    FieldChange("ref_model_init_kwargs", "TRL 0.29 (DPO; KTO 0.28)",
                hint="load the reference model yourself and pass it as ref_model= (Python)"),
    FieldChange("reference_free", "TRL 0.29", hint="use a reference-free method (orpo here, TRL's CPO)"),
    FieldChange("rpo_alpha", "TRL 0.29", hint="add 'sft' to loss_type and give it the weight rpo_alpha in "
                                               "loss_weights"),
    FieldChange("tools", "TRL 0.29", hint="give the tools in the dataset (a tools column)"),
    FieldChange("use_logits_to_keep", "TRL 0.29", hint=f"{_REMOVE}: the trainer no longer uses it"),
    FieldChange("model_adapter_name", "TRL 0.29", hint=f"{_REMOVE}: only the default adapter is supported"),
    FieldChange("ref_adapter_name", "TRL 0.29", hint=f"{_REMOVE}: only the default adapter is supported"),
    FieldChange("force_use_ref_model", "TRL 0.29", hint=f"{_REMOVE}: a reference model you pass is always used"),
    FieldChange("generate_during_eval", "TRL 0.29 (DPO; KTO 1.2)", hint="use a callback that generates"),
    FieldChange("base_model_attribute_name", "TRL 0.29 (DPO; KTO 0.28)",
                hint=f"{_REMOVE}: the base model is found with get_decoder()"),
    FieldChange("use_liger_loss", "TRL 0.28", hint="use use_liger_kernel"),
    # alignment-handbook before its "Upgrade data mixer" (#221, commit 19f0345): its own DataArguments keys.
    FieldChange("preprocessing_num_workers", "alignment-handbook #221", "dataset_num_proc"),
    FieldChange("dataset_mixer", "alignment-handbook #221",
                hint="write the mixture as dataset_mixture: {datasets: [{id, config, split, columns, weight}], seed, "
                     "test_split_size} (the handbook's form since then) or TRL's datasets: [{path, split, ...}]"),
    FieldChange("dataset_splits", "alignment-handbook #221", hint="give each dataset's split in dataset_mixture:"),
    FieldChange("dataset_configs", "alignment-handbook #221", hint="give each dataset's config in dataset_mixture:"),
)
FIELD_CHANGES = {change.old: change for change in CHANGES}
