"""4-bit layers kept trainable on the CPU: bitsandbytes' inference repacking turned off for models we train.

bitsandbytes 0.50, on CPUs with AVX512-BF16, repacks a ``Linear4bit`` weight for its inference kernel the first time
the layer runs in eval mode without gradients, and never packs it back. Every later forward, training ones included,
then goes through ``gemv_4bit``, which has no autograd formula: the gradient through the frozen 4-bit weight is
silently dropped, so the LoRA layers train on wrong gradients (measured on a 2-layer model after one eval forward:
off by up to 74% of their norm, most by 20-50%). A sampling trainer generates (eval) before each fine-tuning
phase, and any trainer with ``eval_strategy`` evaluates between steps, so QLoRA on the CPU trained wrongly after its
first eval. :func:`keep_trainable` turns the repacking off on a model's 4-bit layers (the forward then dequantizes, in
training and eval alike); a layer already repacked is unpacked with bitsandbytes' own inverse. GPUs never repack.
Test: ``tests/test_bnb_cpu.py``.
"""

from __future__ import annotations


def keep_trainable(model) -> int:
    """Turn off bitsandbytes' CPU inference repacking on every 4-bit layer of ``model``; returns how many layers."""
    layers = [m for m in model.modules() if hasattr(m, "support_avx512bf16_for_cpu")]
    for layer in layers:
        layer.support_avx512bf16_for_cpu = False
        state = getattr(layer.weight, "quant_state", None)
        if getattr(state, "packing_format_for_cpu", False):
            from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

            layer.weight.data, layer.weight.quant_state = _convert_weight_packed_for_cpu_inverse(layer.weight.data, state)
    return len(layers)
