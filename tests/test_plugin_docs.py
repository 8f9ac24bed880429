"""docs/plugins.md names every embedded dataset and model, and every LengthRule / MemoryProfile argument, that the
code has (a new one without a docs row fails here). Every hook's section: tests/test_registry.py."""

from __future__ import annotations

import dataclasses

from helpers import REPO

DOC = (REPO / "docs" / "plugins.md").read_text()


def test_every_embedded_dataset_and_model_is_documented():
    from trl_plugins.embedded import EMBEDDED_DATASETS
    from trl_plugins.embedded.models import BUILT_MODELS, PACKAGED_MODELS

    for name in EMBEDDED_DATASETS:
        assert f"| `{name}` |" in DOC, name
    for name in {*PACKAGED_MODELS, *BUILT_MODELS}:
        assert f"`embedded:{name}`" in DOC, name


def test_every_length_rule_and_memory_profile_argument_is_documented():
    from trl_plugins.checks.lengths import LengthRule
    from trl_plugins.planning.memory_plan import MemoryProfile

    for cls in (LengthRule, MemoryProfile):
        for field in dataclasses.fields(cls):
            assert f"`{field.name}`" in DOC, f"{cls.__name__}.{field.name}"

