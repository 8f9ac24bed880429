"""Which multi-process launch a run is under, and the combinations of launch and recipe that cannot work, refused
in one line before any model loads. Docs: docs/distributed.md.

The launch is read from the accelerate config file (``trl-plugins train --accelerate_config X``, checked before
relaunching) or from the environment accelerate gives each process (``accelerate launch --config_file X -m
trl_plugins train ...``, checked in :func:`trl_plugins.run.flow.prepare_run`). Recipe keys and flags that are
``accelerate launch`` options (``num_processes``, ...) or ``accelerate_config`` are the launcher's, as ``trl dpo
--config`` reads them (:func:`launch_options`, :func:`split_launch_flags`).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError

SHARDED = ("fsdp", "zero3")  # launches that shard the weights themselves across processes
ACCELERATE_CONFIG = "accelerate_config"  # TRL's CLI key: a shipped accelerate config's name, or a file
DEEPSPEED_MISSING = "DeepSpeed is not installed: pip install 'trl-plugins[deepspeed]'"


def launch_options() -> dict:
    """``accelerate launch``'s options by name (argparse actions), plus ``accelerate_config``: what TRL's CLI hands to
    the launcher when a recipe or the command line names them (a config field of the same name stays the config's)."""
    from accelerate.commands.launch import launch_command_parser

    options = {a.dest: a for a in launch_command_parser()._actions if a.option_strings and a.dest != "help"}
    options[ACCELERATE_CONFIG] = None
    return options


def launch_flag(name: str, value, action) -> list[str]:
    """One launcher option as command-line words (a switch is written only when true)."""
    if action is not None and action.nargs == 0:
        return [f"--{name}"] if str(value).strip().lower() in ("true", "1", "yes") else []
    return [f"--{name}", str(value)]


def split_launch_flags(argv: list[str], names) -> tuple[list[str], list[str]]:
    """``(launcher flags, the rest)`` of a command line: ``--num_processes 2``, ``--accelerate_config=zero2``,
    ``--multi_gpu`` (``names``: :func:`launch_options` less the config's own fields)."""
    launch, rest, i = [], [], 0
    while i < len(argv):
        word = argv[i]
        name = word[2:].split("=", 1)[0] if word.startswith("--") else None
        if name is None or name not in names:
            rest.append(word)
        elif "=" in word or (names[name] is not None and names[name].nargs == 0):
            launch.append(word)
        else:
            launch += argv[i:i + 2]
            i += 1
        i += 1
    return launch, rest


def under_launcher() -> bool:
    """This process was started by ``accelerate launch`` (every launcher sets ACCELERATE_MIXED_PRECISION) or torchrun:
    the launch keys of its recipe were the launcher's, and it does not launch again."""
    return "ACCELERATE_MIXED_PRECISION" in os.environ or "LOCAL_RANK" in os.environ


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def launch_from_env() -> str:
    """``fsdp``, ``zero1``/``zero2``/``zero3``, ``ddp`` (several processes) or ``single``, from this process's env."""
    if _flag("ACCELERATE_USE_FSDP"):
        return "fsdp"
    if _flag("ACCELERATE_USE_DEEPSPEED"):
        return f"zero{os.environ.get('ACCELERATE_DEEPSPEED_ZERO_STAGE', '2')}"
    return "ddp" if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 else "single"


def launch_from_config(path: str | os.PathLike | None, num_processes: int | None = None) -> str:
    """The same, from an accelerate config file (None: accelerate's defaults) and a ``num_processes`` that overrides
    the file's."""
    import yaml

    config = (yaml.safe_load(Path(path).read_text()) or {}) if path else {}
    kind = str(config.get("distributed_type", "NO")).upper()
    if kind == "FSDP":
        return "fsdp"
    if kind == "DEEPSPEED":
        return f"zero{(config.get('deepspeed_config') or {}).get('zero_stage', 2)}"
    processes = num_processes if num_processes is not None else config.get("num_processes", 1)
    return "ddp" if int(processes or 1) > 1 else "single"


def check_installed(launch: str) -> None:
    """A DeepSpeed launch needs DeepSpeed (checked before the recipe is parsed: transformers needs it then)."""
    if launch.startswith("zero") and not deepspeed_installed():
        raise ConfigError(f"{launch}: {DEEPSPEED_MISSING}")


def deepspeed_installed() -> bool:
    from transformers.integrations import is_deepspeed_available

    return bool(is_deepspeed_available())


def check_launch(method, model_args, training_args, launch: str, where: str = "recipe") -> None:
    """Refuse, in one line, a launch that cannot run this recipe with this method (a :class:`trl_plugins.method.Method`
    instance: its ``spec.name`` and whether it ``generates``)."""
    check_installed(launch)
    if launch not in SHARDED:
        return
    name = "FSDP" if launch == "fsdp" else "DeepSpeed ZeRO-3"
    if method.generates:
        raise ConfigError(
            f"{method.spec.name} under {name}: the sampling trainers generate with the policy on every process, and with "
            "sharded weights every process would have to run the same number of forward passes; launch with "
            "multi_gpu (DDP) or zero2"
        )
    if getattr(model_args, "load_in_8bit", False):
        raise ConfigError(f"{where}: load_in_8bit under {name}: 8-bit weights cannot be sharded; use load_in_4bit "
                          "with bnb_4bit_quant_storage, or launch with multi_gpu (DDP) or zero2")
    if getattr(model_args, "load_in_4bit", False):
        dtype = str(getattr(model_args, "dtype", None) or "")
        storage = str(getattr(model_args, "bnb_4bit_quant_storage", None) or "")
        if dtype in ("", "auto") or storage != dtype:
            raise ConfigError(
                f"{where}: QLoRA under {name} needs bnb_4bit_quant_storage equal to the model dtype (e.g. dtype: "
                f"bfloat16 and bnb_4bit_quant_storage: bfloat16; got {storage or 'unset'} and {dtype or 'unset'}) so "
                "that the 4-bit weights can be sharded as floats"
            )


def shards_weights() -> bool:
    """Whether this process runs under FSDP or ZeRO-3 (quantized weights then get no device map)."""
    return launch_from_env() in SHARDED
