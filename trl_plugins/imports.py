"""Import strings and package folders, resolved without importing more than needed.

``import_string("pkg.module:Attr", what)`` imports lazily what plugins and catalogues name by string (so that
listing plugins never imports torch); ``resource_dir("pkg:sub/dir")`` finds a package's data folder (recipes).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

from .errors import PluginError

_IMPORT_STRING = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def is_import_string(value: object) -> bool:
    """Whether ``value`` has the form ``"pkg.module:Attr"`` (nothing is imported)."""
    return isinstance(value, str) and bool(_IMPORT_STRING.match(value))


def import_string(path: str, what: str) -> Any:
    """Import ``"pkg.module:Attr"``; failures become one-line :class:`PluginError` naming ``what``."""
    module_name, _, attr = path.partition(":")
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # noqa: BLE001 - any import failure is reported the same way
        raise PluginError(f"{what}: cannot import {path!r}: {type(exc).__name__}: {exc}") from exc
    return obj


def resource_dir(spec: str) -> Path | None:
    """Resolve ``"package:sub/dir"`` to a directory, without importing anything but the package itself."""
    package, _, sub = spec.partition(":")
    if package == "trl_plugins":
        here = Path(__file__).resolve().parent
        for candidate in (here / sub, here.parent / sub):  # installed wheel, then source checkout
            if candidate.is_dir():
                return candidate
        return None
    try:
        import importlib.resources as resources

        path = Path(str(resources.files(package).joinpath(sub)))
    except Exception:  # noqa: BLE001
        return None
    return path if path.is_dir() else None
