"""The decode loop of the fast generation path: no compute on finished sequences, one prefill per prompt.

Docs: docs/methods/sampling_engine.md (section "Generation"); used by :class:`.generation.TransformersBackend`;
tests: tests/test_generation.py; benchmark: benchmarks/sampling_engine.py.

Differences from ``model.generate(num_return_sequences=K)`` on a padded batch:

- each prompt is prefilled **once** and its KV-cache rows are copied to its K sequences (``generate`` runs the prompt
  K times);
- a sequence that produced an end-of-sequence token (or reached ``max_new_tokens``) **leaves the batch** at once
  (``generate`` keeps decoding padding until the longest sequence of the batch ends), and with ``refill`` its row is
  given to waiting prompts, so the batch stays full until the prompts run out;
- the KV cache is preallocated (``_SlotLayer``) and written in place instead of being concatenated at every step.

Every sequence keeps its own positions and attention mask, so rows of different lengths share the batch (right
aligned, left padding). Sampling applies the same logits processors as ``generate`` (repetition penalty from the
model's generation config, temperature, top-k, top-p) and draws from one ``torch.Generator`` per call: the same seed
and settings give the same samples. Models whose cache is not a plain full-attention cache (sliding window, hybrid,
linear attention) or whose generation config asks for other processors are left to ``model.generate``
(:func:`unsupported`).
"""

from __future__ import annotations

import inspect
from collections import deque
from dataclasses import dataclass, field

import torch

# generation-config fields that add a logits processor this loop does not implement, with their neutral values
_UNSUPPORTED = {"no_repeat_ngram_size": (None, 0), "bad_words_ids": (None,), "min_length": (None, 0),
                "min_new_tokens": (None, 0), "sequence_bias": (None,), "suppress_tokens": (None,),
                "begin_suppress_tokens": (None,), "forced_bos_token_id": (None,), "forced_eos_token_id": (None,),
                "exponential_decay_length_penalty": (None,), "epsilon_cutoff": (None, 0.0), "eta_cutoff": (None, 0.0),
                "min_p": (None,), "typical_p": (None, 1.0), "top_h": (None,), "guidance_scale": (None, 1.0),
                "encoder_repetition_penalty": (None, 1.0), "renormalize_logits": (None, False),
                "watermarking_config": (None,), "num_beams": (None, 1)}


def unsupported(model) -> str | None:
    """Why ``model`` needs ``model.generate`` instead of this loop (one line), or None."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    config = getattr(model, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return "not a decoder-only model"
    peft_config = getattr(model, "active_peft_config", None)
    if getattr(peft_config, "is_prompt_learning", False):
        return f"PEFT {peft_config.peft_type.value.lower()} adds virtual tokens this loop does not cache"
    try:
        layers = DynamicCache(config=config).layers
    except Exception as exc:  # noqa: BLE001 - any failure means: not a model this loop knows
        return f"no standard cache for this config ({exc})"
    if any(type(layer) is not DynamicLayer for layer in layers):
        return "its cache is not a plain full-attention cache (sliding window / hybrid layers)"
    generation_config = getattr(model, "generation_config", None)
    for name, neutral in _UNSUPPORTED.items():
        value = getattr(generation_config, name, None)
        if value not in neutral:
            return f"its generation config sets {name}={value!r}"
    return None


SLACK = 64  # spare cache columns: the window moves back to the left edge once every SLACK steps at most


class _Window:
    """Columns shared by every layer: live rows ``[0, rows)``, live columns ``[start, end)`` (right aligned)."""

    def __init__(self):
        self.rows = self.start = self.end = 0


def _slot_layer_class():
    from transformers.cache_utils import DynamicLayer

    class _SlotLayer(DynamicLayer):
        """One layer's KV cache in preallocated ``[rows, heads, columns, dim]`` buffers, written in place."""

        def __init__(self, window: _Window, keys: torch.Tensor, values: torch.Tensor):
            super().__init__()
            self.window, self.k, self.v = window, keys, values
            self.is_initialized = True
            self.device = keys.device

        def update(self, key_states, value_states, *args, **kwargs):
            w = self.window
            q = key_states.shape[-2]
            self.k[: w.rows, :, w.end : w.end + q] = key_states
            self.v[: w.rows, :, w.end : w.end + q] = value_states
            self.keys = self.k[: w.rows, :, w.start : w.end + q]
            self.values = self.v[: w.rows, :, w.start : w.end + q]
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.window.end - self.window.start

        def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
            return self.get_seq_length() + query_length, 0

    return _SlotLayer


@dataclass
class DecodeStats:
    generated_tokens: int = 0  # tokens kept (up to and including the first end-of-sequence token)
    decoded_slots: int = 0  # sequence-steps computed (the first token of each sequence included)
    prefill_tokens: int = 0  # prompt tokens run through the model (padding included)
    forward_calls: int = 0
    extra: dict = field(default_factory=dict)


class FastDecoder:
    """Runs one call: ``run(prompt_ids, k, ...) -> {(prompt, j): (tokens, finished)}`` (see the module docstring)."""

    def __init__(self, model, eos_ids, pad_id: int, params, generator: torch.Generator, refill: bool = True):
        from transformers import DynamicCache

        self.model, self.params, self.generator, self.refill = model, params, generator, refill
        self.eos = sorted(eos_ids)
        self.pad = pad_id
        self.device = next(model.parameters()).device
        self.eos_t = torch.tensor(self.eos or [-1], device=self.device)
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.cache_kw = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
        self.DynamicCache = DynamicCache
        self.window = _Window()
        self.layers = None
        self.stats = DecodeStats()
        self._processors = self._make_processors()

    # -- sampling ----------------------------------------------------------------------------------------------------
    def _make_processors(self):
        from transformers.generation.logits_process import (
            RepetitionPenaltyLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        p = self.params
        procs = []
        penalty = getattr(getattr(self.model, "generation_config", None), "repetition_penalty", None)
        if penalty is not None and penalty != 1.0:
            procs.append(RepetitionPenaltyLogitsProcessor(penalty=penalty))
        if p.temperature > 0:  # generate's order: processors, then temperature, top-k, top-p
            if p.temperature != 1.0:
                procs.append(TemperatureLogitsWarper(p.temperature))
            if p.top_k:
                procs.append(TopKLogitsWarper(top_k=p.top_k))
            if p.top_p < 1.0:
                procs.append(TopPLogitsWarper(top_p=p.top_p))
        return procs

    def _next_tokens(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        scores = logits.float()
        for proc in self._processors:
            scores = proc(history, scores)
        if self.params.temperature == 0:
            return scores.argmax(-1)
        # inverse-CDF draw: one uniform per row (torch.multinomial draws one exponential per vocabulary entry, which
        # costs as much as a decode step's attention on a CPU); searchsorted(right=True) never lands on a token of
        # probability 0, and the uniform stays below the total so it never runs off the end
        cdf = torch.softmax(scores, dim=-1).cumsum(-1)
        u = torch.rand(cdf.shape[0], 1, generator=self.generator, device=cdf.device, dtype=cdf.dtype)
        return torch.searchsorted(cdf, torch.minimum(u * cdf[:, -1:], cdf[:, -1:] * (1 - 1e-6)), right=True).squeeze(1)

    # -- cache layout ------------------------------------------------------------------------------------------------
    def _allocate(self, prefill_cache, rows: int, columns: int) -> None:
        layer_class = _slot_layer_class()
        self.layers = []
        for layer in prefill_cache.layers:
            _, heads, _, dim = layer.keys.shape
            keys = torch.zeros(rows, heads, columns, dim, dtype=layer.keys.dtype, device=layer.keys.device)
            values = torch.zeros(rows, heads, columns, layer.values.shape[-1], dtype=layer.values.dtype,
                                 device=layer.values.device)
            self.layers.append(layer_class(self.window, keys, values))
        self.mask = torch.zeros(rows, columns, dtype=torch.long, device=self.device)
        self.history = torch.zeros(rows, columns, dtype=torch.long, device=self.device)
        self.positions = torch.zeros(rows, dtype=torch.long, device=self.device)
        self.last = torch.zeros(rows, dtype=torch.long, device=self.device)
        self.cache = self.DynamicCache()
        self.cache.layers = self.layers

    def _columns(self) -> int:
        return self.mask.shape[1]

    def _reserve(self, before: int, after: int) -> None:
        """Room for ``before`` columns left of ``end`` and ``after`` from ``end`` on; moves the window if needed."""
        w = self.window
        if w.end - before >= 0 and w.end + after <= self._columns():
            self._lower_start(w.end - before)
            return
        width = w.end - w.start
        end = max(width, before)  # the window never exceeds the longest prompt + max_new_tokens: it fits
        rows, src = w.rows, slice(w.start, w.end)
        dst = slice(end - width, end)
        for layer in self.layers:
            for buf in (layer.k, layer.v):
                buf[:rows, :, dst] = buf[:rows, :, src].clone()
        for buf in (self.mask, self.history):
            moved = buf[:rows, src].clone()
            if buf is self.mask:
                buf[:rows] = 0
            buf[:rows, dst] = moved
        w.start, w.end = end - width, end
        self._lower_start(w.end - before)

    def _lower_start(self, start: int) -> None:
        """Open columns left of the window; live rows see them as padding (mask 0; a token of their own as history)."""
        w = self.window
        if start >= w.start:
            return
        if w.rows:
            self.mask[: w.rows, start : w.start] = 0
            filler = self.history[: w.rows, w.start : w.start + 1] if w.end > w.start else 0
            self.history[: w.rows, start : w.start] = filler
        w.start = start

    def _remove(self, dead: list[int]) -> None:
        """Drop finished rows: the last live rows move into the holes, then all-padding columns leave the window."""
        w = self.window
        keep = w.rows - len(dead)
        dead_set = set(dead)
        holes = [r for r in sorted(dead) if r < keep]
        movers = [r for r in range(keep, w.rows) if r not in dead_set]
        if holes:
            h = torch.tensor(holes, device=self.device)
            m = torch.tensor(movers, device=self.device)
            cols = slice(w.start, w.end)
            for layer in self.layers:
                layer.k[h, :, cols] = layer.k[m, :, cols]
                layer.v[h, :, cols] = layer.v[m, :, cols]
            for buf in (self.mask, self.history, self.positions, self.last):
                buf[h] = buf[m]
            for hole, mover in zip(holes, movers):
                self.slots[hole] = self.slots[mover]
        del self.slots[keep:]
        w.rows = keep
        if not keep:
            w.start = w.end
        elif w.end > w.start:
            used = self.mask[:keep, w.start : w.end].any(0)
            w.start += int(used.int().argmax()) if bool(used.any()) else w.end - w.start

    # -- the loop ----------------------------------------------------------------------------------------------------
    def _forward(self, **kwargs):
        self.stats.forward_calls += 1
        return self.model(**kwargs, use_cache=True)

    def _admit(self, group: list[int], prompt_ids: list[list[int]], k: int, capacity: int, max_len: int) -> None:
        lengths = [len(prompt_ids[i]) for i in group]
        width = max(lengths)
        ids = torch.full((len(group), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for row, i in enumerate(group):
            ids[row, width - lengths[row] :] = torch.tensor(prompt_ids[i])
            mask[row, width - lengths[row] :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        prefill = self.DynamicCache(config=self.model.config)
        out = self._forward(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1,
                            **{self.cache_kw: prefill})
        self.stats.prefill_tokens += ids.numel()
        if self.layers is None:
            self._allocate(prefill, capacity, max_len + self.params.max_new_tokens + SLACK)
        w = self.window
        self._reserve(width, 0)
        n = len(group) * k
        rows = slice(w.rows, w.rows + n)
        cols = slice(w.end - width, w.end)
        for layer, filled in zip(self.layers, prefill.layers):
            layer.k[rows].view(len(group), k, *layer.k.shape[1:])[:, :, :, cols] = filled.keys[:, None]
            layer.v[rows].view(len(group), k, *layer.v.shape[1:])[:, :, :, cols] = filled.values[:, None]
        del prefill
        first_real = ids.gather(1, (mask == 0).sum(1, keepdim=True))  # each row's first prompt token
        history = torch.where(mask.bool(), ids, first_real)  # padding repeats a prompt token: no effect on penalties
        self.mask[rows] = 0
        self.mask[rows, cols] = mask.repeat_interleave(k, 0)
        self.history[rows] = first_real.repeat_interleave(k, 0)
        self.history[rows, cols] = history.repeat_interleave(k, 0)
        self.positions[rows] = torch.tensor(lengths, device=self.device).repeat_interleave(k)
        logits = out.logits[:, -1].repeat_interleave(k, 0)
        tokens = self._next_tokens(logits, self.history[rows, w.start : w.end])
        self.last[rows] = tokens
        w.rows += n
        self.slots += [[(i, j), []] for i in group for j in range(k)]
        self.stats.decoded_slots += n
        self._record(tokens, range(rows.start, rows.stop))

    def _record(self, tokens: torch.Tensor, rows) -> None:
        finished = torch.isin(tokens, self.eos_t).tolist()
        dead = []
        for row, token, done in zip(rows, tokens.tolist(), finished):
            slot = self.slots[row]
            slot[1].append(token)
            if done or len(slot[1]) >= self.params.max_new_tokens:
                self.results[slot[0]] = (slot[1], bool(done))
                self.stats.generated_tokens += len(slot[1])
                dead.append(row)
                if self.on_finish is not None:
                    self.on_finish(len(slot[1]))
        if dead:
            self._remove(dead)

    def _step(self) -> None:
        w = self.window
        self._reserve(0, 1)
        live = slice(0, w.rows)
        self.mask[live, w.end] = 1
        self.history[live, w.end] = self.last[live]
        out = self._forward(input_ids=self.last[live, None], attention_mask=self.mask[live, w.start : w.end + 1],
                            position_ids=self.positions[live, None], **{self.cache_kw: self.cache})
        w.end += 1
        self.positions[live] += 1
        tokens = self._next_tokens(out.logits[:, -1], self.history[live, w.start : w.end])
        self.last[live] = tokens
        self.stats.decoded_slots += w.rows
        self._record(tokens, range(w.rows))

    def run(self, prompt_ids: list[list[int]], k: int, on_finish=None) -> dict[tuple[int, int], tuple[list[int], bool]]:
        self.results, self.slots, self.on_finish = {}, [], on_finish
        capacity = max(self.params.batch_size, k)
        per_batch = max(1, capacity // k)
        refill_at = max(1, per_batch // 4)  # refill once this many prompts fit: fewer, larger prefills
        max_len = max((len(ids) for ids in prompt_ids), default=0)
        waiting = deque(sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i])))
        while waiting or self.window.rows:
            fits = (capacity - self.window.rows) // k
            if waiting and (self.window.rows == 0 or (self.refill and fits >= min(refill_at, len(waiting)))):
                self._admit([waiting.popleft() for _ in range(min(fits, len(waiting)))], prompt_ids, k, capacity,
                            max_len)
                continue  # rows that finished on their first token may have left: admit again before decoding
            self._step()
        self.layers = self.cache = None  # free the buffers
        return self.results
