"""Checks shared by the trainer configs."""

from __future__ import annotations


def refuse_unsupported(config, unsupported: dict, reason: str) -> None:
    """Raise if a field in ``unsupported`` (name -> the only accepted value) was set to anything else."""
    for name, default in unsupported.items():
        value = getattr(config, name)
        if value != default:
            raise ValueError(f"{reason}: `{name}` does not apply (got {value!r}); remove it")
