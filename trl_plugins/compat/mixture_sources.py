"""TRL's ``get_dataset`` loads every entry of a ``datasets:`` mixture with ``datasets.load_dataset``, which knows
neither ``embedded:`` names nor a bare local file: while :func:`entries_through` is open, that one function is routed
through trl-plugins' loader (``checks/mixtures.py``: ``load_entry``), so TRL's own mixing rules (fractions, streaming,
test split) stay TRL's. Restored on exit.
"""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def entries_through(load_entry):
    """``datasets.load_dataset(**kwargs)`` becomes ``load_entry(the real load_dataset, **kwargs)`` until exit; the
    loads ``load_entry`` makes itself reach the real function."""
    import datasets

    original = datasets.load_dataset

    def routed(*args, **kwargs):
        datasets.load_dataset = original
        try:
            return load_entry(original, *args, **kwargs)
        finally:
            datasets.load_dataset = routed

    datasets.load_dataset = routed
    try:
        yield
    finally:
        datasets.load_dataset = original
