"""The ``trl-plugins`` command (also ``python -m trl_plugins``).

    trl-plugins list [--json] [--rewards]      trainers (and reward functions) from every installed plugin
    trl-plugins info NAME [--json] [--all]     config fields, dataset format, shipped recipes
    trl-plugins train NAME --config RECIPE.yaml [--key value ...] [--accelerate_config single_gpu|PATH]
    trl-plugins check-data NAME --config RECIPE.yaml [--key value ...]
    trl-plugins plan NAME --config RECIPE.yaml [--key value ...] [--gpu 24GB] [--json]   peak GPU memory, no weights
    trl-plugins recipes [TRAINER] [--path NAME | --copy NAME [--to DIR]]   shipped recipes (trl_plugins/shipped.py)
    trl-plugins docs [PAGE] [--example [--to DIR]]                         shipped docs and the example plugin
    trl-plugins compare --methods a,b --config TASK.yaml [--budget N]     methods side by side (trl_plugins/compare/)

Exit codes: 0 success, 2 usage/config/data errors (one line each, no traceback), 1 unexpected failure.
``list`` and ``info``'s registry lookups never import torch; ``train`` works in-process under
``accelerate launch -m trl_plugins train ...`` and re-launches itself under accelerate with ``--accelerate_config``.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
import warnings

from . import quiet
from .errors import TrlPluginsError, UsageError
from .registry import PluginLoadWarning, get_registry


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="trl-plugins", description="TRL trainer plugins: list, inspect and run them.", allow_abbrev=False
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("list", help="list installed trainers (and reward functions)")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.add_argument("--rewards", action="store_true", help="list reward functions instead of trainers")
    p = sub.add_parser("info", help="show a trainer's config fields, dataset format and recipes")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p.add_argument("--all", action="store_true", help="include every TrainingArguments field")
    for name, text in (("train", "train with a recipe"), ("check-data", "check a recipe's dataset, load no model"),
                       ("plan", "estimate a run's peak GPU memory from config.json (loads no model)")):
        p = sub.add_parser(name, help=text, add_help=False)
        p.add_argument("name", nargs="?")
    p = sub.add_parser("recipes", help="list shipped recipes; print one's path or copy it out for editing")
    p.add_argument("trainer", nargs="?", help="only this trainer's recipes")
    p.add_argument("--path", metavar="NAME", help="print where recipe NAME (e.g. demo/orpo) is installed")
    p.add_argument("--copy", metavar="NAME", help="copy recipe NAME into --to (default: here); never overwrites")
    p.add_argument("--to", metavar="DIR")
    p = sub.add_parser("docs", help="list the shipped doc pages, print one, or copy the example plugin")
    p.add_argument("page", nargs="?", help="a page name: plugins, memory, distributed, orpo, raft, ...")
    p.add_argument("--example", action="store_true", help="copy the example plugin package into --to (default: here)")
    p.add_argument("--to", metavar="DIR")
    from .compare import add_compare_parser

    add_compare_parser(sub)
    return parser


# -- list / info ---------------------------------------------------------------------------------------------------
def _format_columns(spec) -> str:
    """``required [optional]``; a trainer accepting several formats shows each one's, separated by `` | ``."""
    if spec.other_formats:
        from .formats import FORMATS

        formats = [FORMATS[name] for name in (spec.data_format, *spec.other_formats)]
        return " | ".join(_columns_text(f.required, f.optional) for f in formats)
    return _columns_text(spec.required_columns, spec.optional_columns)


def _columns_text(required, optional) -> str:
    return " ".join(filter(None, [", ".join(required), f"[{', '.join(optional)}]" if optional else ""]))


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header] + rows]
    return "\n".join(lines)


def cmd_list(args) -> int:
    registry = get_registry()
    if args.rewards:
        specs = [registry.rewards[k] for k in sorted(registry.rewards)]
        if args.json:
            print(json.dumps([s.as_dict() for s in specs], indent=2))
        else:
            rows = [[s.name, f"{s.distribution} {s.version}".strip(), s.summary] for s in specs]
            print(_table(rows, ["NAME", "DISTRIBUTION", "SUMMARY"]) if rows else "no reward functions installed")
        return 0
    specs = [registry.trainers[k] for k in sorted(registry.trainers)]
    if args.json:
        print(json.dumps([s.as_dict() for s in specs], indent=2))
        return 0
    rows = [[s.name, f"{s.distribution} {s.version}".strip(), _format_columns(s), s.summary] for s in specs]
    print(_table(rows, ["NAME", "DISTRIBUTION", "COLUMNS [optional]", "SUMMARY"]) if rows else "no trainers installed")
    if registry.rewards:
        n = len(registry.rewards)
        print(f"\n{n} reward function{'s' if n != 1 else ''}: {', '.join(sorted(registry.rewards))} (list --rewards)")
    return 0


def _config_fields(config_cls, everything: bool) -> list[dict]:
    import dataclasses

    from transformers import TrainingArguments

    base_names = set() if everything else {f.name for f in dataclasses.fields(TrainingArguments)}
    hidden = set(getattr(config_cls, "_unsupported_fields", ()))
    out = []
    for f in dataclasses.fields(config_cls):
        if f.name.startswith("_") or f.name in hidden or f.name in base_names:
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        )
        # a union (`str | None`) by its full text: its __name__ would say only "str" / "UnionType"
        ftype = f.type if isinstance(f.type, str) else str(f.type) if getattr(f.type, "__args__", None) else getattr(
            f.type, "__name__", str(f.type))
        out.append({"name": f.name, "type": str(ftype), "default": default, "help": f.metadata.get("help", "")})
    return out


def _short_help(text: str, width: int = 100) -> str:
    """The first sentence of a field's help; longer than ``width``, cut at a word and ended with an ellipsis (the
    whole text: ``info NAME --json`` or ``train NAME --help``)."""
    first = text.split(". ")[0].strip()
    first = first if first.endswith(".") or first == text.strip() else first + "."
    if len(first) <= width:
        return first
    return first[: width - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"


def cmd_info(args) -> int:
    from .recipe import shipped_recipes

    registry = get_registry()
    if args.name.replace("-", "_") in registry.rewards and args.name not in registry.trainers:
        spec = registry.reward_function(args.name)
        print(json.dumps(spec.as_dict(), indent=2) if args.json else f"{spec.name} (reward function) — {spec.summary}\n"
              f"  provided by: {spec.distribution} {spec.version}\n  function: {spec.function}")
        return 0
    spec = registry.trainer(args.name)
    trainer_cls, config_cls = spec.load()
    fields = _config_fields(config_cls, args.all)
    recipes = {name: str(path) for name, path in shipped_recipes(spec).items()}
    if args.json:
        data = spec.as_dict()
        data.update(config_fields=fields, recipes=recipes, trainer_bases=[b.__name__ for b in trainer_cls.__mro__[1:4]])
        print(json.dumps(data, indent=2, default=str))
        return 0
    print(f"{spec.name} — {spec.summary}")
    print(f"  provided by: {spec.distribution} {spec.version} (entry point {spec.source.plugin!r})")
    if spec.paper:
        print(f"  paper: {spec.paper}")
    print(f"  trainer: {spec.trainer} (subclass of {trainer_cls.__mro__[1].__module__}.{trainer_cls.__mro__[1].__name__})")
    print(f"  config: {spec.config}")
    print(f"  model: {spec.model_kind}")
    if spec.other_formats:
        print(f"  dataset format: {' or '.join((spec.data_format, *spec.other_formats))} — {_format_columns(spec)}")
    else:
        print(f"  dataset format: {spec.data_format} — required: {', '.join(spec.required_columns)}"
              + (f"; optional: {', '.join(spec.optional_columns)}" if spec.optional_columns else ""))
    print("  shipped recipes (--config NAME or PATH):")
    for name, path in recipes.items():
        print(f"    {name}  ({path})")
    if not recipes:
        print("    none")
    scope = "all fields" if args.all else "method fields; --all adds every TrainingArguments field"
    print(f"  config fields ({scope}):")
    rows = [[f["name"], f["type"].replace("typing.", ""), repr(f["default"]), _short_help(f["help"])] for f in fields]
    print("\n".join("    " + line for line in _table(rows, ["NAME", "TYPE", "DEFAULT", "HELP"]).splitlines()))
    return 0


# -- train / check-data --------------------------------------------------------------------------------------------
def _resolve_accelerate_config(value: str) -> str:
    from pathlib import Path

    from .imports import resource_dir

    if Path(value).is_file():
        return value
    root = resource_dir("trl_plugins:recipes/accelerate_configs")
    candidate = root / f"{value.removesuffix('.yaml')}.yaml" if root else None
    if candidate is not None and candidate.is_file():
        return str(candidate)
    available = ", ".join(sorted(p.stem for p in root.glob("*.yaml"))) if root else "none"
    raise UsageError(f"--accelerate_config {value!r} is neither a file nor a shipped config ({available})")


def _relaunch_under_accelerate(name: str, rest: list[str]) -> int:
    """``--accelerate_config X`` -> ``accelerate launch --config_file X -m trl_plugins train NAME ...``."""
    index = rest.index("--accelerate_config")
    if index + 1 >= len(rest):
        raise UsageError("--accelerate_config needs a name (single_gpu, multi_gpu, multi_cpu, zero2, zero3, fsdp, cpu) or a path")
    config_file = _resolve_accelerate_config(rest[index + 1])
    script_args = ["train", name] + rest[:index] + rest[index + 2 :]
    _check_before_launch(name, script_args[2:], config_file)
    from accelerate.commands.launch import launch_command, launch_command_parser

    launch_args = launch_command_parser().parse_args(["--config_file", config_file, "-m", "trl_plugins", *script_args])
    launch_command(launch_args)
    return 0


def _check_before_launch(name: str, argv: list[str], config_file: str) -> None:
    """The recipe against the launch, once, before accelerate starts the processes (they check again)."""
    from .distributed import check_installed, check_launch, launch_from_config
    from .recipe import StrictParser, resolve_recipe, split_config_flag

    check_installed(launch_from_config(config_file))
    spec = get_registry().trainer(name)
    recipe_value, rest = split_config_flag(argv)
    recipe = resolve_recipe(spec, recipe_value) if recipe_value else None
    (_, training_args, model_args, _), _ = StrictParser(spec.load()[1]).parse(rest, recipe)
    check_launch(spec.name, model_args, training_args, launch_from_config(config_file), str(recipe or "command line"))


def cmd_run(command: str, name: str | None, rest: list[str]) -> int:
    from . import runner

    if (not name or name.startswith("-")) and {"-h", "--help"} & {name, *rest}:
        names = ", ".join(sorted(get_registry().trainers))
        print(f"usage: trl-plugins {command} NAME --config RECIPE [--key value ...]"
              + (" [--accelerate_config NAME|PATH]" if command == "train" else "")
              + f"\n\nNAME is a registered trainer: {names}.\nRECIPE is a YAML file or a shipped recipe name "
              "(trl-plugins recipes). Any config field can be set with --key value; a trainer's fields: "
              f"trl-plugins {command} NAME --help or trl-plugins info NAME.")
        return 0
    if not name or name.startswith("-"):
        raise UsageError(f"usage: trl-plugins {command} NAME --config RECIPE.yaml [--key value ...]")
    spec = get_registry().trainer(name)
    if command == "train" and "--accelerate_config" in rest:
        return _relaunch_under_accelerate(spec.name, rest)
    if "-h" in rest or "--help" in rest:
        from .recipe import StrictParser

        StrictParser(spec.load()[1], prog=f"trl-plugins {command} {spec.name}").parser.print_help()
        return 0
    run = runner.prepare_run(spec, rest, check_output=(command == "train"))
    if command == "check-data":
        print(run.data_summary.line())
        print(run.length_line)
        return 0
    runner.train(run)
    return 0


# -- entry point ---------------------------------------------------------------------------------------------------
def _show_warning(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, PluginLoadWarning):
        print(f"warning: {message}", file=sys.stderr)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def main(argv: list[str] | None = None) -> int:
    quiet.install()  # done at `import trl_plugins` already; again here in case a caller reset the filters
    argv = list(sys.argv[1:] if argv is None else argv)
    warnings.showwarning = _show_warning
    try:
        parser = _build_parser()
        args, rest = parser.parse_known_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        if args.command in ("train", "check-data"):
            return cmd_run(args.command, args.name, rest)
        if args.command == "plan":
            from .plan_command import run_plan

            return run_plan(args.name, rest)
        if rest:
            raise UsageError(f"unrecognized arguments: {' '.join(rest)}")
        if args.command in ("recipes", "docs"):
            from . import shipped

            return {"recipes": shipped.cmd_recipes, "docs": shipped.cmd_docs}[args.command](args)
        if args.command == "compare":
            from .compare import cmd_compare

            return cmd_compare(args)
        return {"list": cmd_list, "info": cmd_info}[args.command](args)
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
