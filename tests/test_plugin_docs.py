"""docs/plugins.md names every embedded dataset and model, and every LengthRule / MemoryProfile argument, that the
code has (a new one without a docs row fails here); every hook is documented, called, used by the built-ins and
implemented by a test plugin."""

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


def test_every_hook_is_documented_called_by_the_registry_and_implemented_by_plugins():
    """Each hook of hookspecs.py has its docs/plugins.md section, is called by the registry for every plugin, is
    implemented by the built-ins (builtin.py: they register like any plugin) and by a plugin the tests install
    (tests/plugins/*, trained or listed by tests/test_registry.py and tests/test_generation_backends.py)."""
    import inspect

    from trl_plugins import builtin, hookspecs, registry

    hooks = [name for name, value in vars(hookspecs).items() if getattr(value, "trl_plugins_spec", None)]
    assert len(hooks) >= 3, hooks
    plugins = "".join(path.read_text() for path in (REPO / "tests" / "plugins").rglob("*.py")
                      if "misspelled" not in path.parts and "broken" not in path.parts)
    for hook in hooks:
        assert f"\n## {hook}\n" in DOC, f"docs/plugins.md has no section for {hook}"
        assert f"self.pm.hook.{hook}" in inspect.getsource(registry.Registry.add_plugin), hook
        assert callable(getattr(builtin, hook, None)), f"the built-ins do not register through {hook}"
        assert f"def {hook}(register)" in plugins, f"no test plugin implements {hook}"
