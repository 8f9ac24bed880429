"""The dataset formats a trainer can register (``data_format=``): one row per format, the only copy of this table;
and what one row looks like to TRL: chat messages or text (:func:`is_conversational`, :func:`completion_text`), its
own chat-template arguments (:func:`template_kwargs`).

The registry takes a format's columns as the trainer's default required/optional columns, ``checks/data.py`` checks its
text columns, and docs/plugins.md shows the same table (``tests/test_registry.py`` checks that it matches). The length
checks and the generation backends render rows with the two helpers.
"""

from __future__ import annotations

import json
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


def completion_text(completion) -> str:
    """The text of a completion: a string, or the concatenated contents of a list of chat messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        parts = []
        for message in completion:
            content = message.get("content", "") if isinstance(message, dict) else message
            if isinstance(content, list):  # multimodal parts: keep the text ones
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            parts.append(str(content))
        return "\n".join(parts)
    return str(completion)


def is_conversational(value) -> bool:
    """A column value that is a list of chat messages (``{"role": ..., "content": ...}``), not text."""
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict) and "role" in value[0]


TEMPLATE_COLUMNS = ("chat_template_kwargs", "tools")  # per-row chat-template inputs, as TRL's trainers read them


def template_kwargs(row: dict) -> dict:
    """A row's own chat-template arguments as TRL's trainers pass them to ``apply_chat_template``: its
    ``chat_template_kwargs`` and ``tools`` (a list, or its JSON text; an empty list too, as some templates render tool
    text for ``[]``); ``{}`` when the row has neither."""
    tools = row.get("tools")
    tools = json.loads(tools) if isinstance(tools, str) else tools
    kwargs = dict(row.get("chat_template_kwargs") or {})
    if tools is not None:
        kwargs["tools"] = tools
    return kwargs
