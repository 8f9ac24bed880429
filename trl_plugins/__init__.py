"""trl-plugins: alignment methods TRL does not ship, as TRL trainer subclasses discovered through pluggy.

Light on import: nothing here imports torch, transformers or trl. Trainer classes are imported when asked for::

    import trl_plugins
    ORPOTrainer, ORPOConfig = trl_plugins.get_trainer("orpo")
    trl_plugins.list_trainers()          # the registry's TrainerSpec records
    trl_plugins.resolve_model_path("embedded:smollm2-135m-instruct")   # the local checkpoint folder, for model=

    from trl_plugins.trainers.orpo import ORPOTrainer, ORPOConfig   # direct import works too

Plugin authors: see ``trl_plugins.hookspecs``, ``trl_plugins.method`` and docs/plugins.md.
"""

from __future__ import annotations

from .compat import quiet
from .hookspecs import hookimpl
from .models.loading import resolve_model_path
from .registry import GenerationBackendSpec, PluginLoadWarning, RewardFunctionSpec, TrainerSpec, get_registry

__version__ = "0.1.0"

quiet.install()  # other libraries' start-up lines a user cannot act on (trl_plugins/compat/quiet.py)

__all__ = [
    "GenerationBackendSpec",
    "PluginLoadWarning",
    "RewardFunctionSpec",
    "TrainerSpec",
    "__version__",
    "get_registry",
    "get_reward_function",
    "get_trainer",
    "hookimpl",
    "list_generation_backends",
    "list_reward_functions",
    "list_trainers",
    "resolve_model_path",
]


def list_trainers() -> list[TrainerSpec]:
    """All registered trainers, sorted by name."""
    return [spec for _, spec in sorted(get_registry().trainers.items())]


def list_reward_functions() -> list[RewardFunctionSpec]:
    """All registered reward functions, sorted by name."""
    return [spec for _, spec in sorted(get_registry().rewards.items())]


def list_generation_backends() -> list[GenerationBackendSpec]:
    """All registered generation backends (``generation_backend:`` in a sampling recipe), sorted by name."""
    return [spec for _, spec in sorted(get_registry().backends.items())]


def get_trainer(name: str) -> tuple[type, type]:
    """Import and return ``(TrainerClass, ConfigClass)`` of a registered trainer."""
    return get_registry().trainer(name).load()


def get_reward_function(name: str):
    """Import and return a registered reward function."""
    return get_registry().reward_function(name).load()
