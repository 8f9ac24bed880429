"""Data checks of the sampling trainers, run before any model loads (no torch)."""

from __future__ import annotations

# registered reward function -> dataset column it reads
REWARD_COLUMNS = {"exact_match": "answer"}


def check_prompts(dataset, split: str, config) -> list[str]:
    """Columns the configured rewards need are present (``exact_match`` needs ``answer``)."""
    columns = list(dataset.column_names or [])
    problems = []
    for entry in getattr(config, "reward_funcs", None) or []:
        column = REWARD_COLUMNS.get(str(entry).replace("-", "_"))
        if column and column not in columns:
            problems.append(f"reward {entry!r} needs a column {column!r} (found: {', '.join(columns)})")
    return problems
