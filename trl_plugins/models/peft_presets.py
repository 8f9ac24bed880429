"""LoRA / QLoRA presets that fit one consumer GPU (8, 12, 16 or 24 GB), selected in a recipe with
``peft_preset: qlora-24gb``.

A preset is a set of ordinary recipe keys (TRL ``ModelConfig`` and training-config fields). It fills in what the
recipe and the command line leave unset: any key written in the recipe or passed as ``--key value`` wins.

Every preset: LoRA on all linear layers (``all-linear``), dropout 0.05, gradient checkpointing, bf16, paged 8-bit
AdamW and an effective batch of 16 (per-device batch x gradient accumulation). ``qlora-*`` adds 4-bit NF4 weights
with double quantization and bf16 compute. Rank grows with the memory tier (alpha = 2 x rank).

Sizing, planned by ``trl-plugins plan`` (docs/memory.md) for ORPO (two sequences per example) at max_length 1024 with
each preset's own batch: ``qlora-8/12/16/24gb`` hold a 7-8B model at 5.2-6.6 / 6.5-8.0 / 9.1-10.5 / 14.3-15.8 GiB
(54-83% of the tier); ``lora-*`` keep 16-bit weights: a 3B model plans at 6.9 / 7.9 / 10.2 / 14.5 GiB, a 7B model
fits no tier. Smaller models leave room, so the shipped recipes raise the batch or max_length over the preset's and
state their planned peak in their header; ``trl-plugins plan NAME --config X --gpu 24GB`` sizes any other run.
"""

from __future__ import annotations

import difflib

from ..errors import ConfigError

_COMMON = {
    "use_peft": True,
    "lora_target_modules": ["all-linear"],
    "lora_dropout": 0.05,
    "activation_checkpointing": True,
    "bf16": True,
    "optim": "paged_adamw_8bit",
}
_QUANT = {
    "load_in_4bit": True,
    "bnb_4bit_quant_type": "nf4",
    "use_bnb_nested_quant": True,
    "dtype": "bfloat16",  # also the 4-bit compute dtype (TRL's get_quantization_config uses model dtype)
}
_TIERS = {  # GB: (rank, per-device batch, gradient accumulation)
    8: (8, 1, 16),
    12: (16, 2, 8),
    16: (32, 4, 4),
    24: (64, 8, 2),
}


def _preset(quantized: bool, gigabytes: int) -> dict:
    rank, batch, accumulation = _TIERS[gigabytes]
    values = dict(_COMMON)
    values.update(_QUANT if quantized else {"dtype": "bfloat16"})
    values.update(
        lora_r=rank,
        lora_alpha=2 * rank,
        per_device_train_batch_size=batch,
        per_device_eval_batch_size=batch,
        gradient_accumulation_steps=accumulation,
    )
    return values


PRESETS: dict[str, dict] = {
    f"{kind}-{gb}gb": _preset(kind == "qlora", gb) for kind in ("qlora", "lora") for gb in sorted(_TIERS)
}


def preset_values(name: str) -> dict:
    """The recipe keys a preset sets; unknown names are a one-line :class:`ConfigError` with a suggestion."""
    key = name.strip().lower()
    if key not in PRESETS:
        close = difflib.get_close_matches(key, PRESETS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown peft_preset {name!r}{hint} (available: {', '.join(PRESETS)})")
    return {k: (list(v) if isinstance(v, list) else v) for k, v in PRESETS[key].items()}
