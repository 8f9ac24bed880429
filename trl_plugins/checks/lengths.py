"""Token lengths of the training split against the trainer's limit, checked before any model loads.

:func:`check_lengths` tokenizes the training split with the run's tokenizer (or processor) only — never the weights
— exactly as the trainer will (chat templates, special tokens, the EOS TRL appends to standard completions, the
prompt/completion split at the common prefix) and returns one line: rows, p50/p95/max token lengths of the prompt
and of each completion, how many rows exceed the limit and what THIS trainer does to them (truncated, on which side,
or dropped). It raises :class:`~trl_plugins.errors.DataError` when no row would remain. Exact up to
:data:`MAX_EXACT_ROWS` rows; above that a seeded sample, labelled an estimate.

What a trainer does is a :class:`LengthRule` built from its config by its method's ``length_rule(config)`` hook
(``trl_plugins/method.py``; the built-in methods use the rule builders here). Each built-in rule is checked against TRL 1.16's own dataset
preparation and collators in ``tests/test_lengths.py``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, DataError
from .token_lengths import LAYOUTS, MEASURES, Lengths, prepare_tokenizer, quiet_tokenizer

MAX_EXACT_ROWS = 20_000

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


def preference_generation_rule(config) -> LengthRule:
    """Iterative preference trainers: prompts are never truncated for generation; each phase's collator truncates
    prompt + chosen and prompt + rejected to ``max_length`` (``truncation_mode``) as DPOTrainer does; with
    ``keep_start`` pairs whose prompt alone fills ``max_length`` are dropped first."""
    limit, side = _limit(config), getattr(config, "truncation_mode", "keep_start")
    new = int(getattr(config, "max_new_tokens", 0) or 0) or None
    common = dict(columns=("completion",), layout="generation", unit="prompts", max_new_tokens=new)
    if limit is None:
        return LengthRule("max_length", None, "none", **common)
    return LengthRule("max_length", limit, "truncate", side=side, drop_prompt_fills=side == "keep_start", **common)


def generic_rule(config) -> LengthRule:
    """A trainer without a rule: token lengths against ``max_length`` when its config has one; action unknown."""
    return LengthRule("max_length", _limit(config), "unknown", columns=())


def rule_for(config, method=None) -> LengthRule:
    """The length rule of a run: its method's ``length_rule(config)``, handed down by whoever resolved the method
    (the train flow); no method, or a method without the hook, gets :func:`generic_rule`."""
    hook = getattr(method, "length_rule", None)
    rule = hook(config) if callable(hook) else None
    return rule if rule is not None else generic_rule(config)


# --------------------------------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------------------------------
def _rows_of(dataset, columns: list[str], limit: int, seed: int) -> tuple[list[dict], list[int], int | None]:
    """``(rows, their indices, total)``: every row up to ``limit``, else a seeded sample of ``limit`` rows (a streamed
    split: its first ``limit`` rows, total ``None``)."""
    import datasets

    if isinstance(dataset, datasets.IterableDataset):
        rows = []
        for i, row in enumerate(dataset):
            if i >= limit:
                return rows, list(range(limit)), None
            rows.append({c: row[c] for c in columns or ROW_COLUMNS if c in row})
        return rows, list(range(len(rows))), len(rows)
    total = len(dataset)
    indices = sorted(random.Random(seed).sample(range(total), limit)) if total > limit else list(range(total))
    subset = dataset.select_columns(columns)
    data = (subset.select(indices) if total > limit else subset).to_dict()
    return [{c: data[c][i] for c in columns} for i in range(len(indices))], indices, total


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
    indices: list[int] | None = None  # dataset row of each measured row (vision and one-to-one layouts)

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
            if rule.action == "unknown":
                return f"the config has no {rule.limit_field or 'max_length'} (longest {_n(longest.max())} tokens)"
            return f"{rule.limit_field or 'max_length'} is not set: nothing is truncated or dropped"
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
            what = f"all {_n(self.measured)} {unit}" + ("" if not self.sampled else " of a streamed split's first rows"
                                                         if self.total is None else f" sampled (of {_n(self.total)})")
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
            rows = ", ".join(str(self.indices[i]) for i in np.flatnonzero(cut)[:5])
            raise DataError(f"{name}: {self._count(cut)} {self._of()} have image tokens beyond {rule.limit_field}="
                            f"{rule.limit} (rows {rows}{', ...' if cut.sum() > 5 else ''}): TRL fails on them (image "
                            f"features and image tokens do not match); raise {rule.limit_field}")


def length_report(name: str, config, dataset, processing_class, method=None, model_context: int | None = None,
                  max_rows: int = MAX_EXACT_ROWS, rule: LengthRule | None = None) -> LengthReport:
    """Measure ``dataset`` (one split) for trainer ``name`` with ``processing_class`` (tokenizer or processor), by the
    length rule of ``method`` (its ``length_rule`` hook; without a method the generic rule)."""
    rule = rule or rule_for(config, method)
    columns = [c for c in ROW_COLUMNS if c in (dataset.column_names or [])]
    seed = getattr(config, "data_seed", None)
    seed = getattr(config, "seed", 0) if seed is None else seed
    rows, indices, total = _rows_of(dataset, columns, max_rows, seed)
    sampled = total is None or len(rows) < total
    processing_class = prepare_tokenizer(processing_class, config)
    tokenizer = processing_class if rule.layout == "vision" else getattr(processing_class, "tokenizer",
                                                                          processing_class)
    with quiet_tokenizer():
        lengths = MEASURES[rule.layout](tokenizer, rows, rule)
    measured = len(next(iter(lengths.sequences.values())))
    if total is not None and measured != len(rows):  # unpaired: each pair gave two examples
        total = total * measured // len(rows)
    return LengthReport(name, rule, lengths, total, measured, sampled, model_context, indices)


def model_context(model_name_or_path: str, trust_remote_code: bool = False) -> int | None:
    """The model's ``max_position_embeddings`` from its config.json (no weights), or ``None`` if unknown."""
    from transformers import AutoConfig

    from ..models.loading import resolve_model_path

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
    rule = rule_for(config, method)
    context = None
    if rule.max_new_tokens:
        context = model_context(run.model_args.model_name_or_path, getattr(config, "trust_remote_code", False))
    report = length_report(name, config, run.train_dataset, run.load_processing_class(), method, context, rule=rule)
    report.check()
    return report.line()


__all__ = ["LengthReport", "LengthRule", "Lengths", "check_lengths", "length_report", "rule_for"]
