"""Checks of the sampling trainers run by the CLI before any model is loaded (no torch): the rewards resolve (reward
model paths exist and are sequence classifiers; offline, hub reward models are cached) and the columns the
configured rewards read are in the data."""

from __future__ import annotations

from ..errors import ConfigError

# registered reward function -> dataset column it reads
REWARD_COLUMNS = {"exact_match": "answer"}


def check_prompts(dataset, split: str, config) -> list[str]:
    """Reward entries resolve with their paths checked; columns the rewards need (``exact_match``: ``answer``) exist."""
    from .rewards import resolve

    problems = []
    for key in ("reward_funcs", "heldout_reward_funcs"):
        entries = getattr(config, key, None) or []
        if entries:
            try:
                resolve(entries, getattr(config, "reward_weights", None) if key == "reward_funcs" else None, key)
            except ConfigError as exc:
                problems.append(str(exc))
    columns = list(dataset.column_names or [])
    for key in ("reward_funcs", "heldout_reward_funcs"):
        for entry in getattr(config, key, None) or []:
            column = REWARD_COLUMNS.get(str(entry).replace("-", "_"))
            if column and column not in columns:
                problems.append(f"reward {entry!r} needs a column {column!r} (found: {', '.join(columns)})")
    return problems
