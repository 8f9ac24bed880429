"""Token lengths of the training split against the trainer's limit, checked before any model loads.

:func:`check_lengths` tokenizes the training split with the run's tokenizer (or processor) only — never the weights
— exactly as the trainer will (chat templates, special tokens, the EOS TRL appends to standard completions, the
prompt/completion split at the common prefix) and returns one line: rows, p50/p95/max token lengths of the prompt
and of each completion, how many rows exceed the limit and what THIS trainer does to them (truncated, on which side,
or dropped). It raises :class:`~trl_plugins.errors.DataError` when no row would remain. Exact up to
:data:`MAX_EXACT_ROWS` rows; above that a seeded sample, labelled an estimate.

What a trainer does is a :class:`LengthRule` built from its config: :data:`BUILTIN_RULES`, or a method's
``length_rule(config)`` hook (see :func:`rule_for`). Each built-in rule is checked against TRL 1.16's own dataset
preparation and collators in ``tests/test_lengths.py``.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ConfigError, DataError

MAX_EXACT_ROWS = 20_000
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
ACTIONS = ("drop", "truncate", "split", "unknown", "none")


@dataclass(frozen=True)
class LengthRule:
    """What a trainer does to rows longer than its limit.

    ``limit_field``/``limit``: the config field and its value (``None``: no limit). ``action``: ``drop`` (the row
    is removed), ``truncate`` (``side`` ``keep_start`` cuts the end, ``keep_end`` cuts the start), ``split``
    (packed across blocks, nothing lost), ``unknown`` (a trainer with no rule) or ``none``. ``drop_prompt_fills``:
    with truncation, rows whose prompt alone reaches the limit are dropped (TRL's DPO/KTO/SFT filters).
    ``layout``: how rows are tokenized (:data:`LAYOUTS`); ``columns``: the completion columns measured;
    ``unit``: what a row is called in the line. ``max_new_tokens``: completions are generated (sampling trainers):
    the SFT phases see prompt + up to this many tokens, and prompt + this many is checked against the model's context.
    """

    limit_field: str | None
    limit: int | None
    action: str
    side: str | None = None
    columns: tuple[str, ...] = ("chosen", "rejected")
    layout: str = "generic"
    drop_prompt_fills: bool = False
    unit: str = "rows"
    max_new_tokens: int | None = None

    def __post_init__(self):
        if self.action not in ACTIONS:
            raise ValueError(f"LengthRule.action must be one of {', '.join(ACTIONS)}, got {self.action!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"LengthRule.layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")

    def what_happens(self, name: str) -> str:
        if self.action == "drop":
            return "will be dropped"
        if self.action == "truncate":
            cut = "the end is cut" if self.side == "keep_start" else "the start is cut"
            return f"will be truncated ({self.side}: {cut})"
        if self.action == "split":
            return "will be split across packed blocks (no token lost)"
        return f"what {name} does to them: unknown, see the trainer"


def _limit(config, name: str = "max_length") -> int | None:
    value = getattr(config, name, None)
    return int(value) if value is not None else None


def dpo_rule(config) -> LengthRule:
    """DPOTrainer (ORPO): the collator truncates each sequence to ``max_length`` (``truncation_mode``); with
    ``keep_start`` rows whose prompt alone fills ``max_length`` are dropped first."""
    limit, side = _limit(config), getattr(config, "truncation_mode", "keep_start")
    if limit is None:
        return LengthRule("max_length", None, "none", layout="preference", unit="pairs")
    return LengthRule("max_length", limit, "truncate", side=side, layout="preference", unit="pairs",
                      drop_prompt_fills=side == "keep_start")


def mdpo_rule(config) -> LengthRule:
    """DPOTrainer's vision path (mDPO): nothing is dropped; the collator keeps the first ``max_length`` tokens."""
    limit = _limit(config)
    if limit is not None and getattr(config, "truncation_mode", "keep_start") == "keep_end":
        raise ConfigError("mdpo: truncation_mode keep_end is refused by TRL for images (it can cut the image "
                          "tokens); use keep_start")
    return LengthRule("max_length", limit, "truncate" if limit else "none", side="keep_start", layout="vision",
                      unit="pairs")


def kto_rule(config) -> LengthRule:
    """KTOTrainer: rows whose prompt alone fills ``max_length`` are dropped; the collator keeps the first
    ``max_length`` tokens of the others (KTO has no ``truncation_mode``)."""
    limit = _limit(config)
    return LengthRule("max_length", limit, "truncate" if limit else "none", side="keep_start", columns=("completion",),
                      layout="unpaired", unit="examples", drop_prompt_fills=True)


def reward_rule(config) -> LengthRule:
    """RewardTrainer: pairs with a chosen or rejected sequence longer than ``max_length`` are dropped."""
    limit = _limit(config)
    return LengthRule("max_length", limit, "drop" if limit else "none", layout="reward", unit="pairs")


def sampling_rule(config) -> LengthRule:
    """Sampling trainers: prompts are never truncated for generation; each SFT phase tokenizes prompt + completion
    and truncates to ``max_length`` (``truncation_mode``), dropping rows left without a loss token (a prompt alone
    filling ``max_length`` under completion-only or assistant-only loss); packing truncates (bfd) or splits."""
    limit = _limit(config)
    new = int(getattr(config, "max_new_tokens", 0) or 0) or None
    common = dict(columns=("completion",), layout="generation", unit="prompts", max_new_tokens=new)
    if limit is None:
        return LengthRule("max_length", None, "none", **common)
    if getattr(config, "packing", False):
        strategy = getattr(config, "packing_strategy", "bfd")
        if strategy == "bfd":
            return LengthRule("max_length", limit, "truncate", side="keep_start", **common)
        return LengthRule("max_length", limit, "split", **common)
    masked = bool(getattr(config, "completion_only_loss", None) is not False or getattr(config, "assistant_only_loss",
                                                                                       False))
    return LengthRule("max_length", limit, "truncate", side=getattr(config, "truncation_mode", "keep_start"),
                      drop_prompt_fills=masked, **common)


def generic_rule(config) -> LengthRule:
    """A trainer without a rule: token lengths against ``max_length`` when its config has one; action unknown."""
    limit = _limit(config)
    return LengthRule("max_length" if limit else None, limit, "unknown" if limit else "none", columns=())


BUILTIN_RULES: dict[str, Callable[[Any], LengthRule]] = {
    "orpo": dpo_rule,
    "mdpo": mdpo_rule,
    "kto-weighted": kto_rule,
    "margin-rm": reward_rule,
    "rejection-sampling": sampling_rule,
    "raft": sampling_rule,
    "rest": sampling_rule,
    "rest-em": sampling_rule,
}


def rule_for(name: str, config, method=None) -> LengthRule:
    """The length rule of trainer ``name``: ``method.length_rule(config)`` when the method defines one (and it does
    not return ``None``), else the built-in rule, else :func:`generic_rule`."""
    hook = getattr(method, "length_rule", None)
    if callable(hook):
        rule = hook(config)
        if rule is not None:
            return rule
    return BUILTIN_RULES.get(name, generic_rule)(config)


# --------------------------------------------------------------------------------------------------------------------
# tokenizing as the trainers do
# --------------------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_tokenizer():
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


def _template_kwargs(row: dict) -> dict:
    """TRL's per-row chat template arguments: ``tools`` (a list or JSON text) and ``chat_template_kwargs``."""
    tools = row.get("tools")
    tools = json.loads(tools) if isinstance(tools, str) else tools
    kwargs = dict(row.get("chat_template_kwargs") or {})
    if tools:
        kwargs["tools"] = tools
    return kwargs


def _chat_ids(tokenizer, conversations: list[list], extras: list[dict], add_generation_prompt=False) -> list[list[int]]:
    """``apply_chat_template(..., tokenize=True)`` as TRL's ``_tokenize`` calls it, batched where rows share
    the template arguments (rows with tools or chat_template_kwargs go one by one)."""
    out: list[list[int] | None] = [None] * len(conversations)
    plain = [i for i, extra in enumerate(extras) if not extra]
    for start in range(0, len(plain), CHUNK):
        idx = plain[start : start + CHUNK]
        ids = tokenizer.apply_chat_template([conversations[i] for i in idx], tokenize=True, return_dict=True,
                                            add_generation_prompt=add_generation_prompt)["input_ids"]
        for i, row_ids in zip(idx, ids):
            out[i] = list(row_ids)
    for i, extra in enumerate(extras):
        if extra:
            out[i] = list(tokenizer.apply_chat_template(conversations[i], tokenize=True, return_dict=True,
                                                        add_generation_prompt=add_generation_prompt,
                                                        **extra)["input_ids"])
    return out  # type: ignore[return-value]


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _is_conversational(value) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict) and "role" in value[0]


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
    conversational = _is_conversational(rows[0]["prompt"]) or _is_conversational(rows[0][columns[0]])
    if conversational:
        extras = [_template_kwargs(r) for r in rows]
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
    return _prompt_completion(tokenizer, rows, ("completion",), add_eos=True)


def measure_reward(tokenizer, rows: list[dict], rule: LengthRule) -> Lengths:
    has_prompt = "prompt" in rows[0]
    conversational = _is_conversational(rows[0]["chosen"])
    sequences, prompt = {}, None
    if conversational:
        extras = [_template_kwargs(r) for r in rows]
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
    conversational = _is_conversational(rows[0]["prompt"])
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
        from .vision import open_image

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
    conversational = _is_conversational(rows[0]["prompt"])
    if conversational:
        extras = [_template_kwargs(r) for r in rows]
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
            if _is_conversational(values[0]):
                ids = _chat_ids(tokenizer, values, [_template_kwargs(r) for r in rows], column == "prompt")
            else:
                ids = _text_ids(tokenizer, values)
            return Lengths(None, {column: np.array([len(x) for x in ids])}, _is_conversational(values[0]))
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


# --------------------------------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------------------------------
def _rows_of(dataset, columns: list[str], limit: int, seed: int) -> tuple[list[dict], int | None, bool]:
    """``(rows, total, sampled)``: every row up to ``limit``, else a seeded sample (streamed: the first ``limit``)."""
    import datasets

    if isinstance(dataset, datasets.IterableDataset):
        rows = []
        for i, row in enumerate(dataset):
            if i >= limit:
                return rows, None, True
            rows.append({c: row.get(c) for c in columns})
        return rows, len(rows), False
    total = len(dataset)
    subset = dataset.select_columns(columns)
    sampled = total > limit
    if sampled:
        subset = subset.select(sorted(random.Random(seed).sample(range(total), limit)))
    data = subset.to_dict()
    return [{c: data[c][i] for c in columns} for i in range(len(subset))], total, sampled


ROW_COLUMNS = ("prompt", "chosen", "rejected", "completion", "label", "messages", "text", "image", "images", "tools",
               "chat_template_kwargs")


def _n(value: float) -> str:
    return f"{int(round(value)):,}"


def _stats(values: np.ndarray) -> str:
    p50, p95 = np.percentile(values, [50, 95], method="nearest")
    return f"{_n(p50)}/{_n(p95)}/{_n(values.max())}"


@dataclass
class LengthReport:
    """Measured lengths against a rule; :meth:`line` is what the CLI prints, :meth:`check` raises when nothing remains."""

    name: str
    rule: LengthRule
    lengths: Lengths
    total: int | None  # units in the split (None: streamed)
    measured: int
    sampled: bool
    model_context: int | None = None

    @property
    def factor(self) -> float:
        return (self.total / self.measured) if (self.sampled and self.total) else 1.0

    def _count(self, mask) -> str:
        k = int(np.count_nonzero(mask))
        return ("≈" if self.sampled else "") + _n(k * self.factor)

    @property
    def over(self) -> np.ndarray:
        return self.lengths.longest > self.rule.limit if self.rule.limit is not None else np.zeros(self.measured, bool)

    @property
    def dropped(self) -> np.ndarray:
        rule, over = self.rule, self.over
        if rule.action == "drop":
            return over
        if rule.action == "truncate" and rule.drop_prompt_fills and self.lengths.prompt is not None:
            return self.lengths.prompt >= rule.limit
        return np.zeros(self.measured, bool)

    @property
    def image_cut(self) -> np.ndarray:
        if self.lengths.image_end is None or self.rule.limit is None:
            return np.zeros(self.measured, bool)
        return self.lengths.image_end > self.rule.limit

    def _of(self) -> str:
        if self.total is None:
            return f"of the first {_n(self.measured)} {self.rule.unit}"
        return f"of {_n(self.total)} {self.rule.unit}"

    def _stats_part(self) -> str:
        parts = []
        if self.lengths.prompt is not None:
            parts.append(f"prompt {_stats(self.lengths.prompt)}")
        for column in self.lengths.sequences:
            if self.rule.layout == "generation":
                parts.append(f"prompt + completion up to {_stats(self.lengths.sequences[column])}")
            else:
                parts.append(f"{column} {_stats(self.lengths.completion(column))}")
        notes = "; ".join(self.lengths.notes)
        return "tokens p50/p95/max: " + ", ".join(parts) + (f" ({notes})" if notes else "")

    def line(self) -> str:
        rule = self.rule
        style = "conversational" if self.lengths.conversational else "standard"
        if self.total is None:
            head = f"{self.name}: first {_n(self.measured)} {style} {rule.unit} of a streamed split (an estimate)"
        else:
            head = f"{self.name}: {_n(self.total)} {style} {rule.unit}"
            if self.sampled:
                head += f" (an estimate from a seeded sample of {_n(self.measured)})"
        parts = [head, self._stats_part()]
        parts += self._generation_parts() if rule.layout == "generation" else [self._limit_part()]
        return "; ".join(p for p in parts if p)

    def _limit_part(self) -> str:
        rule, over, longest = self.rule, self.over, self.lengths.longest
        if rule.limit is None:
            return f"{rule.limit_field or 'max_length'} is not set: nothing is truncated or dropped" \
                if rule.action == "none" else ""
        field_ = f"{rule.limit_field}={rule.limit}"
        tail = f"(longest sequence p95 {_n(np.percentile(longest, 95, method='nearest'))} tokens)"
        if not over.any():
            return f"all fit {field_} (longest {_n(longest.max())} tokens)"
        joint = "; " if rule.action == "unknown" else " and "
        text = f"{self._count(over)} {self._of()} are longer than {field_}{joint}{rule.what_happens(self.name)} {tail}"
        dropped = self.dropped
        if rule.action == "truncate" and dropped.any():
            text += f"; {self._count(dropped)} of them will be dropped (the prompt alone fills {rule.limit_field})"
        if rule.layout == "vision" and self.lengths.prompt is not None:
            empty = self.lengths.prompt >= rule.limit
            if empty.any():
                text += f"; {self._count(empty)} keep no completion token (the prompt with its image tokens fills " \
                        f"{rule.limit_field})"
        return text

    def _generation_parts(self) -> list[str]:
        rule, prompt = self.rule, self.lengths.prompt
        parts = []
        new = rule.max_new_tokens or 0
        if self.model_context:
            beyond = prompt + new > self.model_context
            if beyond.any():
                parts.append(f"{self._count(beyond)} {self._of()} + max_new_tokens={new} exceed the model's context of "
                             f"{_n(self.model_context)} positions (prompts are not truncated: generation runs past it)")
            else:
                parts.append(f"every prompt + max_new_tokens={new} fits the model's context of "
                             f"{_n(self.model_context)} positions")
        if rule.limit is None:
            parts.append("max_length is not set: the fine-tuning phases truncate nothing")
            return parts
        over, field_ = self.over, f"{rule.limit_field}={rule.limit}"
        if not over.any():
            parts.append(f"every prompt + max_new_tokens fits {field_} of the fine-tuning phases")
            return parts
        parts.append(f"{self._count(over)} {self._of()} + max_new_tokens={new} can exceed {field_} of the fine-tuning "
                     f"phases: completions that long {rule.what_happens(self.name)}")
        dropped = self.dropped
        if dropped.any():
            parts.append(f"{self._count(dropped)} prompts alone fill {rule.limit_field} and will be dropped from every "
                         f"fine-tuning phase")
        return parts

    def check(self) -> None:
        """Raise a one-line :class:`DataError` when no row would remain, or rows would make TRL fail."""
        rule, name, unit = self.rule, self.name, self.rule.unit
        if self.measured and self.dropped.all():
            what = f"all {_n(self.measured)} {unit}" + (f" sampled {self._of()}" if self.sampled else "")
            if rule.action == "drop":
                reason = f"are longer than {rule.limit_field}={rule.limit} (shortest {_n(self.lengths.longest.min())} " \
                         f"tokens) and would be dropped"
            else:
                reason = f"have a prompt that alone fills {rule.limit_field}={rule.limit} (shortest prompt " \
                         f"{_n(self.lengths.prompt.min())} tokens) and would be dropped"
            raise DataError(f"{name}: {what} {reason}: no {unit[:-1] if unit.endswith('s') else unit} would remain; "
                            f"raise {rule.limit_field} or shorten the rows")
        cut = self.image_cut
        if cut.any():
            rows = ", ".join(str(i) for i in np.flatnonzero(cut)[:5])
            raise DataError(f"{name}: {self._count(cut)} {self._of()} have image tokens beyond {rule.limit_field}="
                            f"{rule.limit} (e.g. sampled rows {rows}): TRL fails on them (image features and image "
                            f"tokens do not match); raise {rule.limit_field}")


def length_report(name: str, config, dataset, processing_class, method=None, model_context: int | None = None,
                  max_rows: int = MAX_EXACT_ROWS, rule: LengthRule | None = None) -> LengthReport:
    """Measure ``dataset`` (one split) for trainer ``name`` with ``processing_class`` (tokenizer or processor)."""
    rule = rule or rule_for(name, config, method)
    columns = [c for c in ROW_COLUMNS if c in (dataset.column_names or [])]
    seed = getattr(config, "data_seed", None)
    seed = getattr(config, "seed", 0) if seed is None else seed
    rows, total, sampled = _rows_of(dataset, columns, max_rows, seed)
    processing_class = prepare_tokenizer(processing_class, config)
    tokenizer = processing_class if rule.layout == "vision" else getattr(processing_class, "tokenizer",
                                                                          processing_class)
    with _quiet_tokenizer():
        lengths = MEASURES[rule.layout](tokenizer, rows, rule)
    measured = len(next(iter(lengths.sequences.values())))
    if total is not None and measured != len(rows):  # unpaired: each pair gave two examples
        total = total * measured // len(rows)
    return LengthReport(name, rule, lengths, total, measured, sampled, model_context)


def model_context(model_name_or_path: str, trust_remote_code: bool = False) -> int | None:
    """The model's ``max_position_embeddings`` from its config.json (no weights), or ``None`` if unknown."""
    from transformers import AutoConfig

    from .models import resolve_model_path

    try:
        config = AutoConfig.from_pretrained(resolve_model_path(model_name_or_path), trust_remote_code=trust_remote_code)
    except Exception:  # noqa: BLE001 - the context check is a bonus; the model load reports real problems later
        return None
    value = getattr(config.get_text_config(), "max_position_embeddings", None)
    return int(value) if isinstance(value, int) else None


def check_lengths(run) -> str:
    """The length line of a run, after the data checks and before any model loads; raises :class:`DataError` when
    no training row would remain.

    ``run`` needs: ``spec.name``, ``training_args`` (the trainer's config), ``train_dataset``,
    ``load_processing_class()`` (tokenizer or processor, no weights) and ``model_args.model_name_or_path``
    (read for the model's context by the sampling trainers); optionally ``method`` (its ``length_rule`` hook).
    """
    name, config = run.spec.name, run.training_args
    method = getattr(run, "method", None)
    rule = rule_for(name, config, method)
    context = None
    if rule.max_new_tokens:
        context = model_context(run.model_args.model_name_or_path, getattr(config, "trust_remote_code", False))
    report = length_report(name, config, run.train_dataset, run.load_processing_class(), method, context, rule=rule)
    report.check()
    return report.line()


__all__ = ["BUILTIN_RULES", "LengthReport", "LengthRule", "Lengths", "check_lengths", "length_report", "rule_for"]
