"""The generation backend: the fast decode loop against ``model.generate``, its sampler against the formula, and LoRA
merging for the generation phase (outputs equal to the unmerged model's, weights bit-identical afterwards)."""

from __future__ import annotations

import random

import pytest
import torch

from trl_plugins.sampling import fast_generation
from trl_plugins.sampling.adapter_merge import merged_for_generation
from trl_plugins.sampling.generation import SamplingParams, TransformersBackend

from tiny import WORDS, tiny_causal_lm, tiny_tokenizer

GENERATE = {"fast_decode": False, "merge_adapters": False}  # today's path: model.generate, adapter unmerged


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only add synchronisation on a shared CPU
    yield
    torch.set_num_threads(threads)


def eos_prone_model(tok, seed: int = 0):
    """The tiny random Llama with a stronger end-of-sequence row: greedy sequences end after 1 to 16 tokens."""
    model = tiny_causal_lm(tok, seed=seed)
    with torch.no_grad():
        model.lm_head.weight[tok.eos_token_id] *= 2.0
    return model


def word_prompts(n: int, seed: int = 0, longest: int = 12) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, longest))) for _ in range(n)]


def run(model, tok, prompts, k=1, seed=0, **params):
    backend = TransformersBackend(model, tok)
    out = backend.generate(prompts, k, SamplingParams(**{"max_new_tokens": 16, "temperature": 0.0, **params}), seed)
    return [[(g.text, g.num_tokens, g.finished) for g in gens] for gens in out], backend


def lora(model, seed: int = 1):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)  # init_lora_weights=False: B is random, so the adapter changes the outputs
    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))


def snapshot(model) -> dict[str, torch.Tensor]:
    return {n: t.detach().clone() for n, t in model.state_dict().items()}


def tensors(model) -> dict[str, torch.Tensor]:
    """Parameters, buffers and 4-bit quantization constants, read without state_dict()."""
    out = {n: t.detach().clone() for n, t in list(model.named_parameters()) + list(model.named_buffers())}
    for name, param in model.named_parameters():
        state = getattr(param, "quant_state", None)
        if state is not None:
            out[name + ".absmax"] = state.absmax.detach().clone()
    return out


def assert_bit_identical(before, model):
    after = model.state_dict()
    assert after.keys() == before.keys()
    for name, tensor in before.items():
        assert torch.equal(after[name], tensor), f"{name} changed"


@pytest.mark.parametrize("refill", [True, False])
def test_fast_greedy_equals_generate_and_decodes_no_padding(refill):
    tok = tiny_tokenizer()
    model = eos_prone_model(tok)
    prompts = word_prompts(24)
    today, slow = run(model, tok, prompts, batch_size=8, **GENERATE)
    fast, quick = run(model, tok, prompts, batch_size=8, refill=refill)
    assert fast == today
    finished = sum(g[0][2] for g in today)
    assert 0 < finished < len(prompts)  # some sequences end early, some run to max_new_tokens
    assert slow.last_stats["path"] == "generate" and quick.last_stats["path"] == "fast"
    assert quick.last_stats["generated_tokens"] == slow.last_stats["generated_tokens"] == sum(g[0][1] for g in today)
    # the fast path computes exactly the kept tokens; generate decodes padding after EOS until its batch ends
    assert quick.last_stats["decoded_slots"] == quick.last_stats["generated_tokens"]
    assert slow.last_stats["decoded_slots"] > quick.last_stats["decoded_slots"]


def test_fast_greedy_equals_generate_conversational_and_cache_moves(monkeypatch):
    """Chat-templated prompts; SLACK=0 makes the cache window move back to the left edge over and over."""
    monkeypatch.setattr(fast_generation, "SLACK", 0)
    tok = tiny_tokenizer()
    model = eos_prone_model(tok, seed=3)
    prompts = [[{"role": "user", "content": p}] for p in word_prompts(20, seed=1, longest=20)]
    today, _ = run(model, tok, prompts, batch_size=4, **GENERATE)
    fast, backend = run(model, tok, prompts, batch_size=4)
    assert fast == today and backend.last_stats["path"] == "fast"


def test_fast_sampling_is_seeded_and_computes_only_live_sequences():
    tok = tiny_tokenizer()
    model = eos_prone_model(tok)
    prompts = word_prompts(10, seed=2)
    rows = []  # (sequences, positions) of every forward the model runs
    model.register_forward_pre_hook(lambda m, args, kwargs: rows.append(tuple(kwargs["input_ids"].shape)),
                                    with_kwargs=True)
    a, backend = run(model, tok, prompts, k=4, seed=5, temperature=1.0, batch_size=8)
    prefill, decode = [r for r, n in rows if n > 1], [r for r, n in rows if n == 1]
    b, _ = run(model, tok, prompts, k=4, seed=5, temperature=1.0, batch_size=8)
    c, _ = run(model, tok, prompts, k=4, seed=6, temperature=1.0, batch_size=8)
    assert a == b and a != c
    assert all(len({g[0] for g in gens}) > 1 for gens in a)  # the K samples of a prompt are drawn independently
    assert backend.last_stats["sequences"] == 40 and all(len(gens) == 4 for gens in a)
    # measured on the model: each prompt is prefilled once for its K samples; at most batch_size sequences decode
    # together; a decode step computes live sequences only (every token but the first of each sequence, which its
    # prompt's prefill gives)
    assert sum(prefill) == len(prompts) and max(decode) == 8
    assert sum(decode) == sum(t for gens in a for _, t, _ in gens) - 40 == backend.last_stats["generated_tokens"] - 40


@pytest.mark.parametrize("temperature,top_k,top_p,penalty", [(1.0, 0, 1.0, None), (0.7, 6, 1.0, None),
                                                            (1.0, 0, 0.9, 3.0)])
def test_fast_sampler_matches_the_distribution(temperature, top_k, top_p, penalty):
    """First token: frequencies of 8000 samples vs the processed softmax; second token: conditioned on the first."""
    from transformers.generation.logits_process import (
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, seed=4).eval()
    with torch.no_grad():
        model.lm_head.weight *= 15.0  # a peaked distribution: a few likely tokens, so frequencies are measurable

    def expected(history, penalty=penalty):
        with torch.no_grad():
            scores = model(torch.tensor([history])).logits[:, -1].float()
        if penalty:
            scores = RepetitionPenaltyLogitsProcessor(penalty)(torch.tensor([history]), scores)
        for warper in [TemperatureLogitsWarper(temperature)] + ([TopKLogitsWarper(top_k)] if top_k else []) + (
                [TopPLogitsWarper(top_p)] if top_p < 1 else []):
            scores = warper(torch.tensor([history]), scores)
        return torch.softmax(scores, -1)[0]

    k = 8000
    tolerance = 4.5 * (0.25 / k) ** 0.5 + 1e-3  # > 4 standard deviations of any frequency of k samples
    params = SamplingParams(max_new_tokens=2, temperature=temperature, top_k=top_k, top_p=top_p, batch_size=k)
    ids = tok("the movie was")["input_ids"]
    if penalty:  # the prompt word whose repetition penalty changes the next-token distribution most
        model.generation_config.repetition_penalty = penalty
        candidates = [ids + [tok.convert_tokens_to_ids(w)] for w in WORDS]
        effect = [(expected(c) - expected(c, None)).abs().max() for c in candidates]
        best = max(range(len(candidates)), key=lambda i: effect[i])
        assert effect[best] > 2.5 * tolerance  # a sampler without the penalty fails this test
        ids = candidates[best]
    decoder = fast_generation.FastDecoder(model, {tok.eos_token_id}, tok.pad_token_id, params,
                                          torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = decoder.run([ids], k)
    samples = [out[(0, j)][0] for j in range(k)]

    def check(samples, probs):
        counts = torch.bincount(torch.tensor(samples), minlength=probs.numel()).float()
        tolerance = 4.5 * (0.25 / len(samples)) ** 0.5 + 1e-3
        assert (counts / len(samples) - probs).abs().max() < tolerance
        assert counts[probs == 0].sum() == 0  # filtered tokens are never drawn

    first = [s[0] for s in samples]
    check(first, expected(ids))
    common = max(set(first), key=first.count)
    assert common != tok.eos_token_id
    check([s[1] for s in samples if s[0] == common], expected(ids + [common]))


def test_unsupported_generation_config_uses_generate():
    tok = tiny_tokenizer()
    model = eos_prone_model(tok)
    model.generation_config.no_repeat_ngram_size = 2
    prompts = word_prompts(6, seed=3)
    today, _ = run(model, tok, prompts, batch_size=4, **GENERATE)
    fast, backend = run(model, tok, prompts, batch_size=4)
    assert backend.last_stats["path"] == "generate" and fast == today


def test_lora_merged_in_place_equals_unmerged_and_restores_weights_exactly():
    tok = tiny_tokenizer()
    model = lora(eos_prone_model(tok))
    prompts = word_prompts(12, seed=4)
    with model.disable_adapter():
        base_only, _ = run(model, tok, prompts, batch_size=4, **GENERATE)
    before = snapshot(model)
    unmerged, _ = run(model, tok, prompts, batch_size=4, **GENERATE)
    merged, backend = run(model, tok, prompts, batch_size=4)
    assert backend.last_stats["merge"] == "inplace"
    assert merged == unmerged != base_only  # the adapter matters, and merging it changes nothing
    assert_bit_identical(before, model)  # base weights are the originals, not W + delta - delta
    assert not any(getattr(m, "merged", False) for m in model.modules())
    # the same in bf16, where W + delta - delta is visibly off: restored bit for bit all the same
    model16 = lora(eos_prone_model(tok)).to(torch.bfloat16)
    before16 = snapshot(model16)
    drifted = lora(eos_prone_model(tok)).to(torch.bfloat16)  # peft's own merge and unmerge, for comparison
    drifted.merge_adapter()
    drifted.unmerge_adapter()
    assert any(not torch.equal(before16[n], t) for n, t in drifted.state_dict().items())  # the drift
    run(model16, tok, prompts, batch_size=4)
    assert_bit_identical(before16, model16)


def test_lora_on_4bit_base_merged_copy_equals_unmerged(tmp_path):
    pytest.importorskip("bitsandbytes")
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, hidden_size=64, intermediate_size=128)  # bitsandbytes' CPU kernel: blocks of 64
    with torch.no_grad():
        model.lm_head.weight[tok.eos_token_id] *= 2.0
    model.save_pretrained(tmp_path)
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32,
                               bnb_4bit_use_double_quant=True)
    model = lora(AutoModelForCausalLM.from_pretrained(tmp_path, quantization_config=quant, dtype=torch.float32))
    prompts = word_prompts(12, seed=5)
    unmerged, _ = run(model, tok, prompts, batch_size=4, **GENERATE)
    # after a first eval forward (the backend keeps bitsandbytes from repacking 4-bit weights for its CPU kernel,
    # trl_plugins/compat/bnb_cpu.py), the tensors themselves must not change
    before = tensors(model)
    modules = dict(model.named_modules())
    fast_unmerged, plain = run(model, tok, prompts, batch_size=4)
    merged, backend = run(model, tok, prompts, batch_size=4, merge_quantized=True)
    assert plain.last_stats["merge"] == "none" and backend.last_stats["merge"] == "copy"
    assert backend.path(SamplingParams(compile=True)) == "fast"  # transformers does not compile bnb models
    assert TransformersBackend(tiny_causal_lm(tok), tok).path(SamplingParams(compile=True)) == "compile"
    assert fast_unmerged == unmerged
    # the 4-bit layer and the merged 16-bit copy round differently: equal up to rounding
    assert sum(a == b for a, b in zip(merged, unmerged)) >= 10
    ids = torch.tensor([tok("the movie was good and the plot was very")["input_ids"]])
    with torch.no_grad():
        logits = model(ids).logits
        with merged_for_generation(model, merge_quantized=True) as plan:
            merged_logits = model(ids).logits
        with model.disable_adapter():
            base_logits = model(ids).logits
    assert plan == "copy"
    tolerance = 0.01 * logits.abs().max()
    assert (merged_logits - logits).abs().max() < tolerance < (base_logits - logits).abs().max() / 5
    after = tensors(model)
    assert after.keys() == before.keys() and all(torch.equal(after[n], t) for n, t in before.items())
    assert all(modules[name] is module for name, module in model.named_modules())  # the original modules are back
