"""The plugin registry: entry points, isolation of broken plugins, duplicates, env allow/deny lists, laziness."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import trl_plugins
from trl_plugins.errors import PluginError
from trl_plugins.registry import PluginLoadWarning, Registry, get_registry


def test_builtin_trainers_come_through_the_entry_point_group():
    spec = get_registry(reload=True).trainer("orpo")
    assert spec.distribution == "trl-plugins"
    assert spec.source.plugin == "builtin"  # pyproject: [project.entry-points.trl_plugins] builtin = ...
    assert spec.columns == {"required": ["chosen", "rejected"], "optional": ["prompt"]}


def test_listing_and_resolving_import_no_torch_transformers_or_trl():
    code = (
        "import sys, trl_plugins\n"
        "trl_plugins.list_trainers(); trl_plugins.list_reward_functions()\n"
        "trl_plugins.get_registry().trainer('orpo')\n"
        "heavy = [m for m in ('torch', 'transformers', 'trl') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    code = (
        "import sys\nfrom trl_plugins.cli.main import main\nassert main(['list']) == 0\n"
        "heavy = [m for m in ('torch', 'transformers', 'trl') if m in sys.modules]\nassert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_third_party_plugin_is_listed_and_resolved(with_plugins, run_cli):
    registry = with_plugins("example")
    spec = registry.trainer("example-sft")
    assert (spec.distribution, spec.version) == ("trl-plugins-example", "1.2.3")
    assert spec.required_columns == ("prompt", "completion")
    trainer_cls, config_cls = trl_plugins.get_trainer("example-sft")
    assert trainer_cls.__name__ == "ExampleSFTTrainer" and "example_knob" in config_cls.__dataclass_fields__
    reward = trl_plugins.get_reward_function("example_length")
    assert reward(["p"], ["one two three"]) == [0.3]
    code, out, _ = run_cli("list", "--json")
    listed = {item["name"]: item for item in json.loads(out)}
    assert listed["example-sft"]["distribution"] == "trl-plugins-example"
    assert {"name", "distribution", "version", "summary", "columns"} <= set(listed["orpo"])
    code, out, _ = run_cli("list", "--rewards", "--json")
    assert "example_length" in {item["name"] for item in json.loads(out)}


def test_third_party_plugin_trains(with_plugins, run_cli, tiny_model_dir, tmp_path):
    from helpers import write_jsonl

    with_plugins("example")
    data = write_jsonl(tmp_path / "sft.jsonl", [{"prompt": "hello", "completion": " world ."}] * 8)
    code, out, err = run_cli(
        "train", "example-sft", "--model_name_or_path", tiny_model_dir, "--dataset_name", data,
        "--output_dir", tmp_path / "out", "--max_steps", "2", "--per_device_train_batch_size", "4",
        "--use_cpu", "true", "--bf16", "false", "--report_to", "none", "--example_knob", "3",
        "--gradient_checkpointing", "false", "--save_strategy", "no",
    )
    assert code == 0, err
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert "example-sft done" in out


def test_broken_plugin_is_skipped_with_a_warning(with_plugins, run_cli):
    with pytest.warns(PluginLoadWarning, match="trl-plugins-broken.*failed to import.*broken on purpose"):
        registry = with_plugins("broken", "example")
    assert "orpo" in registry.trainers and "example-sft" in registry.trainers
    code, out, err = run_cli("list")
    assert code == 0 and "orpo" in out


def test_broken_plugin_warning_in_the_cli_is_one_line(plugin_sites):
    env = dict(os.environ, PYTHONPATH=plugin_sites["broken"])
    proc = subprocess.run([sys.executable, "-m", "trl_plugins", "list"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0 and "orpo" in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: plugin 'broken' of trl-plugins-broken 0.0.1")


def test_strict_mode_turns_a_broken_plugin_into_an_error(with_plugins, monkeypatch):
    monkeypatch.setenv("TRL_PLUGINS_STRICT", "1")
    with pytest.raises(PluginError, match="trl-plugins-broken.*TRL_PLUGINS_STRICT"):
        with_plugins("broken")


def test_duplicate_trainer_name_names_both_distributions(plugin_sites):
    env = dict(os.environ, PYTHONPATH=plugin_sites["duplicate"])
    proc = subprocess.run([sys.executable, "-m", "trl_plugins", "list"], env=env, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "duplicate trainer name 'orpo'" in proc.stderr
    assert "trl-plugins 0.1.0" in proc.stderr and "trl-plugins-duplicate 0.0.1" in proc.stderr


def test_misspelled_hook_is_caught_by_check_pending(with_plugins):
    with pytest.warns(PluginLoadWarning, match="register_trainer"):
        registry = with_plugins("misspelled")
    assert "never" not in registry.trainers and "orpo" in registry.trainers


def test_deny_list_allow_list_and_autoload_switch(with_plugins, monkeypatch):
    monkeypatch.setenv("TRL_PLUGINS_DISABLE", "trl-plugins-example")
    assert "example-sft" not in with_plugins("example").trainers
    monkeypatch.delenv("TRL_PLUGINS_DISABLE")
    monkeypatch.setenv("TRL_PLUGINS_DISABLE_PLUGIN_AUTOLOAD", "1")
    registry = with_plugins("example")
    assert "example-sft" not in registry.trainers and "orpo" in registry.trainers  # built-ins still load
    monkeypatch.setenv("TRL_PLUGINS_PLUGINS", "example")
    assert "example-sft" in with_plugins("example").trainers
    monkeypatch.setenv("TRL_PLUGINS_DISABLE", "builtin")
    assert "orpo" not in with_plugins("example").trainers


def test_module_plugin_named_in_the_allow_list(monkeypatch, tmp_path):
    (tmp_path / "my_local_plugin.py").write_text(
        "from trl_plugins import hookimpl\n"
        "@hookimpl\n"
        "def register_reward_functions(register):\n"
        "    register('local_reward', function='my_local_plugin:f', summary='local')\n"
        "def f(prompts, completions, **kw):\n    return [1.0] * len(completions)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("TRL_PLUGINS_PLUGINS", "my_local_plugin")
    registry = get_registry(reload=True)
    try:
        assert registry.reward_function("local_reward").distribution == "(module my_local_plugin)"
    finally:
        import trl_plugins.registry as r

        r._REGISTRY = None


class _Plugin:
    def __init__(self, trainers=(), rewards=(), raise_in_hook=None):
        self.trainers, self.rewards, self.raise_in_hook = trainers, rewards, raise_in_hook

    @trl_plugins.hookimpl
    def register_trainers(self, register):
        for kwargs in self.trainers:
            register(**kwargs)
        if self.raise_in_hook:
            raise self.raise_in_hook

    @trl_plugins.hookimpl
    def register_reward_functions(self, register):
        for kwargs in self.rewards:
            register(**kwargs)


GOOD = dict(name="good", trainer="pkg.mod:T", config="pkg.mod:C", summary="fine")


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(GOOD, trainer="not an import string"), "import string"),
        (dict(GOOD, name="Bad Name!"), "invalid trainer name"),
        (dict(GOOD, data_format="pictures"), "unknown data_format"),
        (dict(GOOD, model_kind="rnn"), "unknown model_kind"),
        (dict(GOOD, required_columns=("prompt", 3)), "column names"),
    ],
)
def test_malformed_registration_skips_the_whole_plugin(bad, message):
    registry = Registry(strict=False)
    with pytest.warns(PluginLoadWarning, match=message):
        registry.add_plugin(_Plugin(trainers=[GOOD, bad]), "faulty")
    assert registry.trainers == {}  # nothing half-registered


def test_exception_inside_a_hook_is_isolated():
    registry = Registry(strict=False)
    with pytest.warns(PluginLoadWarning, match="RuntimeError: kaboom"):
        registry.add_plugin(_Plugin(trainers=[GOOD], raise_in_hook=RuntimeError("kaboom")), "faulty")
    registry.add_plugin(_Plugin(trainers=[dict(GOOD, name="other")]), "fine")
    assert list(registry.trainers) == ["other"]


def test_duplicate_reward_function_is_an_error():
    registry = Registry(strict=False)
    reward = dict(name="r", function="pkg.mod:f")
    registry.add_plugin(_Plugin(rewards=[reward]), "first")
    with pytest.raises(PluginError, match="duplicate reward function name 'r'.*first.*second"):
        registry.add_plugin(_Plugin(rewards=[reward]), "second")


def test_a_reward_function_declares_the_columns_it_reads():
    registry = Registry(strict=False)
    registry.add_plugin(_Plugin(rewards=[dict(name="r", function="pkg.mod:f", reads_columns=["answer"])]), "p")
    assert registry.reward_function("r").reads_columns == ("answer",)
    assert registry.reward_function("r").as_dict()["reads_columns"] == ["answer"]
    with pytest.warns(PluginLoadWarning, match="reads_columns must be a list"):
        registry.add_plugin(_Plugin(rewards=[dict(name="q", function="pkg.mod:f", reads_columns="answer")]), "bad")
    assert "q" not in registry.rewards
    assert trl_plugins.get_registry().reward_function("exact_match").reads_columns == ("answer",)


def test_unknown_names_suggest_the_closest():
    from trl_plugins.errors import UsageError

    with pytest.raises(UsageError, match="unknown trainer 'orpoo'; did you mean 'orpo'"):
        get_registry(reload=True).trainer("orpoo")


def test_same_distribution_found_twice_registers_once(plugin_sites):
    site = plugin_sites["example"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([site, site + os.sep]))
    proc = subprocess.run([sys.executable, "-m", "trl_plugins", "list", "--json"], env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert [item["name"] for item in json.loads(proc.stdout)].count("example-sft") == 1


def test_every_hook_is_documented_and_tested():
    """datasette-style: each hookspec has a docstring, a section in docs/plugins.md and a test that uses it (a plugin
    written by a test, or one of tests/plugins/ that a test installs); the registry calls it for every plugin and the
    built-ins register through it."""
    import inspect
    from pathlib import Path

    import trl_plugins.hookspecs as hookspecs
    from trl_plugins import builtin

    hooks = [name for name in dir(hookspecs) if name.startswith("register_")]
    docs = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    here = Path(__file__).parent
    tests = "".join(p.read_text() for p in [*here.glob("test_*.py"), *(here / "plugins").rglob("*.py")]
                    if "misspelled" not in p.parts)
    for hook in hooks:
        assert getattr(hookspecs, hook).__doc__, f"hook {hook} has no docstring"
        assert f"\n## {hook}\n" in docs, f"hook {hook} has no section in docs/plugins.md"
        assert f"def {hook}(" in tests, f"hook {hook} is not exercised by a test"
        assert f"self.pm.hook.{hook}" in inspect.getsource(Registry.add_plugin), f"the registry never calls {hook}"
        assert callable(getattr(builtin, hook, None)), f"the built-ins do not register through {hook}"
    assert hooks == ["register_generation_backends", "register_reward_functions", "register_trainers"]


def test_docs_formats_table_is_the_formats_module():
    """docs/plugins.md shows the one formats table of trl_plugins/formats.py, word for word."""
    from pathlib import Path

    from trl_plugins.formats import markdown_table

    text = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    start = text.index("<!-- formats table")
    table = text[text.index("\n", start) + 1 : text.index("<!-- end formats table -->")].strip()
    assert table == markdown_table()


def test_method_hooks_default_and_refuse_non_methods():
    """No ``method=``: the base Method (builds like a TRL trainer); a ``method`` that is no Method subclass is one
    PluginError naming the trainer; every built-in trainer's method is a Method subclass."""
    from trl_plugins.method import Method

    registry = Registry(strict=False)
    registry.add_plugin(_Plugin(trainers=[GOOD, dict(GOOD, name="odd", method="json:dumps")]), "p")
    assert registry.trainer("good").load_method() is Method
    with pytest.raises(PluginError, match="trainer 'odd'.*not a subclass of trl_plugins.method.Method"):
        registry.trainer("odd").load_method()
    for spec in get_registry(reload=True).trainers.values():
        assert issubclass(spec.load_method(), Method), spec.name
    assert Method(GOOD).check_data(None, "train", None, "train") == []
