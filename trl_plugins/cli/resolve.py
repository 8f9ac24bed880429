"""What every command that runs a trainer does first: the trainer named on the command line, ``--help`` for its
recipe keys; the recipe itself is read by :func:`trl_plugins.run.recipe.parse_run` (shared with the train flow, run/flow.py)."""

from __future__ import annotations

from ..errors import UsageError
from ..registry import TrainerSpec, get_registry


def resolve_trainer(command: str, name: str | None, usage: str = "--config RECIPE.yaml [--key value ...]") -> TrainerSpec:
    """The registered trainer ``name``; a missing name is a one-line usage error."""
    if not name or name.startswith("-"):
        raise UsageError(f"usage: trl-plugins {command} NAME {usage}")
    return get_registry().trainer(name)


def print_command_help(command: str, usage: str = "--config RECIPE [--key value ...]") -> None:
    """``trl-plugins train --help`` (no trainer named yet): the usage and the registered trainers."""
    names = ", ".join(sorted(get_registry().trainers))
    print(f"usage: trl-plugins {command} NAME {usage}\n\nNAME is a registered trainer: {names}.\nRECIPE is a YAML file "
          "or a shipped recipe name (trl-plugins recipes). Any config field can be set with --key value; a trainer's "
          f"fields: trl-plugins {command} NAME --help or trl-plugins info NAME.")


def print_recipe_help(command: str, spec: TrainerSpec, rest: list[str]) -> bool:
    """With ``-h``/``--help`` in ``rest``: print every recipe key of the trainer and return True."""
    if "-h" not in rest and "--help" not in rest:
        return False
    from ..run.recipe import StrictParser

    StrictParser(spec.load()[1], prog=f"trl-plugins {command} {spec.name}").parser.print_help()
    return True
