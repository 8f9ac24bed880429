"""LoRA/QLoRA presets: the tiers, the values they set, and what they turn into when a model loads."""

from __future__ import annotations

import pytest

from trl_plugins.errors import ConfigError
from trl_plugins.models.peft_presets import PRESETS, preset_values


def test_every_tier_exists_in_both_kinds():
    assert set(PRESETS) == {f"{k}-{gb}gb" for k in ("lora", "qlora") for gb in (8, 12, 16, 24)}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_shape(name):
    values = preset_values(name)
    assert values["use_peft"] and values["lora_target_modules"] == ["all-linear"]
    assert values["lora_alpha"] == 2 * values["lora_r"]
    assert values["activation_checkpointing"] and values["bf16"] and values["optim"] == "paged_adamw_8bit"
    assert values["per_device_train_batch_size"] * values["gradient_accumulation_steps"] == 16
    quantized = name.startswith("qlora")
    assert values.get("load_in_4bit", False) == quantized
    if quantized:
        assert values["bnb_4bit_quant_type"] == "nf4" and values["use_bnb_nested_quant"]


def test_rank_grows_with_memory():
    ranks = [preset_values(f"qlora-{gb}gb")["lora_r"] for gb in (8, 12, 16, 24)]
    assert ranks == sorted(ranks) and len(set(ranks)) == 4


def test_unknown_preset_suggests_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'qlora-16gb'"):
        preset_values("qlora-16")


def test_presets_are_copies():
    preset_values("lora-8gb")["lora_target_modules"].append("x")
    assert preset_values("lora-8gb")["lora_target_modules"] == ["all-linear"]


def test_qlora_preset_loads_a_4bit_model_with_lora(tmp_path, tiny_model_dir):
    """The preset's keys, through TRL's ModelConfig helpers, give a 4-bit NF4 model (bitsandbytes runs on CPU)."""
    import torch
    from peft import get_peft_model
    from trl import ModelConfig, get_peft_config, get_quantization_config

    values = preset_values("qlora-8gb")
    model_args = ModelConfig(
        model_name_or_path=tiny_model_dir,
        dtype="float32",  # CPU compute in this test; the preset's bf16 is for GPUs
        **{k: v for k, v in values.items() if k in ModelConfig.__dataclass_fields__ and k != "dtype"},
    )
    quant = get_quantization_config(model_args)
    assert quant.load_in_4bit and quant.bnb_4bit_quant_type == "nf4" and quant.bnb_4bit_use_double_quant
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, quantization_config=quant, dtype=torch.float32)
    model = get_peft_model(model, get_peft_config(model_args))
    assert any("Linear4bit" in type(m).__name__ for m in model.modules())
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert {"q_proj", "down_proj"} <= {part for n in trainable for part in n.split(".")}  # all-linear
