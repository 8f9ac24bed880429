"""Llama 2's rating labels and their margins (Table 27), shared by margin-rm's config, data check and report."""

from __future__ import annotations

from typing import Any

UNSURE = "negligibly better or unsure"
# Llama 2, Table 27: margin per rating label.
LLAMA2_MARGINS: dict[str, dict[str, float]] = {
    "small": {"significantly better": 1.0, "better": 2.0 / 3.0, "slightly better": 1.0 / 3.0, UNSURE: 0.0},
    "large": {"significantly better": 3.0, "better": 2.0, "slightly better": 1.0, UNSURE: 0.0},
}
ALIASES = {"negligibly better": UNSURE, "unsure": UNSURE, "negligibly better / unsure": UNSURE}


def normalize_label(label: Any) -> str:
    """``"Significantly_Better"`` -> ``"significantly better"`` (case, ``_``/``-`` and spacing do not matter)."""
    return " ".join(str(label).lower().replace("_", " ").replace("-", " ").split())
