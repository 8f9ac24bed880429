"""What the package ships besides code — recipes, docs, the example plugin — found, listed and copied out.

The same names work in a checkout and from an installed wheel (which carries ``recipes/``, ``docs/`` and the example
plugin under ``trl_plugins/``, see pyproject.toml). Commands (``trl-plugins recipes``, ``trl-plugins docs``):

    trl-plugins recipes [TRAINER]                 shipped recipes and accelerate configs, by name
    trl-plugins recipes --path NAME               where one is installed (for accelerate launch --config_file)
    trl-plugins recipes --copy NAME [--to DIR]    copy one out for editing (never overwrites)
    trl-plugins docs [PAGE]                       the doc pages / one page printed
    trl-plugins docs --example [--to DIR]         copy the example plugin package (a template for your own)
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .errors import ConfigError, UsageError
from .imports import resource_dir

EXAMPLE_NAME = "trl-plugins-example"


def recipes_root() -> Path:
    root = resource_dir("trl_plugins:recipes")
    if root is None:
        raise ConfigError("this installation ships no recipes folder (reinstall trl-plugins)")
    return root


def docs_root() -> Path:
    root = resource_dir("trl_plugins:docs")
    if root is None:
        raise ConfigError("this installation ships no docs folder (reinstall trl-plugins)")
    return root


def example_root() -> Path:
    """The example plugin package: ``trl_plugins/examples/plugin`` in the wheel, ``tests/plugins/example`` here."""
    for root in (resource_dir("trl_plugins:examples/plugin"), resource_dir("trl_plugins:tests/plugins/example")):
        if root is not None and (root / "pyproject.toml").is_file():
            return root
    raise ConfigError("this installation ships no example plugin (reinstall trl-plugins)")


def recipe_names() -> dict[str, Path]:
    """Every shipped YAML (recipes and accelerate configs) by its name: the path under recipes/ without .yaml."""
    root = recipes_root()
    return {str(p.relative_to(root).with_suffix("")): p for p in sorted(root.rglob("*.yaml"))}


def find_recipe(name: str) -> Path:
    names = recipe_names()
    path = names.get(name.removesuffix(".yaml").strip("/"))
    if path is None:
        import difflib

        close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else " (trl-plugins recipes lists them)"
        raise UsageError(f"no shipped recipe named {name!r}{hint}")
    return path


def copy_out(source: Path, target_dir: str | None, name: str | None = None) -> Path:
    """Copy a file or folder into ``target_dir`` (default: here); an existing target is an error, never replaced."""
    target = Path(target_dir or ".").expanduser() / (name or source.name)
    if target.exists():
        raise UsageError(f"{target} already exists; not overwritten (remove it or pass --to DIR)")
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    else:
        shutil.copy2(source, target)
    return target


def doc_pages() -> dict[str, Path]:
    """Doc pages by name: ``plugins``, ``memory``, ``orpo`` (methods/orpo.md), ..."""
    root = docs_root()
    return {p.stem: p for p in sorted(root.rglob("*.md"))}


def cmd_recipes(args) -> int:
    if args.path or args.copy:
        path = find_recipe(args.path or args.copy)
        print(path if args.path else f"copied to {copy_out(path, args.to)}")
        return 0
    from .recipe import shipped_recipes
    from .registry import get_registry

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


def cmd_docs(args) -> int:
    if args.example:
        target = copy_out(example_root(), args.to, EXAMPLE_NAME)
        print(f"copied the example plugin to {target} (pip install -e {target}; then trl-plugins list)")
        return 0
    pages = doc_pages()
    if args.page:
        page = pages.get(args.page.removesuffix(".md").replace("-", "_"))
        if page is None:
            raise UsageError(f"no doc page {args.page!r}; pages: {', '.join(pages)}")
        print(page.read_text(), end="")
        return 0
    for name, path in pages.items():
        print(f"{name:20s} {path}")
    print(f"\nexample plugin: {example_root()} (copy it: trl-plugins docs --example)")
    return 0
