"""``trl-plugins recipes [TRAINER] [--path NAME | --copy NAME [--to DIR]]``: the shipped recipes and accelerate
configs by name; where one is installed (for ``accelerate launch --config_file``); a copy to edit (never overwrites)."""

from __future__ import annotations

from pathlib import Path

from .shipped import copy_out, find_recipe, recipe_names, recipes_root

NAME = "recipes"
HELP = "list shipped recipes; print one's path or copy it out for editing"


def add_arguments(parser) -> None:
    parser.add_argument("trainer", nargs="?", help="only this trainer's recipes")
    parser.add_argument("--path", metavar="NAME", help="print where recipe NAME (e.g. demo/orpo) is installed")
    parser.add_argument("--copy", metavar="NAME", help="copy recipe NAME into --to (default: here); never overwrites")
    parser.add_argument("--to", metavar="DIR")


def run(args, rest: list[str]) -> int:
    if args.path or args.copy:
        path = find_recipe(args.path or args.copy)
        print(path if args.path else f"copied to {copy_out(path, args.to)}")
        return 0
    from ..registry import get_registry
    from ..run.recipe import shipped_recipes

    registry = get_registry()
    specs = [registry.trainer(args.trainer)] if args.trainer else [registry.trainers[k] for k in sorted(registry.trainers)]
    owners: dict[Path, list[str]] = {}
    for spec in specs:
        for path in shipped_recipes(spec).values():
            owners.setdefault(path, []).append(spec.name)
    for name, path in recipe_names().items():
        if path in owners:
            print(f"{name:60s} {', '.join(owners[path])}")
        elif not args.trainer and name.startswith("accelerate_configs/"):
            print(f"{name:60s} (accelerate config: --accelerate_config {name.split('/', 1)[1]})")
        elif not args.trainer and name.startswith("compare/"):
            print(f"{name:60s} (task file: trl-plugins compare --config {name})")
    print(f"\nfolder: {recipes_root()}\nuse: --config NAME; edit a copy: trl-plugins recipes --copy NAME")
    return 0
