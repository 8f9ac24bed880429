"""Merge a LoRA adapter into a plain checkpoint (loaded unquantized on the CPU), so a reward model trained with LoRA
or QLoRA loads with ``AutoModelForSequenceClassification`` alone (margin-rm's ``merge_adapters_on_save``)."""

from __future__ import annotations

import torch


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
