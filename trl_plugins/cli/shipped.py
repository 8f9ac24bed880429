"""What the package ships besides code — recipes, docs, the example plugin — found and copied out, for the
``recipes`` and ``docs`` commands. The same names work in a checkout and from an installed wheel (which carries
``recipes/``, ``docs/`` and the example plugin under ``trl_plugins/``, see pyproject.toml)."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import ConfigError, UsageError
from ..imports import resource_dir

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
