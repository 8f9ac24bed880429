"""``trl-plugins train NAME --config RECIPE.yaml [--key value ...] [--accelerate_config single_gpu|PATH]``: works
in-process under ``accelerate launch -m trl_plugins train ...`` and re-launches itself under accelerate with
``--accelerate_config`` (checking the recipe against the launch once before the processes start)."""

from __future__ import annotations

from ..errors import UsageError
from .resolve import print_recipe_help, resolve_trainer

NAME = "train"
HELP = "train with a recipe"
TAKES_RECIPE = True


def _resolve_accelerate_config(value: str) -> str:
    from pathlib import Path

    from ..imports import resource_dir

    if Path(value).is_file():
        return value
    root = resource_dir("trl_plugins:recipes/accelerate_configs")
    candidate = root / f"{value.removesuffix('.yaml')}.yaml" if root else None
    if candidate is not None and candidate.is_file():
        return str(candidate)
    available = ", ".join(sorted(p.stem for p in root.glob("*.yaml"))) if root else "none"
    raise UsageError(f"--accelerate_config {value!r} is neither a file nor a shipped config ({available})")


def _relaunch_under_accelerate(spec, rest: list[str]) -> int:
    """``--accelerate_config X`` -> ``accelerate launch --config_file X -m trl_plugins train NAME ...``."""
    index = rest.index("--accelerate_config")
    if index + 1 >= len(rest):
        raise UsageError("--accelerate_config needs a name (single_gpu, multi_gpu, multi_cpu, zero2, zero3, fsdp, cpu) or a path")
    config_file = _resolve_accelerate_config(rest[index + 1])
    script_args = ["train", spec.name] + rest[:index] + rest[index + 2 :]
    _check_before_launch(spec, script_args[2:], config_file)
    from accelerate.commands.launch import launch_command, launch_command_parser

    launch_args = launch_command_parser().parse_args(["--config_file", config_file, "-m", "trl_plugins", *script_args])
    launch_command(launch_args)
    return 0


def _check_before_launch(spec, argv: list[str], config_file: str) -> None:
    """The recipe against the launch, once, before accelerate starts the processes (they check again)."""
    from ..run.distributed import check_installed, check_launch, launch_from_config
    from ..run.recipe import parse_run

    check_installed(launch_from_config(config_file))
    parsed = parse_run(spec, argv)
    method = spec.load_method()(spec)
    check_launch(method, parsed.model_args, parsed.training_args, launch_from_config(config_file), parsed.where)


def run(args, rest: list[str]) -> int:
    from ..run import flow

    spec = resolve_trainer(NAME, args.name)
    if "--accelerate_config" in rest:
        return _relaunch_under_accelerate(spec, rest)
    if print_recipe_help(NAME, spec, rest):
        return 0
    flow.train(flow.prepare_run(spec, rest))
    return 0
