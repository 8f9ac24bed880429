"""The plugin registry: loads entry points of the group ``trl_plugins`` and collects trainers, reward functions and
generation backends.

Loading and listing import nothing heavy (no torch, transformers or trl): a plugin registers *import strings*, and
:meth:`TrainerSpec.load` imports the trainer only when a run needs it.

Each entry point is loaded on its own. One that fails to import, raises in its hook, registers something malformed
or implements a misspelled hook is reported as a :class:`PluginLoadWarning` naming its distribution and skipped;
``TRL_PLUGINS_STRICT=1`` turns that into an error. A trainer (reward function, generation backend) name registered
twice is always an error naming both distributions. The same distribution found twice on ``sys.path`` is loaded once.

Environment variables (like pytest's ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``/``PYTEST_PLUGINS``):

- ``TRL_PLUGINS_DISABLE_PLUGIN_AUTOLOAD=1``: load no third-party entry point, except those in ``TRL_PLUGINS_PLUGINS``.
- ``TRL_PLUGINS_PLUGINS=a,b``: allow-list of third-party plugins (entry-point or distribution names); a name that is
  no entry point is imported as a module and registered as a plugin (handy for a local, unpackaged plugin).
- ``TRL_PLUGINS_DISABLE=a,b``: deny-list (entry-point or distribution names; ``builtin`` disables the built-ins).
- ``TRL_PLUGINS_STRICT=1``: a broken plugin is an error instead of a warning.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import os
import re
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError, UsageError
from .formats import FORMATS
from .imports import import_string, is_import_string

BUILTIN_DISTRIBUTION = "trl-plugins"
ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME

MODEL_KINDS = ("causal-lm", "sequence-classification", "vision-language")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class PluginLoadWarning(UserWarning):
    """A plugin could not be loaded and was skipped."""


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _csv_env(name: str) -> set[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return {item.strip() for item in value.split(",") if item.strip()}


def normalize_name(name: str) -> str:
    return name.strip().lower().replace("_", "-")


@dataclass(frozen=True)
class PluginSource:
    """Where a registration came from: an entry point of a distribution, or a module named by the user."""

    plugin: str
    distribution: str
    version: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r} of {self.distribution} {self.version}".rstrip()


class _Provided:
    """What every registration knows about the plugin that made it."""

    source: PluginSource

    @property
    def distribution(self) -> str:
        return self.source.distribution

    @property
    def version(self) -> str:
        return self.source.version

    def as_dict(self) -> dict[str, Any]:
        """The registration's fields (tuples as lists) and where it came from, as ``list --json`` prints them."""
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if k != "source"}
        data.update(distribution=self.distribution, version=self.version, plugin=self.source.plugin)
        return data


@dataclass(frozen=True)
class TrainerSpec(_Provided):
    """A registered trainer: import strings plus what the CLI needs to check data without importing it."""

    name: str
    trainer: str
    config: str
    summary: str
    paper: str | None
    data_format: str
    required_columns: tuple[str, ...]
    optional_columns: tuple[str, ...]
    model_kind: str
    other_formats: tuple[str, ...] = field(default=(), kw_only=True)
    method: str | None
    recipes: str | None
    source: PluginSource = field(compare=False)

    @property
    def columns(self) -> dict[str, list[str]]:
        return {"required": list(self.required_columns), "optional": list(self.optional_columns)}

    def load(self) -> tuple[type, type]:
        """Import and return ``(trainer_class, config_class)``."""
        what = f"trainer {self.name!r} ({self.distribution})"
        return import_string(self.trainer, what), import_string(self.config, what)

    def load_method(self) -> type:
        """The method's run hooks: its registered :class:`~trl_plugins.method.Method` subclass, or the base."""
        from .method import Method

        if self.method is None:
            return Method
        cls = import_string(self.method, f"method of trainer {self.name!r} ({self.distribution})")
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise PluginError(f"trainer {self.name!r} ({self.distribution}): method {self.method!r} is not a "
                              "subclass of trl_plugins.method.Method")
        return cls

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "columns": self.columns}


@dataclass(frozen=True)
class RewardFunctionSpec(_Provided):
    """A registered reward function with TRL's signature ``f(prompts, completions, **columns) -> list[float|None]``."""

    name: str
    function: str
    summary: str
    source: PluginSource = field(compare=False)
    reads_columns: tuple[str, ...] = ()  # dataset columns it reads; a run whose data lacks one stops before loading

    def load(self):
        return import_string(self.function, f"reward function {self.name!r} ({self.distribution})")


@dataclass(frozen=True)
class GenerationBackendSpec(_Provided):
    """A registered generation backend: ``backend(model, tokenizer)`` makes the object the sampling engine generates
    with (``trl_plugins.sampling.generation.GenerationBackend``)."""

    name: str
    backend: str
    summary: str
    source: PluginSource = field(compare=False)

    def load(self):
        return import_string(self.backend, f"generation backend {self.name!r} ({self.distribution})")


class _Registration:
    """Collects one plugin's registrations; committed only if its hooks finish without error."""

    def __init__(self, source: PluginSource):
        self.source = source
        self.trainers: list[TrainerSpec] = []
        self.rewards: list[RewardFunctionSpec] = []
        self.backends: list[GenerationBackendSpec] = []

    def _check_name(self, kind: str, name: Any) -> str:
        if not isinstance(name, str) or not _NAME_RE.match(normalize_name(name)):
            raise PluginError(f"{self.source}: invalid {kind} name {name!r} (use lowercase letters, digits, '-')")
        return normalize_name(name)

    def _check_import(self, what: str, value: Any) -> str:
        if not is_import_string(value):
            raise PluginError(f"{self.source}: {what} must be an import string 'package.module:Name', got {value!r}")
        return value

    def register_trainer(
        self,
        name: str,
        trainer: str,
        config: str,
        *,
        summary: str = "",
        paper: str | None = None,
        data_format: str = "preference",
        required_columns: tuple[str, ...] | list[str] | None = None,
        optional_columns: tuple[str, ...] | list[str] | None = None,
        model_kind: str = "causal-lm",
        method: str | None = None,
        recipes: str | None = None,
        other_formats: tuple[str, ...] | list[str] = (),
    ) -> None:
        name = self._check_name("trainer", name)
        self._check_import(f"trainer {name!r}: trainer", trainer)
        self._check_import(f"trainer {name!r}: config", config)
        if method is not None:
            self._check_import(f"trainer {name!r}: method", method)
        for fmt in (data_format, *other_formats):
            if fmt not in FORMATS:
                raise PluginError(
                    f"{self.source}: trainer {name!r}: unknown data_format {fmt!r} (known: {', '.join(FORMATS)})"
                )
        if model_kind not in MODEL_KINDS:
            raise PluginError(
                f"{self.source}: trainer {name!r}: unknown model_kind {model_kind!r} (known: {', '.join(MODEL_KINDS)})"
            )
        data = FORMATS[data_format]
        required = tuple(data.required if required_columns is None else required_columns)
        optional = tuple(data.optional if optional_columns is None else optional_columns)
        for col in required + optional:
            if not isinstance(col, str) or not col:
                raise PluginError(f"{self.source}: trainer {name!r}: column names must be strings, got {col!r}")
        self.trainers.append(
            TrainerSpec(
                name=name,
                trainer=trainer,
                config=config,
                summary=str(summary).strip().splitlines()[0] if summary else "",
                paper=paper,
                data_format=data_format,
                required_columns=required,
                optional_columns=optional,
                model_kind=model_kind,
                method=method,
                recipes=recipes,
                source=self.source,
                other_formats=tuple(other_formats),
            )
        )

    def register_reward(self, name: str, function: str, *, summary: str = "",
                        reads_columns: tuple[str, ...] | list[str] = ()) -> None:
        name = self._check_name("reward function", name).replace("-", "_")
        self._check_import(f"reward function {name!r}: function", function)
        summary = str(summary).strip().splitlines()[0] if summary else ""
        if isinstance(reads_columns, str) or not all(isinstance(c, str) and c for c in reads_columns):
            raise PluginError(f"{self.source}: reward function {name!r}: reads_columns must be a list of column "
                              f"names, got {reads_columns!r}")
        self.rewards.append(RewardFunctionSpec(name=name, function=function, summary=summary, source=self.source,
                                               reads_columns=tuple(reads_columns)))

    def register_backend(self, name: str, backend: str, *, summary: str = "") -> None:
        name = self._check_name("generation backend", name)
        self._check_import(f"generation backend {name!r}: backend", backend)
        summary = str(summary).strip().splitlines()[0] if summary else ""
        self.backends.append(GenerationBackendSpec(name=name, backend=backend, summary=summary, source=self.source))


class Registry:
    """All trainers, reward functions and generation backends registered by the loaded plugins."""

    def __init__(self, strict: bool | None = None):
        self.strict = _truthy(os.environ.get("TRL_PLUGINS_STRICT")) if strict is None else strict
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.trainers: dict[str, TrainerSpec] = {}
        self.rewards: dict[str, RewardFunctionSpec] = {}
        self.backends: dict[str, GenerationBackendSpec] = {}

    # -- loading -------------------------------------------------------------------------------------------------
    def _report(self, message: str, exc: BaseException | None = None) -> None:
        if self.strict:
            raise PluginError(message + " (TRL_PLUGINS_STRICT=1)") from exc
        warnings.warn(message, PluginLoadWarning, stacklevel=3)

    def load_entry_points(self) -> None:
        allow = _csv_env("TRL_PLUGINS_PLUGINS")
        deny = _csv_env("TRL_PLUGINS_DISABLE") or set()
        autoload = not _truthy(os.environ.get("TRL_PLUGINS_DISABLE_PLUGIN_AUTOLOAD"))
        if allow is None and not autoload:
            allow = set()
        seen: set[tuple[str, str, str]] = set()
        named: set[str] = set()
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            dist_name = dist.name if dist is not None else "(unknown distribution)"
            version = dist.version if dist is not None else ""
            key = (normalize_name(dist_name), ep.name, ep.value)
            if key in seen:  # the same distribution found twice on sys.path (e.g. editable + site-packages)
                continue
            seen.add(key)
            names = {ep.name, dist_name, normalize_name(dist_name)}
            named |= names
            if names & deny:
                continue
            builtin = normalize_name(dist_name) == BUILTIN_DISTRIBUTION
            if not builtin and allow is not None and not (names & allow):
                continue
            source = PluginSource(plugin=ep.name, distribution=dist_name, version=version)
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not take down the others
                self._report(f"{source} failed to import ({type(exc).__name__}: {exc}); skipped", exc)
                continue
            self.add_plugin(plugin, source)
        for module_name in sorted((allow or set()) - named - deny):
            source = PluginSource(plugin=module_name, distribution=f"(module {module_name})", version="")
            try:
                plugin = importlib.import_module(module_name)
            except Exception as exc:  # noqa: BLE001
                self._report(f"{source} failed to import ({type(exc).__name__}: {exc}); skipped", exc)
                continue
            self.add_plugin(plugin, source)

    def add_plugin(self, plugin: Any, source: PluginSource | str) -> None:
        """Register a plugin object (module or instance with hookimpls) and collect what it registers."""
        if isinstance(source, str):
            source = PluginSource(plugin=source, distribution=f"(in-process {source})", version="")
        plugin_id = f"{source.distribution}:{source.plugin}"
        try:
            self.pm.register(plugin, name=plugin_id)
            self.pm.check_pending()  # catches misspelled hook names of this plugin
        except Exception as exc:  # noqa: BLE001 - pluggy.PluginValidationError and friends
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            self._report(f"{source} is not a valid plugin ({exc}); skipped", exc)
            return
        # Hooks are called one plugin at a time (not pluggy's call-all): each registration is then known to come
        # from this plugin's distribution (named in every error), and a plugin that raises is skipped whole while
        # the plugins before and after it keep what they registered.
        registration = _Registration(source)
        try:
            for hook, callback in (
                (self.pm.hook.register_trainers, registration.register_trainer),
                (self.pm.hook.register_reward_functions, registration.register_reward),
                (self.pm.hook.register_generation_backends, registration.register_backend),
            ):
                for impl in hook.get_hookimpls():
                    if impl.plugin is plugin:
                        impl.function(register=callback)
        except Exception as exc:  # noqa: BLE001
            self.pm.unregister(plugin)
            detail = str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"
            self._report(f"{source} failed while registering ({detail}); skipped", exc)
            return
        self._commit(registration)

    def _commit(self, registration: _Registration) -> None:
        for kind, table, items in (
            ("trainer", self.trainers, registration.trainers),
            ("reward function", self.rewards, registration.rewards),
            ("generation backend", self.backends, registration.backends),
        ):
            for item in items:
                other = table.get(item.name)
                if other is not None:
                    raise PluginError(
                        f"duplicate {kind} name {item.name!r}: registered by {other.source} "
                        f"and by {item.source}; uninstall one or disable it with TRL_PLUGINS_DISABLE"
                    )
                table[item.name] = item

    # -- lookup --------------------------------------------------------------------------------------------------
    def _lookup(self, kind: str, table: dict, name: str):
        key = normalize_name(name)
        if kind == "reward function":
            key = key.replace("-", "_")
        if key in table:
            return table[key]
        known = sorted(table)
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UsageError(f"unknown {kind} {name!r}{hint} (available: {', '.join(known) or 'none'})")

    def trainer(self, name: str) -> TrainerSpec:
        return self._lookup("trainer", self.trainers, name)

    def reward_function(self, name: str) -> RewardFunctionSpec:
        return self._lookup("reward function", self.rewards, name)

    def generation_backend(self, name: str) -> GenerationBackendSpec:
        return self._lookup("generation backend", self.backends, name)


_REGISTRY: Registry | None = None


def get_registry(reload: bool = False) -> Registry:
    """The process-wide registry, loaded from entry points on first use."""
    global _REGISTRY
    if _REGISTRY is None or reload:
        registry = Registry()
        registry.load_entry_points()
        _REGISTRY = registry
    return _REGISTRY
