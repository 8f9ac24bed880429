"""QLoRA on the CPU trains on the right gradients after an eval forward or a generation phase (trl_plugins/compat/bnb_cpu.py).

bitsandbytes 0.50 repacks 4-bit weights for its CPU inference kernel on the first eval forward (CPUs with AVX512-BF16,
as here) and the repacked layers have no backward: without the fix, the gradients below differ by ~100%."""

from __future__ import annotations

import pytest
import torch

from tiny import tiny_causal_lm, tiny_tokenizer

pytest.importorskip("bitsandbytes")


def _qlora_model(tmp_path):
    from peft import LoraConfig, get_peft_model
    from trl import ModelConfig

    from trl_plugins.models.loading import load_model

    tok = tiny_tokenizer()
    tiny_causal_lm(tok, hidden_size=64, intermediate_size=128).save_pretrained(tmp_path)  # 4-bit blocks of 64
    model = load_model(ModelConfig(model_name_or_path=str(tmp_path), load_in_4bit=True, dtype="float32",
                                   bnb_4bit_quant_type="nf4", use_bnb_nested_quant=True))
    torch.manual_seed(0)
    return tok, get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))


def _gradients(model, ids) -> dict:
    model.train()
    model.zero_grad()
    model(ids, labels=ids).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def _packed(model) -> int:
    return sum(bool(getattr(getattr(m.weight, "quant_state", None), "packing_format_for_cpu", False))
               for m in model.modules() if hasattr(m, "support_avx512bf16_for_cpu"))


def test_gradients_after_eval_forward_and_generation_equal_fresh_ones(tmp_path):
    from trl_plugins.sampling.generation import SamplingParams, TransformersBackend

    tok, model = _qlora_model(tmp_path)
    ids = torch.tensor([tok("the movie was good and the plot was very")["input_ids"]])
    fresh = _gradients(model, ids)
    assert all(g.abs().sum() > 0 for g in fresh.values())
    model.eval()
    with torch.no_grad():
        model(ids)
    assert _packed(model) == 0
    after_eval = _gradients(model, ids)
    TransformersBackend(model, tok).generate(["the movie was"], 2, SamplingParams(max_new_tokens=4), seed=0)
    after_generation = _gradients(model, ids)
    for name, g in fresh.items():
        torch.testing.assert_close(after_eval[name], g, rtol=1e-5, atol=1e-7, msg=name)
        torch.testing.assert_close(after_generation[name], g, rtol=1e-5, atol=1e-7, msg=name)


def test_a_layer_already_repacked_is_unpacked(tmp_path):
    """A model repacked before we saw it (e.g. a user evaluated it first) is unpacked; gradients are right again."""
    import bitsandbytes as bnb

    from trl_plugins.compat.bnb_cpu import keep_trainable

    tok, model = _qlora_model(tmp_path)
    ids = torch.tensor([tok("the movie was good")["input_ids"]])
    fresh = _gradients(model, ids)
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    if not bnb.functional.has_avx512bf16():
        pytest.skip("this CPU has no AVX512-BF16: bitsandbytes never repacks here")
    for layer in layers:
        layer.support_avx512bf16_for_cpu = True
    model.eval()
    with torch.no_grad():
        model(ids)
    assert _packed(model) == len(layers)
    wrong = _gradients(model, ids)
    assert max(_relative(wrong[n], g) for n, g in fresh.items()) > 0.1  # the bug this guards against (measured 0.74)
    assert keep_trainable(model) == len(layers) and _packed(model) == 0
    unpacked = _gradients(model, ids)
    # the inverse re-quantizes the nested scales from bf16: close (measured <= 0.4% of the norm), not bit-exact
    assert max(_relative(unpacked[n], g) for n, g in fresh.items()) < 0.01


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()
