"""One way to report per-row problems: "dataset 'x' split 'train', column 'label': <what> in rows 1, 2 ... and N more".

Every data check (formats, method checks, images) names rows through :func:`rows_text` and groups them with
:class:`RowProblems`, so every problem reads the same and names at most ``MAX_ROWS_NAMED`` rows.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_ROWS_NAMED = 5


def rows_text(rows: Sequence[int], limit: int = MAX_ROWS_NAMED) -> str:
    """``"row 3"`` or ``"rows 1, 2, 3, 4, 5 and 7 more"``."""
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return ("row " if len(rows) == 1 else "rows ") + ", ".join(map(str, rows[:limit])) + more


class RowProblems:
    """Groups per-row problems by (column, kind): each kind is one line naming the column and its first rows.

    ``where`` prefixes every line (e.g. ``"dataset 'x' split 'train'"``); empty for a method check whose lines the
    caller prefixes."""

    def __init__(self, where: str = ""):
        self.where = where
        self.rows: dict[tuple[str, str], list[int]] = {}

    def add(self, column: str, kind: str, row: int) -> None:
        self.rows.setdefault((column, kind), []).append(row)

    def __bool__(self) -> bool:
        return bool(self.rows)

    def lines(self) -> list[str]:
        prefix = f"{self.where}, " if self.where else ""
        return [f"{prefix}column {column!r}: {kind} in {rows_text(rows)}" for (column, kind), rows in self.rows.items()]
