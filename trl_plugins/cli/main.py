"""The ``trl-plugins`` command (also ``python -m trl_plugins``): one module per command in this package.

    trl-plugins list [--json] [--rewards]      trainers (and reward functions) from every installed plugin
    trl-plugins info NAME [--json] [--all]     config fields, dataset format, shipped recipes
    trl-plugins train NAME --config RECIPE.yaml [--key value ...] [--accelerate_config single_gpu|PATH]
    trl-plugins check-data NAME --config RECIPE.yaml [--key value ...]
    trl-plugins plan NAME --config RECIPE.yaml [--key value ...] [--gpu 24GB] [--json]   peak GPU memory, no weights
    trl-plugins recipes [TRAINER] [--path NAME | --copy NAME [--to DIR]]   shipped recipes, found or copied out
    trl-plugins docs [PAGE] [--example [--to DIR]]                         shipped docs and the example plugin
    trl-plugins compare --methods a,b --config TASK.yaml [--budget N]      methods side by side, equal budget

Exit codes: 0 success, 2 usage/config/data errors (one line each, no traceback), 3 a run that trained nothing,
1 unexpected failure.
``list`` and ``info``'s registry lookups never import torch; ``train`` works in-process under
``accelerate launch -m trl_plugins train ...`` and re-launches itself under accelerate with ``--accelerate_config``.
A command module has ``NAME``, ``HELP``, ``run(args, rest)`` and either ``add_arguments(parser)`` or
``TAKES_RECIPE = True`` (its flags are recipe keys, read by the strict recipe parser).
"""

from __future__ import annotations

import argparse
import sys
import traceback
import warnings

from ..compat import quiet
from ..errors import TrlPluginsError, UsageError
from ..registry import PluginLoadWarning
from . import check_data, compare, docs, info, plan, recipes, train
from . import list as list_command
from .resolve import print_command_help

COMMANDS = {command.NAME: command for command in (list_command, info, train, check_data, plan, recipes, docs, compare)}


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="trl-plugins", description="TRL trainer plugins: list, inspect and run them.", allow_abbrev=False
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS.values():
        if getattr(command, "TAKES_RECIPE", False):
            p = sub.add_parser(command.NAME, help=command.HELP, add_help=False)
            p.add_argument("name", nargs="?")
        else:
            command.add_arguments(sub.add_parser(command.NAME, help=command.HELP))
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, PluginLoadWarning):
        print(f"warning: {message}", file=sys.stderr)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def main(argv: list[str] | None = None) -> int:
    quiet.install()  # done at `import trl_plugins` already; again in case a caller reset the filters (compat/quiet.py)
    argv = list(sys.argv[1:] if argv is None else argv)
    warnings.showwarning = _show_warning
    try:
        parser = _build_parser()
        args, rest = parser.parse_known_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        command = COMMANDS[args.command]
        if getattr(command, "TAKES_RECIPE", False) and args.name is None and {"-h", "--help"} & set(rest):
            print_command_help(command.NAME)
            return 0
        if rest and not getattr(command, "TAKES_RECIPE", False):
            raise UsageError(f"unrecognized arguments: {' '.join(rest)}")
        return command.run(args, rest)
    except TrlPluginsError as exc:
        for line in exc.lines():
            print(f"error: {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `trl-plugins list | head`: the reader left; nothing is wrong
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception:  # noqa: BLE001 - a bug, not bad input: show everything
        traceback.print_exc()
        print("error: unexpected failure (traceback above); please report it", file=sys.stderr)
        return 1
    finally:
        warnings.showwarning = _default_showwarning


if __name__ == "__main__":
    raise SystemExit(main())
