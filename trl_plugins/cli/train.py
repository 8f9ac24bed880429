"""``trl-plugins train NAME --config RECIPE.yaml [--key value ...] [--accelerate_config single_gpu|PATH]``: works
in-process under ``accelerate launch -m trl_plugins train ...`` and re-launches itself under accelerate when the
command line or the recipe names a launcher option (``accelerate_config``, ``num_processes``, any ``accelerate
launch`` option), as ``trl dpo --config`` does; the command line wins over the recipe. The recipe is checked against
the launch once before the processes start."""

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
    raise UsageError(f"accelerate_config {value!r} is neither a file nor a shipped config ({available})")


def launch_request(spec, argv: list[str]) -> tuple[list[str], list[str]] | None:
    """``(accelerate launch arguments, the train arguments left)`` when the recipe or the command line names launcher
    options, else None. The recipe's come first, the command line's after (the last value wins); ``accelerate_config``
    becomes ``--config_file``."""
    from ..run.distributed import ACCELERATE_CONFIG, launch_flag, split_launch_flags
    from ..run.recipe import StrictParser, load_yaml, resolve_recipe, split_config_flag

    recipe_value, rest = split_config_flag(argv)
    names = StrictParser(spec.load()[1]).launch_names
    recipe = load_yaml(resolve_recipe(spec, recipe_value)) if recipe_value else {}
    from_recipe = {key: value for key, value in recipe.items() if key in names}
    cli_words, _ = split_launch_flags(rest, names)
    if not from_recipe and not cli_words:
        return None
    _, script_argv = split_launch_flags(argv, names)
    config_file, words = from_recipe.pop(ACCELERATE_CONFIG, None), []
    for key, value in from_recipe.items():
        words += launch_flag(key, value, names[key])
    i = 0
    while i < len(cli_words):
        word = cli_words[i]
        if word.split("=", 1)[0] != f"--{ACCELERATE_CONFIG}":
            words.append(word)
        elif "=" in word:
            config_file = word.split("=", 1)[1]
        elif i + 1 < len(cli_words) and not cli_words[i + 1].startswith("--"):
            config_file, i = cli_words[i + 1], i + 1
        else:
            raise UsageError("--accelerate_config needs a name (single_gpu, multi_gpu, multi_cpu, zero2, zero3, fsdp, "
                             "cpu) or a path")
        i += 1
    if config_file is not None:
        words = ["--config_file", _resolve_accelerate_config(str(config_file)), *words]
    return words, script_argv


def _relaunch_under_accelerate(spec, words: list[str], script_argv: list[str]) -> int:
    """``accelerate launch WORDS -m trl_plugins train NAME ...``, after checking the recipe against that launch."""
    from accelerate.commands.launch import launch_command, launch_command_parser

    script_args = ["train", spec.name, *script_argv]
    launch_args = launch_command_parser().parse_args([*words, "-m", "trl_plugins", *script_args])
    _check_before_launch(spec, script_argv, launch_args.config_file, launch_args.num_processes)
    launch_command(launch_args)
    return 0


def _check_before_launch(spec, argv: list[str], config_file: str | None, num_processes: int | None) -> None:
    """The recipe against the launch, once, before accelerate starts the processes (they check again)."""
    from ..checks.packages import check_packages
    from ..run.distributed import check_installed, check_launch, launch_from_config
    from ..run.recipe import parse_run

    launch = launch_from_config(config_file, num_processes)
    check_installed(launch)
    parsed = parse_run(spec, argv)
    method = spec.load_method()(spec)
    check_launch(method, parsed.model_args, parsed.training_args, launch, parsed.where)
    check_packages(parsed.training_args, parsed.model_args, parsed.where)


def run(args, rest: list[str]) -> int:
    from ..run import flow
    from ..run.distributed import under_launcher

    spec = resolve_trainer(NAME, args.name)
    if print_recipe_help(NAME, spec, rest):
        return 0
    if not under_launcher():
        request = launch_request(spec, rest)
        if request is not None:
            return _relaunch_under_accelerate(spec, *request)
    flow.train(flow.prepare_run(spec, rest))
    return 0
