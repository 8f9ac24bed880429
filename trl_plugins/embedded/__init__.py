"""Offline models and datasets that need no hub: ``embedded:NAME`` in ``model_name_or_path`` or ``dataset_name``.

Datasets take options through ``dataset_config`` as ``key=value`` pairs, e.g.
``dataset_config: "conversational=false,n_test=100"``. Each builder returns a ``DatasetDict`` with a held-out
``test`` split.
"""

from __future__ import annotations

import re

from ..errors import ConfigError, UsageError

_RATIO = re.compile(r"\d+(\.\d+)?:\d+(\.\d+)?")

# name -> "module:function" (imported only when used)
EMBEDDED_DATASETS = {
    "imdb-preference": "trl_plugins.embedded.reviews:imdb_preference",
    "rt-preference": "trl_plugins.embedded.reviews:rt_preference",
    "shapes-preference": "trl_plugins.embedded.shapes:shapes_preference",
    "imdb-kto": "trl_plugins.embedded.kto:imdb_kto",
    "imdb-rm-pairs": "trl_plugins.embedded.reward_pairs:imdb_rm_pairs",
    "imdb-openings": "trl_plugins.embedded.prompts:imdb_openings",
    "arithmetic": "trl_plugins.embedded.arithmetic:arithmetic",
}


def parse_options(options: str | None) -> dict:
    """``"a=1,b=false,c=text"`` -> ``{"a": 1, "b": False, "c": "text"}``."""
    import yaml

    result = {}
    for item in (options or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"dataset_config: expected key=value pairs separated by commas, got {item.strip()!r}")
        value = value.strip()
        # YAML 1.1 reads "1:4" as the base-60 integer 64, "-" as a list and "*" as a broken alias: keep such as text
        try:
            loaded = value if _RATIO.fullmatch(value) else yaml.safe_load(value)
        except yaml.YAMLError:
            loaded = value
        if isinstance(loaded, (list, dict)) and not value.startswith(("[", "{")):
            loaded = value
        result[key.strip()] = loaded
    return result


def load_embedded_dataset(name: str, options: str | None = None):
    import inspect

    from ..imports import import_string

    if name not in EMBEDDED_DATASETS:
        raise UsageError(f"unknown embedded dataset {name!r} (available: {', '.join(sorted(EMBEDDED_DATASETS))})")
    builder = import_string(EMBEDDED_DATASETS[name], f"embedded dataset {name!r}")
    kwargs = parse_options(options)
    accepted = inspect.signature(builder).parameters
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        raise ConfigError(
            f"dataset_config: embedded dataset {name!r} has no option {unknown[0]!r} "
            f"(options: {', '.join(accepted)})"
        )
    return builder(**kwargs)
