"""Token lengths of rows tokenized exactly as each TRL trainer tokenizes them (the measuring half of ``lengths.py``).

One ``measure_*`` function per layout (:data:`LAYOUTS`) mirrors the TRL code named there: chat templates through
``apply_chat_template(tokenize=True)`` as TRL's ``_tokenize`` calls it, standard rows through the tokenizer's own
``__call__`` (its special tokens), the EOS TRL appends to standard completions, the prompt/completion split at the
common prefix. Batched: one tokenizer call per 1,024 texts. Checked against TRL in ``tests/test_lengths.py``.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DataError
from ..formats import is_conversational, template_kwargs

if TYPE_CHECKING:
    from .lengths import LengthRule

CHUNK = 1024  # texts per tokenizer call

# How a trainer turns a row into token sequences (which TRL code the measurement mirrors):
LAYOUTS = {
    "preference": "DPOTrainer._prepare_dataset: prompt (generation prompt) and prompt + chosen / rejected",
    "unpaired": "KTOTrainer._prepare_dataset: paired rows unpaired, then prompt and prompt + completion",
    "reward": "RewardTrainer._prepare_dataset: prompt + chosen / rejected as whole sequences",
    "vision": "DataCollatorForVisionPreference: prompt with image tokens, chosen / rejected, tokenized per batch",
    "generation": "sampled completions: prompt + up to max_new_tokens, then SFTTrainer._prepare_dataset per phase",
    "generic": "prompt and prompt + each completion column, or the text column",
}


@contextlib.contextmanager
def quiet_tokenizer():
    """Silence "sequence length is longer than the specified maximum" warnings: long rows are what we count."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)


def _text_ids(tokenizer, texts: list[str], add_special_tokens: bool = True) -> list[list[int]]:
    out: list[list[int]] = []
    for i in range(0, len(texts), CHUNK):
        out += tokenizer(texts[i : i + CHUNK], add_special_tokens=add_special_tokens)["input_ids"]
    return out


def _chat_ids(tokenizer, conversations: list[list], extras: list[dict], add_generation_prompt=False) -> list[list[int]]:
    """``apply_chat_template(..., tokenize=True)`` as TRL's ``_tokenize`` calls it, batched over rows that share the
    same template arguments (``tools``, ``chat_template_kwargs``)."""
    groups: dict[str, list[int]] = {}
    for i, extra in enumerate(extras):
        groups.setdefault(json.dumps(extra, sort_keys=True, default=str) if extra else "", []).append(i)
    out: list[list[int]] = [[] for _ in conversations]
    for rows in groups.values():
        kwargs = extras[rows[0]]
        for start in range(0, len(rows), CHUNK):
            idx = rows[start : start + CHUNK]
            ids = tokenizer.apply_chat_template([conversations[i] for i in idx], tokenize=True, return_dict=True,
                                                add_generation_prompt=add_generation_prompt, **kwargs)["input_ids"]
            for i, row_ids in zip(idx, ids):
                out[i] = list(row_ids)
    return out


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


@dataclass
class Lengths:
    """Token lengths per measured row: ``prompt`` (what the trainer treats as prompt; ``None`` when it has none)
    and, per completion column, the whole sequence (prompt + completion)."""

    prompt: np.ndarray | None
    sequences: dict[str, np.ndarray]
    conversational: bool = False
    notes: list[str] = field(default_factory=list)
    image_end: np.ndarray | None = None  # vision: position after the last image token

    def completion(self, column: str) -> np.ndarray:
        seq = self.sequences[column]
        return seq - self.prompt if self.prompt is not None else seq

    @property
    def longest(self) -> np.ndarray:
        return np.max(np.stack(list(self.sequences.values())), axis=0)


def _eos_appended(values: list[str], eos: str | None) -> list[str]:
    if not eos:
        return values
    return [v if v.endswith(eos) else v + eos for v in values]


def _prompt_completion(tokenizer, rows: list[dict], columns: tuple[str, ...], add_eos: bool) -> Lengths:
    """DPO/KTO/SFT tokenization: prompt alone (generation prompt) and prompt + each completion; the prompt is the
    common prefix (the smallest over the completions, as DPOTrainer does)."""
    conversational = is_conversational(rows[0]["prompt"]) or is_conversational(rows[0][columns[0]])
    if conversational:
        extras = [template_kwargs(r) for r in rows]
        prompt_ids = _chat_ids(tokenizer, [r["prompt"] for r in rows], extras, add_generation_prompt=True)
        full = {c: _chat_ids(tokenizer, [r["prompt"] + r[c] for r in rows], extras) for c in columns}
    else:
        prompt_ids = _text_ids(tokenizer, [r["prompt"] for r in rows])
        full = {}
        for c in columns:
            completions = [r[c] for r in rows]
            if add_eos:
                completions = _eos_appended(completions, tokenizer.eos_token)
            full[c] = _text_ids(tokenizer, [r["prompt"] + x for r, x in zip(rows, completions)])
    prompt = np.array([min(_common_prefix(p, full[c][i]) for c in columns) for i, p in enumerate(prompt_ids)])
    sequences = {c: np.array([len(ids) for ids in full[c]]) for c in columns}
    return Lengths(prompt, sequences, conversational)


def _implicit_prompts(rows: list[dict]) -> list[dict]:
    from trl.data_utils import extract_prompt

    return [{**r, **extract_prompt(r)} for r in rows]


def measure_preference(tokenizer, rows: list[dict], rule: LengthRule) -> Lengths:
    if "prompt" not in rows[0]:
        rows = _implicit_prompts(rows)
    return _prompt_completion(tokenizer, rows, ("chosen", "rejected"), add_eos=True)


def measure_unpaired(tokenizer, rows: list[dict], rule: LengthRule) -> Lengths:
    if "chosen" in rows[0] and "rejected" in rows[0]:  # TRL unpairs: all chosen rows, then all rejected rows
        if "prompt" not in rows[0]:
            rows = _implicit_prompts(rows)
        rows = [{**r, "completion": r["chosen"]} for r in rows] + [{**r, "completion": r["rejected"]} for r in rows]
        lengths = _prompt_completion(tokenizer, rows, ("completion",), add_eos=True)
        lengths.notes.append("each pair unpaired into a desirable and an undesirable example")
        return lengths
    return _prompt_completion(tokenizer, rows, ("completion",), add_eos=True)


def measure_reward(tokenizer, rows: list[dict], rule: LengthRule) -> Lengths:
    has_prompt = "prompt" in rows[0]
    conversational = is_conversational(rows[0]["chosen"])
    sequences, prompt = {}, None
    if conversational:
        extras = [template_kwargs(r) for r in rows]
        for c in ("chosen", "rejected"):
            ids = _chat_ids(tokenizer, [(r["prompt"] if has_prompt else []) + r[c] for r in rows], extras)
            sequences[c] = np.array([len(x) for x in ids])
        if has_prompt:
            prompt = np.array([len(x) for x in _chat_ids(tokenizer, [r["prompt"] for r in rows], extras, True)])
    else:
        for c in ("chosen", "rejected"):
            texts = _eos_appended([r[c] for r in rows], tokenizer.eos_token)
            if has_prompt:
                texts = [r["prompt"] + t for r, t in zip(rows, texts)]
            sequences[c] = np.array([len(x) for x in _text_ids(tokenizer, texts)])
        if has_prompt:
            prompt = np.array([len(x) for x in _text_ids(tokenizer, [r["prompt"] for r in rows])])
    return Lengths(prompt, sequences, conversational)


def _images_of(row: dict) -> list:
    if row.get("image") is not None:
        return [row["image"]]
    return list(row.get("images") or [])


def measure_vision(processor, rows: list[dict], rule: LengthRule) -> Lengths:
    """As the vision preference collator: chat template via TRL's ``apply_chat_template`` (conversational rows),
    text tokenized without special tokens, each image placeholder expanded by the processor. The expansion is
    measured once, on the first row with images, and applied to every row (exact for fixed-size image processors
    such as LLaVA's; an estimate for dynamic-resolution ones)."""
    from trl.data_utils import apply_chat_template, prepare_multimodal_messages

    tokenizer = getattr(processor, "tokenizer", processor)
    conversational = is_conversational(rows[0]["prompt"])
    texts = []
    for row in rows:
        example = {k: row[k] for k in ("prompt", "chosen", "rejected")}
        if conversational:
            example["prompt"] = prepare_multimodal_messages(example["prompt"], images=_images_of(row))
            example["chosen"] = prepare_multimodal_messages(example["chosen"])
            example["rejected"] = prepare_multimodal_messages(example["rejected"])
            example = apply_chat_template(example, processor)
        texts.append(example)
    prompt_ids = _text_ids(tokenizer, [t["prompt"] for t in texts], add_special_tokens=False)
    prompt = np.array([len(x) for x in prompt_ids])
    n_images = np.array([len(_images_of(r)) for r in rows])
    notes, image_end = [], None
    first = next((i for i, n in enumerate(n_images) if n), None)
    if first is not None and processor is not tokenizer:
        from ..models.vision import open_image

        images = [open_image(v) for v in _images_of(rows[first])]
        expanded = processor(images=images, text=[texts[first]["prompt"]], add_special_tokens=False)["input_ids"][0]
        per_image = (len(expanded) - prompt[first]) // len(images) + 1
        prompt = prompt + n_images * (per_image - 1)
        notes.append(f"{per_image} tokens per image, measured on row {first}")
        token = getattr(processor, "image_token", None)
        token_id = tokenizer.convert_tokens_to_ids(token) if token else None
        if token_id is not None and token_id != tokenizer.unk_token_id:
            last = np.array([max((j for j, t in enumerate(ids) if t == token_id), default=-1) for ids in prompt_ids])
            image_end = np.where(last >= 0, last + 1 + n_images * (per_image - 1), 0)
    sequences = {}
    for c in ("chosen", "rejected"):
        ids = _text_ids(tokenizer, [t[c] for t in texts], add_special_tokens=False)
        sequences[c] = prompt + np.array([len(x) for x in ids])
    return Lengths(prompt, sequences, conversational, notes, image_end)


def measure_generation(tokenizer, rows: list[dict], rule: LengthRule) -> Lengths:
    """Prompts as the generation backend and SFTTrainer tokenize them; the SFT phase's longest sequence is the
    prompt + ``max_new_tokens`` + what SFT adds after a completion (the EOS for standard rows; the assistant
    turn's closing tokens of the chat template, measured on the first row, for conversational rows)."""
    conversational = is_conversational(rows[0]["prompt"])
    if conversational:
        extras = [template_kwargs(r) for r in rows]
        ids = _chat_ids(tokenizer, [r["prompt"] for r in rows], extras, add_generation_prompt=True)
        closed = _chat_ids(tokenizer, [rows[0]["prompt"] + [{"role": "assistant", "content": ""}]], [extras[0]])[0]
        tail = max(0, len(closed) - _common_prefix(ids[0], closed))
    else:
        ids = _text_ids(tokenizer, [r["prompt"] for r in rows])
        tail = 1 if tokenizer.eos_token else 0
    prompt = np.array([len(x) for x in ids])
    new = rule.max_new_tokens or 0
    return Lengths(prompt, {"completion": prompt + new + tail}, conversational,
                   [f"completions up to max_new_tokens={new}" + (f" + {tail} closing token" + "s" * (tail > 1)
                                                                  if tail else "")])


def measure_generic(tokenizer, rows: list[dict], rule: LengthRule) -> Lengths:
    row = rows[0]
    columns = rule.columns or tuple(c for c in ("chosen", "rejected", "completion") if c in row)
    if "prompt" in row and columns:
        return _prompt_completion(tokenizer, rows, columns, add_eos=False)
    for column in ("prompt", "messages", "text"):
        if column in row:
            values = [r[column] for r in rows]
            if is_conversational(values[0]):
                ids = _chat_ids(tokenizer, values, [template_kwargs(r) for r in rows], column == "prompt")
            else:
                ids = _text_ids(tokenizer, values)
            return Lengths(None, {column: np.array([len(x) for x in ids])}, is_conversational(values[0]))
    raise DataError(f"cannot measure token lengths: no prompt, messages or text column (found {', '.join(row)})")


MEASURES = {"preference": measure_preference, "unpaired": measure_unpaired, "reward": measure_reward,
            "vision": measure_vision, "generation": measure_generation, "generic": measure_generic}


def prepare_tokenizer(processing_class, config):
    """The tokenizer changes TRL's trainers make from the config before tokenizing (``eos_token`` and a ``.jinja``
    ``chat_template_path``, SFT and reward trainers)."""
    tokenizer = getattr(processing_class, "tokenizer", processing_class)
    eos = getattr(config, "eos_token", None)
    if eos:
        tokenizer.eos_token = eos
    path = getattr(config, "chat_template_path", None)
    if path and str(path).endswith((".jinja", ".j2")):
        with open(path, encoding="utf-8") as handle:
            processing_class.chat_template = handle.read()
    return processing_class
