"""What a config field accepts, read from its annotation as written (``None | str | list[str]``, ``dict[str, Any] |
str | None``, ``list[DatasetConfig]``), for the strict recipe parser (``run/recipe.py``).

The annotations come from ``typing.get_type_hints``, not from ``dataclasses.fields(...).type``: building an
``HfArgumentParser`` (TRL's ``TrlParser`` included) narrows ``field.type`` in place, so that after the first parser
``report_to`` reads as plain ``str`` and ``gradient_checkpointing_kwargs`` as ``str``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any


def field_annotations(dataclass_types) -> dict[str, Any]:
    """``{field name: annotation as written}`` over several dataclasses (the first one declaring a name wins)."""
    found: dict[str, Any] = {}
    for cls in dataclass_types:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            found.setdefault(f.name, hints.get(f.name, f.type))
    return found


def arms(annotation) -> tuple:
    """The members of a union (``X | None`` -> ``(X, NoneType)``), or the annotation alone."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _is_list(arm) -> bool:
    return arm is list or typing.get_origin(arm) is list


def _is_mapping(arm) -> bool:
    return arm is dict or arm is Any or typing.get_origin(arm) is dict


def list_item(annotation):
    """The item type of the annotation's ``list[X]`` member (``Any`` for a bare ``list``), or None without one."""
    for arm in arms(annotation):
        if _is_list(arm):
            args = typing.get_args(arm)
            return args[0] if args else Any
    return None


def takes_mapping(annotation) -> bool:
    return any(_is_mapping(arm) for arm in arms(annotation))


def takes_none(annotation) -> bool:
    return type(None) in arms(annotation) or annotation is Any


def one_or_more(annotation) -> bool:
    """A field that is one value or a list of them (``report_to: None | str | list[str]``): one flag then takes
    several values on the command line (``--report_to tensorboard wandb``)."""
    members = [arm for arm in arms(annotation) if arm is not type(None)]
    return any(_is_list(arm) for arm in members) and any(not _is_list(arm) and not _is_mapping(arm)
                                                          for arm in members)


def record_fields(item) -> dict[str, dataclasses.Field] | None:
    """The fields of a list item that is a dataclass (TRL's ``datasets: [DatasetConfig]``), else None."""
    if isinstance(item, type) and dataclasses.is_dataclass(item):
        return {f.name: f for f in dataclasses.fields(item)}
    return None
