"""margin-rm's data check, run before any model loads: the margin source's columns exist and hold usable values.
Docs: docs/methods/margin_rm.md."""

from __future__ import annotations

import math

from ...checks.data import check_preference_pairs, iter_rows
from ...checks.problems import rows_text
from .ratings import ALIASES, normalize_label


def _bad_number(value) -> bool:
    return isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)


def check_margin_data(dataset, split: str, config) -> list[str]:
    """The margin source's columns exist and hold usable values; chosen differs from rejected somewhere."""
    problems = check_preference_pairs(dataset, split, config)
    columns = list(dataset.column_names or [])
    source = config.resolved_source(columns)
    found = f"(found: {', '.join(columns)})"
    if source == "none":
        return problems
    if source == "margin":
        if config.margin_column not in columns:
            return problems + [f"margin_source is 'margin' but column {config.margin_column!r} is absent {found}"]
        bad = [i for i, row in iter_rows(dataset, [config.margin_column]) if _bad_number(row[config.margin_column])]
        if bad:
            problems.append(f"column {config.margin_column!r}: NaN, missing or non-numeric margin in {rows_text(bad)}")
    elif source == "rating":
        if config.rating_column not in columns:
            return problems + [f"margin_source is 'rating' but column {config.rating_column!r} is absent {found}"]
        table = config.margin_table()
        unknown: dict[str, list[int]] = {}
        for i, row in iter_rows(dataset, [config.rating_column]):
            if normalize_label(row[config.rating_column]) not in table:
                unknown.setdefault(str(row[config.rating_column]), []).append(i)
        if unknown:
            known = ", ".join(k for k in table if k not in ALIASES or config.rating_margins is not None)
            where = "rating_margins" if config.rating_margins is not None else f"margin_scale {config.margin_scale!r}"
            named = "; ".join(f"{label!r} in {rows_text(rows)}" for label, rows in unknown.items())
            problems.append(
                f"column {config.rating_column!r}: unknown rating label{'s' if len(unknown) > 1 else ''} {named} "
                f"(known in {where}: {known})"
            )
    elif source == "scores":
        score_columns = [config.chosen_score_column, config.rejected_score_column]
        missing = [c for c in score_columns if c not in columns]
        if missing:
            return problems + [
                f"margin_source is 'scores' but score column{'s' if len(missing) > 1 else ''} "
                f"{', '.join(map(repr, missing))} {'are' if len(missing) > 1 else 'is'} missing {found}"
            ]
        for column in score_columns:
            bad = [i for i, row in iter_rows(dataset, [column]) if _bad_number(row[column])]
            if bad:
                problems.append(f"column {column!r}: NaN, missing or non-numeric score in {rows_text(bad)}")
    return problems
