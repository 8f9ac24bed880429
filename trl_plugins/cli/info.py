"""``trl-plugins info NAME [--json] [--all]``: a trainer's config fields, dataset format and shipped recipes (or a
reward function's registration)."""

from __future__ import annotations

import json

from ..registry import get_registry
from .list import format_columns, table

NAME = "info"
HELP = "show a trainer's config fields, dataset format and recipes"


def add_arguments(parser) -> None:
    parser.add_argument("name")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--all", action="store_true", help="include every TrainingArguments field")


def config_fields(config_cls, everything: bool) -> list[dict]:
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


def short_help(text: str, width: int = 100) -> str:
    """The first sentence of a field's help; longer than ``width``, cut at a word and ended with an ellipsis (the
    whole text: ``info NAME --json`` or ``train NAME --help``)."""
    first = text.split(". ")[0].strip()
    first = first if first.endswith(".") or first == text.strip() else first + "."
    if len(first) <= width:
        return first
    return first[: width - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"


def run(args, rest: list[str]) -> int:
    from ..run.recipe import shipped_recipes

    registry = get_registry()
    if args.name.replace("-", "_") in registry.rewards and args.name not in registry.trainers:
        spec = registry.reward_function(args.name)
        print(json.dumps(spec.as_dict(), indent=2) if args.json else f"{spec.name} (reward function) — {spec.summary}\n"
              f"  provided by: {spec.distribution} {spec.version}\n  function: {spec.function}")
        return 0
    spec = registry.trainer(args.name)
    trainer_cls, config_cls = spec.load()
    fields = config_fields(config_cls, args.all)
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
    parent = next((b for b in trainer_cls.__mro__[1:] if b.__module__.startswith("trl.")), trainer_cls.__mro__[1])
    print(f"  trainer: {spec.trainer} (subclass of {parent.__module__}.{parent.__name__})")
    print(f"  config: {spec.config}")
    print(f"  model: {spec.model_kind}")
    if spec.other_formats:
        print(f"  dataset format: {' or '.join((spec.data_format, *spec.other_formats))} — {format_columns(spec)}")
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
    rows = [[f["name"], f["type"].replace("typing.", ""), repr(f["default"]), short_help(f["help"])] for f in fields]
    print("\n".join("    " + line for line in table(rows, ["NAME", "TYPE", "DEFAULT", "HELP"]).splitlines()))
    return 0
