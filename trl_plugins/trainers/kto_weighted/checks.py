"""kto-weighted's data check, run before any model loads: unpaired or paired rows, the weight column, both classes
for ``weighting: auto``. Docs: docs/methods/kto_weighted.md."""

from __future__ import annotations

import math
from numbers import Real

from ...checks.problems import rows_text


def check_kto_data(dataset, split: str, config, role: str = "train") -> list[str]:
    """Unpaired (prompt, completion, label) or paired (prompt, chosen, rejected) rows; the weight column holds
    non-negative numbers; ``weighting: auto`` needs both classes in the training split."""
    from ...checks.data import check_text_columns, iter_rows

    columns = list(dataset.column_names or [])
    unpaired = "completion" in columns or "label" in columns
    paired = "chosen" in columns and "rejected" in columns
    if unpaired or not paired:
        missing = [c for c in ("prompt", "completion", "label") if c not in columns]
        if missing:
            return [
                f"missing column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} (found: "
                f"{', '.join(columns) or 'none'}); kto-weighted expects prompt, completion, label (unpaired) "
                "or prompt, chosen, rejected (paired; the prompt may be implicit in conversational data)"
            ]
    problems: list[str] = []
    if paired and not unpaired:  # the generic check covered prompt only
        lines, _ = check_text_columns(dataset, "", [c for c in ("prompt", "chosen", "rejected") if c in columns])
        problems += lines
    column = getattr(config, "weight_column", None)
    if column:
        if column not in columns:
            return problems + [f"weight_column {column!r} is not a column (found: {', '.join(columns)})"]
        bad: dict[str, list[int]] = {}
        total = 0.0
        for row, values in iter_rows(dataset, [column]):
            value = values[column]
            if isinstance(value, bool) or not isinstance(value, Real):
                kind = f"not a number ({type(value).__name__})"
            elif math.isnan(value):
                kind = "NaN"
            elif math.isinf(value):
                kind = "infinite"
            elif value < 0:
                kind = "negative"
            else:
                total += value
                continue
            bad.setdefault(kind, []).append(row)
        for kind, rows in bad.items():
            problems.append(f"column {column!r} (weight_column): {kind} weight in {rows_text(rows)}; weights must be "
                            "finite numbers >= 0")
        if not bad and total == 0:
            problems.append(f"column {column!r} (weight_column): every weight is 0, nothing would be learned")
    if role == "train" and getattr(config, "weighting", "auto") == "auto" and unpaired and "label" in columns:
        counts = [0, 0]
        for _, values in iter_rows(dataset, ["label"]):
            counts[bool(values["label"])] += 1
        if 0 in counts:
            which = "desirable (label true)" if counts[1] else "undesirable (label false)"
            problems.append(
                f"weighting: auto needs desirable and undesirable rows, but all {sum(counts)} rows are {which}; "
                "add rows of the other class, or set weighting: manual (or none)"
            )
    return problems
