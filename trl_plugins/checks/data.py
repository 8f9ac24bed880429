"""Dataset loading and format checks, run before any model is loaded.

``load_datasets`` resolves ``dataset_name`` (one source, ``checks/sources.py``), TRL's ``datasets:`` mixture or
alignment-handbook's ``dataset_mixture:`` (``checks/mixtures.py``). ``check_datasets`` checks every split
against the trainer's registered format and returns a summary, or raises :class:`DataError` with one line per problem,
each naming the split, the column and the rows where it was found.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ..errors import DataError
from ..formats import FORMATS
from .problems import RowProblems
from .sources import first_line, load_source

logger = logging.getLogger(__name__)

STREAMING_ROWS_CHECKED = 1000


@dataclass
class DataSummary:
    source: str
    splits: dict[str, int] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)
    style: str = "standard"
    data_format: str = ""

    def line(self) -> str:
        splits = ", ".join(f"{name}: {rows} rows" for name, rows in self.splits.items())
        return (
            f"ok: {self.source} — {splits}; columns {', '.join(self.columns)}; "
            f"{self.style} {self.data_format.replace('_', ' ')}"
        )


# --------------------------------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------------------------------
def load_datasets(script_args, dataset_args=None):
    """The ``DatasetDict`` a run trains and evaluates on, from TRL's ``datasets:`` mixture, alignment-handbook's
    ``dataset_mixture:`` (``checks/mixtures.py``) or ``dataset_name`` (a mixture wins over ``dataset_name``, as in
    TRL's scripts and the handbook's)."""
    import datasets

    from .mixtures import load_handbook_mixture, load_trl_mixture

    trl_mixture = getattr(dataset_args, "datasets", None) if dataset_args is not None else None
    handbook_mixture = getattr(script_args, "dataset_mixture", None)
    if trl_mixture and handbook_mixture:
        raise DataError("both `datasets:` (TRL's mixture) and `dataset_mixture:` (alignment-handbook's) are set: keep one")
    if trl_mixture or handbook_mixture:
        kind = "`datasets:`" if trl_mixture else "`dataset_mixture:`"
        try:
            dsd = load_trl_mixture(dataset_args) if trl_mixture else load_handbook_mixture(handbook_mixture)
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 - offline hub, bad file, bad fraction: all one line
            raise DataError(f"cannot read the {kind} mixture: {first_line(exc)}") from exc
        names = [d.path for d in trl_mixture] if trl_mixture else [d["id"] for d in handbook_mixture["datasets"]]
        source = "mixture of " + ", ".join(names)
    elif script_args.dataset_name:
        dsd = load_source(script_args.dataset_name, script_args.dataset_config, script_args.dataset_streaming)
        source = script_args.dataset_name
    else:
        raise DataError("no dataset: set `dataset_name` (or a `datasets:` or `dataset_mixture:` mixture) in the recipe "
                        "or on the command line")
    if not isinstance(dsd, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        dsd = datasets.DatasetDict(train=dsd)
    limits = {
        script_args.dataset_train_split: getattr(script_args, "max_train_samples", None),
        script_args.dataset_test_split: getattr(script_args, "max_eval_samples", None),
    }
    for split, limit in limits.items():
        if limit is not None and split in dsd:
            ds = dsd[split]
            dsd[split] = ds.take(limit) if isinstance(ds, datasets.IterableDataset) else ds.select(
                range(min(limit, len(ds)))
            )
    dsd.source_name = source  # type: ignore[attr-defined]
    return dsd


# --------------------------------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------------------------------
def _is_messages(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(isinstance(m, dict) and "role" in m and "content" in m for m in value)
    )


def _describe(value: Any) -> str:
    if isinstance(value, list):
        return "an empty list" if not value else "a list that is not chat messages ({'role', 'content'})"
    return type(value).__name__


def iter_rows(dataset, columns: list[str], limit: int | None = None):
    """Yield ``(row_index, row_dict)`` over the given columns, batched for speed."""
    import datasets

    if isinstance(dataset, datasets.IterableDataset):
        limit = STREAMING_ROWS_CHECKED if limit is None else limit
        for i, row in enumerate(dataset):
            if i >= limit:
                return
            yield i, {c: row.get(c) for c in columns}
        return
    subset = dataset.select_columns(columns)
    index = 0
    for batch in subset.iter(batch_size=2048):
        n = len(batch[columns[0]]) if columns else 0
        for j in range(n):
            if limit is not None and index >= limit:
                return
            yield index, {c: batch[c][j] for c in columns}
            index += 1


def check_text_columns(dataset, where: str, columns: list[str]) -> tuple[list[str], str]:
    """Every value is a non-empty string, or a non-empty list of chat messages, the same kind in every row.

    Returns ``(problems, style)`` with style ``standard`` or ``conversational``.
    """
    problems = RowProblems(where)
    kinds: dict[str, str] = {}
    for row_index, row in iter_rows(dataset, columns):
        for column in columns:
            value = row[column]
            if isinstance(value, str):
                kind = "text"
                if not value.strip():
                    problems.add(column, "empty text", row_index)
            elif _is_messages(value):
                kind = "messages"
                if any(not isinstance(m["content"], (str, list)) for m in value):
                    problems.add(column, "a chat message whose content is not text", row_index)
            elif value is None:
                problems.add(column, "missing value (null)", row_index)
                continue
            else:
                problems.add(column, f"expected text or a list of chat messages, got {_describe(value)}", row_index)
                continue
            first = kinds.setdefault(column, kind)
            if first != kind:
                problems.add(column, f"mixes plain text and chat messages (first rows are {first})", row_index)
    lines = problems.lines()
    styles = set(kinds.values())
    if not lines and len(styles) > 1 and "prompt" in kinds:
        lines.append(
            f"{where + ': ' if where else ''}columns mix plain text and chat messages "
            f"({', '.join(f'{c}: {k}' for c, k in kinds.items())}); use one style for all"
        )
    style = "conversational" if styles == {"messages"} else "standard"
    return lines, style


def check_bool_column(dataset, where: str, column: str) -> list[str]:
    problems = RowProblems(where)
    for row_index, row in iter_rows(dataset, [column]):
        if not isinstance(row[column], bool):
            problems.add(column, f"expected true/false, got {type(row[column]).__name__} {row[column]!r}", row_index)
    return problems.lines()


def check_datasets(spec, dsd, script_args, config, method=None) -> DataSummary:
    """Check the splits a run will use against ``spec``'s format, then ``method.check_data`` (a
    :class:`~trl_plugins.method.Method`; default: the spec's); raise :class:`DataError` listing every problem."""
    import datasets

    source = getattr(dsd, "source_name", script_args.dataset_name or "dataset")
    needed = [script_args.dataset_train_split]
    if getattr(config, "eval_strategy", "no") not in ("no", None) and str(config.eval_strategy) != "IntervalStrategy.NO":
        needed.append(script_args.dataset_test_split)
    method = method if method is not None else spec.load_method()(spec)
    problems: list[str] = []
    summary = DataSummary(source=source, data_format=spec.data_format)
    for split in needed:
        where = f"dataset {source!r} split {split!r}"
        if split not in dsd:
            usage = "training" if split == script_args.dataset_train_split else "evaluation (eval_strategy is set)"
            problems.append(f"{where}: no such split for {usage} (splits: {', '.join(dsd) or 'none'})")
            continue
        dataset = dsd[split]
        columns = list(dataset.column_names or [])
        missing = [c for c in spec.required_columns if c not in columns]
        if missing:
            optional = f" (optional: {', '.join(spec.optional_columns)})" if spec.optional_columns else ""
            problems.append(
                f"{where}: missing column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
                f"(found: {', '.join(columns) or 'none'}); {spec.name!r} expects "
                f"{', '.join(spec.required_columns)}{optional}"
            )
            continue
        if isinstance(dataset, datasets.Dataset) and len(dataset) == 0:
            problems.append(f"{where}: dataset is empty (0 rows)")
            continue
        text_columns = [c for c in FORMATS[spec.data_format].text_columns if c in columns]
        split_problems, style = check_text_columns(dataset, where, text_columns) if text_columns else ([], "standard")
        if spec.data_format == "unpaired_preference" and "label" in columns:
            split_problems += check_bool_column(dataset, where, "label")
        if not split_problems:
            role = "train" if split == script_args.dataset_train_split else "eval"
            split_problems += [f"{where}: {line}" for line in method.check_data(dataset, split, config, role)]
        problems += split_problems
        summary.splits[split] = len(dataset) if isinstance(dataset, datasets.Dataset) else -1
        summary.columns = columns
        summary.style = style
    if problems:
        raise DataError(problems)
    return summary


def check_preference_pairs(dataset, split: str, config) -> list[str]:
    """Method check for pairwise preference data: chosen must differ from rejected (all equal = nothing to learn)."""
    same = total = 0
    for _, row in iter_rows(dataset, ["chosen", "rejected"]):
        total += 1
        same += row["chosen"] == row["rejected"]
    if total and same == total:
        return [f"chosen == rejected in every row ({total} rows): there is no preference to learn"]
    if same:
        logger.warning("split %r: chosen == rejected in %d of %d rows; those pairs carry no signal", split, same, total)
    return []
