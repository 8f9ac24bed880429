"""The shape of the package: imports point one way (no cycle, lazy imports counted), a short top level, and every
dotted name the docs show imports.

    python -m pytest tests/test_layout.py -q
"""

from __future__ import annotations

import ast
import importlib
import re

import pytest

from helpers import REPO

PACKAGE = REPO / "trl_plugins"
MAX_TOP_LEVEL_MODULES = 15  # the plugin contract and the entry points; everything else lives in a subpackage


def _modules() -> dict[str, tuple[ast.Module, bool]]:
    """Every module of trl_plugins as ``{dotted name: (syntax tree, is a package)}``."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        out[name] = (ast.parse(path.read_text(), str(path)), is_package)
    return out


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Ids of the nodes under ``if TYPE_CHECKING:`` (imports for annotations, never run)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(inner) for statement in node.body for inner in ast.walk(statement)}
    return skip


def import_graph() -> dict[str, set[str]]:
    """``{module: modules of trl_plugins it imports}``, counting imports inside functions too."""
    modules = _modules()
    graph = {}
    for name, (tree, is_package) in modules.items():
        skip = _type_checking_only(tree)
        targets = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                submodules = {f"{source}.{alias.name}" for alias in node.names} & set(modules)
                # `from pkg import module` imports that module; `from pkg import name` imports pkg (its __init__)
                targets |= submodules if len(submodules) == len(node.names) else submodules | {source}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_no_import_cycle_in_the_package():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_lazy_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_nothing_below_the_registry_imports_it():
    graph = import_graph()
    below = set()
    stack = ["trl_plugins.registry"]
    while stack:  # everything the registry reaches, directly or lazily
        for target in graph[stack.pop()]:
            if target not in below and target != "trl_plugins":
                below.add(target)
                stack.append(target)
    assert not [m for m in below if "trl_plugins.registry" in graph[m]]


def test_top_level_stays_short():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
_FROM_IMPORT = re.compile(r"from (trl_plugins[\w.]*) import ([\w, ]+)")
_DOTTED = re.compile(r"\b(trl_plugins(?:\.\w+)+)")
_IMPORT_STRING = re.compile(r"\"(trl_plugins[\w.]*):(\w+)\"")


def _doc_names() -> list[tuple[str, str]]:
    """``(where, dotted name)`` for every ``from trl_plugins... import X``, ``trl_plugins.a.B`` and import string."""
    names = []
    for path in DOCS:
        text = path.read_text()
        where = str(path.relative_to(REPO))
        for module, imported in _FROM_IMPORT.findall(text):
            names += [(where, f"{module}.{n.strip()}") for n in imported.split(",") if n.strip()]
        names += [(where, dotted) for dotted in _DOTTED.findall(text)]
        names += [(where, f"{module}.{attr}") for module, attr in _IMPORT_STRING.findall(text)]
    return sorted(set(names))


def _resolve(dotted: str):
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:n]))
        except ModuleNotFoundError:
            continue
        for attr in parts[n:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def test_the_docs_show_names_that_exist():
    names = _doc_names()
    assert len(names) > 10  # the patterns still find the docs' names
    missing = []
    for where, dotted in names:
        try:
            _resolve(dotted)
        except (ImportError, AttributeError) as exc:
            missing.append(f"{where}: {dotted} ({type(exc).__name__}: {exc})")
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("module, names", [
    ("trl_plugins.trainers.orpo", ["ORPOTrainer", "ORPOConfig"]),
    ("trl_plugins.trainers.mdpo", ["MDPOTrainer", "MDPOConfig"]),
    ("trl_plugins.trainers.kto_weighted", ["KTOWeightedTrainer", "KTOWeightedConfig"]),
    ("trl_plugins.trainers.margin_rm", ["MarginRewardTrainer", "MarginRewardConfig"]),
    ("trl_plugins.trainers.raft", ["RAFTTrainer", "RAFTConfig"]),
])
def test_each_method_package_exports_its_trainer_and_config(module, names):
    imported = importlib.import_module(module)
    assert all(hasattr(imported, name) for name in names)


# -- private names stay in their module ------------------------------------------------------------------------------
def _private_uses(name: str, tree: ast.Module, is_package: bool, modules: set[str]) -> list[str]:
    """``from <package module> import _name`` and ``<package module alias>._name`` in module ``name``."""
    found, aliases = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                source = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "trl_plugins":
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{name}: from {source} import {alias.name}")
                if f"{source}.{alias.name}" in modules:
                    aliases.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            aliases |= {alias.asname for alias in node.names if alias.asname and alias.name in modules}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            found.append(f"{name}: {node.value.id}.{node.attr}")
    return found


def test_no_module_imports_another_modules_private_name():
    modules = _modules()
    found = [use for name, (tree, is_package) in modules.items()
             for use in _private_uses(name, tree, is_package, set(modules))]
    assert not found, "\n".join(found)


def test_the_private_name_rule_sees_imports_and_attributes():
    source = ("from .selection import _by_group, best_of_n\nfrom ..checks import lengths\n"
              "from trl_plugins.sampling import fast_generation as fast\nlengths._limit(1)\nfast.SLACK\n")
    found = _private_uses("trl_plugins.sampling.pairs", ast.parse(source), False,
                          {"trl_plugins.checks.lengths", "trl_plugins.sampling.fast_generation"})
    assert found == ["trl_plugins.sampling.pairs: from trl_plugins.sampling.selection import _by_group",
                     "trl_plugins.sampling.pairs: lengths._limit"]


# -- only the engine's stages call a generation backend -----------------------------------------------------------
# (and a judge in score mode, which writes its verdict with the judge model, not the policy's samples: judge.py)
ENGINE_STAGES = {"trl_plugins.sampling.engine", "trl_plugins.sampling.judge"}


def _backend_calls(tree: ast.Module) -> list[str]:
    """``<something named backend>.generate(...)`` calls: a generation backend asked for samples."""
    return [ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute) and node.func.attr == "generate"
            and "backend" in ast.unparse(node.func.value).lower()]


def test_only_the_engine_stages_call_a_generation_backend():
    calls = {name: _backend_calls(tree) for name, (tree, _) in _modules().items()}
    assert calls["trl_plugins.sampling.engine"], "the rule no longer sees the engine's own call"
    assert not {name: found for name, found in calls.items() if found and name not in ENGINE_STAGES}
    assert _backend_calls(ast.parse("TransformersBackend(m, t).generate(p, 1, params, seed=0)"))
