"""Batched sampling from the current policy: the one generation mechanism of trl-plugins.

:class:`TransformersBackend` samples ``K`` completions per prompt with ``model.generate`` — prompts sorted by length
and batched with left padding, the KV cache on, ``num_return_sequences=K`` so each prompt is encoded once, chat
templates applied to conversational prompts. It works on plain models, LoRA/QLoRA ``PeftModel`` s (the adapter is
active) and models wrapped by accelerate (pass the unwrapped module). Under several processes each one samples its
share of the prompts and the results are gathered, so every process sees the same table.

A backend is anything with ``generate(prompts, num_return_sequences, params, seed) -> list[list[Generation]]``
(outer list: one entry per prompt, in input order). A vLLM backend can implement that and be selected with
``generation_backend``; none ships here because none is tested here.

:func:`generate` is the one-completion-per-prompt convenience used by the demos and evaluation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch


def is_conversational(value) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict) and "role" in value[0]


def prompt_text(tokenizer, prompt) -> str:
    """A prompt as the text the model sees: chat template + generation prompt for message lists."""
    if is_conversational(prompt):
        return tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    return prompt


@dataclass
class SamplingParams:
    """How to sample. ``temperature == 0`` means greedy; ``top_k == 0`` and ``top_p == 1`` switch those filters off."""

    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    batch_size: int = 64  # sequences (prompts x K) per generate call

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0 or self.batch_size < 1:
            raise ValueError("top_k must be >= 0 and the generation batch size >= 1")


@dataclass
class Generation:
    text: str
    num_tokens: int  # generated tokens up to and including the first end-of-sequence token
    finished: bool  # ended with an end-of-sequence token (not cut at max_new_tokens)


class GenerationBackend(Protocol):
    name: str

    def generate(
        self, prompts: Sequence, num_return_sequences: int, params: SamplingParams, seed: int, progress: bool = False
    ) -> list[list[Generation]]: ...


def _eos_ids(model, tokenizer) -> set[int]:
    ids = set()
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (config_eos, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return ids


@contextlib.contextmanager
def _generation_mode(model, tokenizer):
    """Eval mode and left padding for the duration; both restored afterwards."""
    was_training = model.training
    side = tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"
    try:
        with torch.no_grad():
            yield
    finally:
        tokenizer.padding_side = side
        if was_training:
            model.train()


class TransformersBackend:
    """``model.generate``-based batched sampling (see the module docstring)."""

    name = "transformers"

    def __init__(self, model, tokenizer, accelerator=None):
        self.model = model
        self.tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
        self.accelerator = accelerator
        self.generate_calls = 0  # number of model.generate calls so far (tests count these)

    def generate(self, prompts, num_return_sequences, params, seed, progress=False):
        acc = self.accelerator
        if acc is not None and acc.num_processes > 1:
            from accelerate.utils import gather_object

            mine = list(range(acc.process_index, len(prompts), acc.num_processes))
            local = self._generate([prompts[i] for i in mine], num_return_sequences, params, seed + acc.process_index,
                                   progress and acc.is_main_process)
            gathered = gather_object([(i, gens) for i, gens in zip(mine, local)])
            results = [None] * len(prompts)
            for i, gens in gathered:
                results[i] = gens
            return results
        return self._generate(list(prompts), num_return_sequences, params, seed, progress)

    def _generate(self, prompts, k, params, seed, progress):
        from tqdm.auto import tqdm

        if k < 1:
            raise ValueError(f"num_return_sequences must be >= 1, got {k}")
        tok, model = self.tokenizer, self.model
        texts = [prompt_text(tok, p) for p in prompts]
        special = not (prompts and is_conversational(prompts[0]))  # chat templates carry their own BOS
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths together: less padding
        per_call = max(1, params.batch_size // k)
        eos = _eos_ids(model, tok)
        pad = tok.pad_token_id if tok.pad_token_id is not None else next(iter(eos), 0)
        device = next(model.parameters()).device
        sampling = params.temperature > 0
        kwargs = dict(
            do_sample=sampling,
            max_new_tokens=params.max_new_tokens,
            num_return_sequences=k,
            pad_token_id=pad,
            eos_token_id=sorted(eos) or None,
            use_cache=True,
        )
        if sampling:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        results: list[list[Generation] | None] = [None] * len(prompts)
        bar = tqdm(total=len(prompts) * k, desc="generating", unit="seq", disable=not progress, leave=False)
        with _generation_mode(model, tok):
            for batch_index, start in enumerate(range(0, len(order), per_call)):
                idx = order[start : start + per_call]
                enc = tok([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=special)
                enc = {key: value.to(device) for key, value in enc.items()}
                torch.manual_seed(seed * 100_003 + batch_index)  # each batch seeded on its own: reproducible
                out = model.generate(**enc, **kwargs)
                self.generate_calls += 1
                new = out[:, enc["input_ids"].shape[1] :].cpu()
                is_eos = torch.zeros_like(new, dtype=torch.bool)
                for e in eos:
                    is_eos |= new == e
                has_eos = is_eos.any(1)
                first = torch.where(has_eos, is_eos.int().argmax(1) + 1, torch.full_like(has_eos, new.shape[1], dtype=torch.long))
                decoded = tok.batch_decode(new, skip_special_tokens=True)
                for row, i in enumerate(idx):
                    results[i] = [
                        Generation(
                            text=decoded[row * k + j].strip() if not special else decoded[row * k + j],
                            num_tokens=int(first[row * k + j]),
                            finished=bool(has_eos[row * k + j]),
                        )
                        for j in range(k)
                    ]
                bar.update(len(idx) * k)
        bar.close()
        return results  # type: ignore[return-value]


def make_backend(name: str, model, tokenizer, accelerator=None) -> GenerationBackend:
    if name == "transformers":
        return TransformersBackend(model, tokenizer, accelerator)
    raise ValueError(f"unknown generation backend {name!r} (available: transformers)")


def generate(
    model,
    tokenizer,
    prompts: Sequence,
    max_new_tokens: int = 48,
    temperature: float = 0.7,
    top_p: float = 1.0,
    batch_size: int = 32,
    seed: int = 0,
    top_k: int = 0,
) -> list[str]:
    """Sample one completion per prompt (batched, left padding); returns the decoded, stripped completions."""
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                            batch_size=batch_size)
    out = TransformersBackend(model, tokenizer).generate(list(prompts), 1, params, seed)
    return [gens[0].text.strip() for gens in out]
