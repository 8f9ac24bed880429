"""Batched sampling from the current policy: the one generation mechanism of trl-plugins.

:class:`TransformersBackend` samples ``K`` completions per prompt; docs: docs/methods/sampling_engine.md ("Generation").
Two decode paths share its interface:

- **fast** (default, :mod:`.fast_generation`): each prompt prefilled once for its K sequences, finished sequences
  leave the batch at once and their rows are refilled with waiting prompts, KV cache written in place;
- **generate**: ``model.generate`` on length-sorted, left-padded batches with ``num_return_sequences=K`` (models the
  fast loop does not cover, ``fast_decode=False``, or ``compile=True``: static cache + ``torch.compile``).

For a LoRA ``PeftModel`` the adapters are merged for the phase and the weights restored bit for bit afterwards
(:mod:`.adapter_merge`). It works on plain models, LoRA/QLoRA ``PeftModel`` s and models wrapped by accelerate (pass
the unwrapped module). A backend samples what it is given, in this process; under several processes the engine
shares the prompts out and gathers the results (``engine.Shards``). ``backend.last_stats`` holds the last call's
numbers (tokens, decoded slots, seconds, tokens/s).

A backend is anything with ``generate(prompts, num_return_sequences, params, seed, progress, chat_kwargs)
-> list[list[Generation]]`` (``chat_kwargs``: per prompt, its row's ``tools``/``chat_template_kwargs``)
(outer list: one entry per prompt, in input order) and a ``last_stats`` dict (:class:`GenerationBackend`). Backends are
registered by name through the ``register_generation_backends`` hook — ``transformers`` (this class) in
``builtin.py`` like any plugin's — and a recipe picks one with ``generation_backend`` (:func:`make_backend`). Only the
engine's stages call a backend (``engine.py``; tests/test_layout.py checks it).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from ..formats import is_conversational
from .adapter_merge import merged_for_generation

logger = logging.getLogger(__name__)


def prompt_text(tokenizer, prompt, chat_kwargs: dict | None = None) -> str:
    """A prompt as the text the model sees: chat template + generation prompt for message lists (with the row's
    ``chat_kwargs``, see :func:`template_kwargs`)."""
    if is_conversational(prompt):
        return tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False, **(chat_kwargs or {}))
    return prompt


@dataclass
class SamplingParams:
    """How to sample. ``temperature == 0`` means greedy; ``top_k == 0`` and ``top_p == 1`` switch those filters off."""

    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    batch_size: int = 64  # sequences (prompts x K) decoded together
    # speed knobs (docs/methods/sampling_engine.md, "Generation"): same distributions, up to float rounding
    fast_decode: bool = True  # own decode loop: one prefill per prompt, finished rows leave, no decoding of padding
    refill: bool = True  # fast_decode: freed rows take waiting prompts (False: one batch at a time, rows only leave)
    merge_adapters: bool = True  # LoRA on a 16-bit base: merged in place for the phase, restored exactly after
    merge_quantized: bool | str = False  # LoRA on a 4/8-bit base: merged 16-bit copy of the adapted layers; "auto":
    # when it fits in the GPU's free memory beside the KV cache (adapter_merge.copy_fits)
    compile: bool = False  # model.generate with a static cache + torch.compile (replaces fast_decode)

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
    last_stats: dict  # the last generate call: see TransformersBackend.last_stats

    def generate(
        self, prompts: Sequence, num_return_sequences: int, params: SamplingParams, seed: int, progress: bool = False,
        chat_kwargs: Sequence[dict | None] | None = None,
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
    """Batched sampling with transformers models (see the module docstring).

    ``last_stats`` after each call: ``sequences``, ``generated_tokens`` (up to and including the first end-of-sequence
    token), ``decoded_slots`` (sequence-steps the model computed, padding after an end-of-sequence token included),
    ``seconds``, ``tokens_per_s``, ``path`` (``fast``/``generate``/``compile``) and ``merge`` (``inplace``/``copy``/
    ``none``): this process's numbers.
    """

    name = "transformers"

    def __init__(self, model, tokenizer):
        from ..compat.bnb_cpu import keep_trainable

        keep_trainable(model)  # the policy trains after generating: no CPU repacking of 4-bit layers (bnb_cpu.py)
        self.model = model
        self.tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
        self.calls = 0  # generate() calls so far
        self.last_stats: dict = {}
        self._warned: set[str] = set()

    def generate(self, prompts, num_return_sequences, params, seed, progress=False, chat_kwargs=None):
        """``chat_kwargs``: per prompt, its row's chat-template arguments (``formats.template_kwargs``) or None."""
        self.calls += 1
        return self._generate(list(prompts), num_return_sequences, params, seed, progress, chat_kwargs)

    def path(self, params) -> str:
        """The decode path ``params`` select for this model: ``fast``, ``generate`` or ``compile``."""
        from .fast_generation import unsupported

        if params.compile:
            base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
            quantizer = getattr(base, "hf_quantizer", None)
            if quantizer is None or quantizer.is_compileable:
                return "compile"
            self._warn("generation_compile is ignored: transformers does not compile this quantized model")
        if not params.fast_decode:
            return "generate"
        reason = unsupported(self.model)
        if reason is not None:
            self._warn(f"fast decoding is off for this model ({reason}): using model.generate")
            return "generate"
        return "fast"

    def _warn(self, message: str) -> None:
        if message not in self._warned:
            logger.warning(message)
            self._warned.add(message)

    def _generate(self, prompts, k, params, seed, progress, chat_kwargs=None):
        from tqdm.auto import tqdm

        if k < 1:
            raise ValueError(f"num_return_sequences must be >= 1, got {k}")
        if not prompts:  # e.g. a process whose share of a short prompt list is empty
            self.last_stats = {"sequences": 0, "generated_tokens": 0, "decoded_slots": 0, "seconds": 0.0,
                               "tokens_per_s": None, "path": None, "merge": None}
            return []
        tok, model = self.tokenizer, self.model
        texts = [prompt_text(tok, p, c) for p, c in zip(prompts, chat_kwargs or [None] * len(prompts))]
        special = not (prompts and is_conversational(prompts[0]))  # chat templates carry their own BOS
        eos = _eos_ids(model, tok)
        pad = tok.pad_token_id if tok.pad_token_id is not None else next(iter(eos), 0)
        path = self.path(params)
        bar = tqdm(total=len(prompts) * k, desc="generating", unit="seq", disable=not progress, leave=True)
        start = time.perf_counter()
        longest_prompt = max((len(t) for t in texts), default=0) // 3  # characters -> tokens, roughly: only a reserve for "auto"
        reserve = _kv_cache_bytes(model, params.batch_size, longest_prompt + params.max_new_tokens)
        with _generation_mode(model, tok), merged_for_generation(model, params.merge_adapters, params.merge_quantized,
                                                                 reserve) as merge:
            if path == "fast":
                rows, slots = self._fast(texts, special, k, params, seed, eos, pad, bar, start)
            else:
                rows, slots = self._generate_batches(texts, special, k, params, seed, eos, pad, bar, start, path)
        seconds = time.perf_counter() - start
        bar.close()
        decoded = tok.batch_decode([tokens for tokens, _ in rows], skip_special_tokens=True)
        results = []
        for i in range(len(prompts)):
            gens = []
            for j in range(k):
                tokens, finished = rows[i * k + j]
                text = decoded[i * k + j]
                gens.append(Generation(text=text if special else text.strip(), num_tokens=len(tokens),
                                       finished=finished))
            results.append(gens)
        generated = sum(len(tokens) for tokens, _ in rows)
        self.last_stats = {"sequences": len(rows), "generated_tokens": generated, "decoded_slots": slots,
                           "seconds": seconds, "tokens_per_s": generated / seconds if seconds > 0 else 0.0,
                           "path": path, "merge": merge}
        return results

    @staticmethod
    def _tick(bar, start, tokens):
        bar.update(1)
        bar.set_postfix_str(f"{tokens / max(time.perf_counter() - start, 1e-9):.1f} tok/s", refresh=False)

    def _fast(self, texts, special, k, params, seed, eos, pad, bar, start):
        """The fast loop; returns ``rows`` (tokens cut after the first EOS, finished) in (prompt, j) order, slots."""
        from .fast_generation import FastDecoder

        device = next(self.model.parameters()).device
        ids = self.tokenizer(texts, add_special_tokens=special)["input_ids"]
        generator = torch.Generator(device=device).manual_seed(seed * 100_003)
        decoder = FastDecoder(self.model, eos, pad, params, generator, refill=params.refill)
        done = [0]

        def on_finish(n):
            done[0] += n
            self._tick(bar, start, done[0])

        out = decoder.run(ids, k, on_finish)
        rows = [out[(i, j)] for i in range(len(texts)) for j in range(k)]
        return rows, decoder.stats.decoded_slots

    def _generate_batches(self, texts, special, k, params, seed, eos, pad, bar, start, path):
        """Today's path: ``model.generate`` per batch of length-sorted prompts (``compile``: static cache)."""
        tok, model = self.tokenizer, self.model
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths together: less padding
        per_call = max(1, params.batch_size // k)
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
        if path == "compile":
            from transformers.generation.configuration_utils import CompileConfig

            compile_config = CompileConfig()
            compile_config._compile_all_devices = True  # transformers compiles on CUDA only unless told
            kwargs.update(cache_implementation="static", compile_config=compile_config)
        rows: list = [None] * (len(texts) * k)
        slots = tokens_done = 0
        for batch_index, first in enumerate(range(0, len(order), per_call)):
            idx = order[first : first + per_call]
            enc = tok([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=special)
            enc = {key: value.to(device) for key, value in enc.items()}
            torch.manual_seed(seed * 100_003 + batch_index)  # each batch seeded on its own: reproducible
            out = model.generate(**enc, **kwargs)
            new = out[:, enc["input_ids"].shape[1] :].cpu()
            slots += new.numel()
            is_eos = torch.zeros_like(new, dtype=torch.bool)
            for e in eos:
                is_eos |= new == e
            has_eos = is_eos.any(1)
            full = torch.full_like(has_eos, new.shape[1], dtype=torch.long)
            ends = torch.where(has_eos, is_eos.int().argmax(1) + 1, full)
            for row, i in enumerate(idx):
                for j in range(k):
                    r = row * k + j
                    rows[i * k + j] = (new[r, : int(ends[r])].tolist(), bool(has_eos[r]))
                    tokens_done += int(ends[r])
                    self._tick(bar, start, tokens_done)
        return rows, slots


def _kv_cache_bytes(model, sequences: int, tokens: int) -> int:
    """A rough KV-cache size (16-bit) for ``sequences`` x ``tokens``: what ``merge_quantized: auto`` keeps free."""
    from ..planning.memory_architectures import Decoder

    config = getattr(model, "config", None)
    try:
        decoder = Decoder.from_config(config.to_dict())
    except (AttributeError, ValueError, TypeError):  # not a config the planner reads: no reserve
        return 0
    return int(decoder.kv_cache_bytes(sequences * tokens, bytes_per_value=2))


def make_backend(name: str, model, tokenizer) -> GenerationBackend:
    """The registered generation backend ``name`` (``register_generation_backends`` hook; built in: ``transformers``)
    for ``model``: ``backend(model, tokenizer)``."""
    from ..registry import get_registry

    return get_registry().generation_backend(name).load()(model, tokenizer)
