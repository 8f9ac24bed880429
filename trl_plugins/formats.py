"""The dataset formats a trainer can register (``data_format=``): one row per format, the only copy of this table.

The registry takes a format's columns as the trainer's default required/optional columns, ``checks/data.py`` checks its
text columns, and docs/plugins.md shows the same table (``tests/test_registry.py`` checks that it matches).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataFormat:
    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    text_columns: tuple[str, ...]  # each value is a non-empty string or a list of chat messages, one style per column
    checked: str  # what the generic check verifies, for the docs table


FORMATS: dict[str, DataFormat] = {
    f.name: f
    for f in (
        DataFormat("preference", ("chosen", "rejected"), ("prompt",), ("prompt", "chosen", "rejected"),
                   "text or chat messages, non-empty, one style"),
        DataFormat("unpaired_preference", ("prompt", "completion", "label"), (), ("prompt", "completion"),
                   "text; `label` is a boolean"),
        DataFormat("prompt_only", ("prompt",), (), ("prompt",), "text or chat messages"),
        DataFormat("prompt_completion", ("prompt", "completion"), (), ("prompt", "completion"),
                   "text or chat messages"),
        DataFormat("language_modeling", ("text",), (), ("text",), "text"),
        DataFormat("vision_preference", ("prompt", "chosen", "rejected"), ("image", "images"),
                   ("prompt", "chosen", "rejected"), "text; images by the trainer's check"),
    )
}


def markdown_table() -> str:
    """The docs/plugins.md table of formats."""
    lines = ["| `data_format` | required columns | optional | checked |", "|---|---|---|---|"]
    for f in FORMATS.values():
        lines.append(f"| `{f.name}` | {', '.join(f.required)} | {', '.join(f.optional)} | {f.checked} |")
    return "\n".join(lines)
