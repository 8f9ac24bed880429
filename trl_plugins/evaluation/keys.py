"""How a held-out figure is named in every file a run writes (``summary.json``, ``heldout_baseline.json``, compare's
``heldout_final.json``): the column of the training reward's total, and the keys of a column's standard error, change
interval and value before training. No torch. Docs: docs/methods/sampling_engine.md ("Held-out")."""

from __future__ import annotations

TOTAL = "heldout_reward_mean"  # the held-out column of the training reward's weighted total (compare's metric)


def noise_keys(column: str) -> tuple[str, str, str, str]:
    """The keys that go with a held-out mean ``column`` (:data:`TOTAL`, ``heldout/<name>`` or ``monitor/<name>``): its
    standard error, the low and high ends of its change's 95% interval, and its value before training."""
    stem = "heldout_reward" if column == TOTAL else column
    return f"{stem}_se", f"{stem}_change_low", f"{stem}_change_high", f"{stem}_baseline"
