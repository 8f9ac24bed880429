"""Which multi-process launch a run is under, and the combinations of launch and recipe that cannot work, refused
in one line before any model loads. Docs: docs/distributed.md.

The launch is read from the accelerate config file (``trl-plugins train --accelerate_config X``, checked before
relaunching) or from the environment accelerate gives each process (``accelerate launch --config_file X -m
trl_plugins train ...``, checked in :func:`trl_plugins.run.flow.prepare_run`).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from ..errors import ConfigError

SHARDED = ("fsdp", "zero3")  # launches that shard the weights themselves across processes


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def launch_from_env() -> str:
    """``fsdp``, ``zero1``/``zero2``/``zero3``, ``ddp`` (several processes) or ``single``, from this process's env."""
    if _flag("ACCELERATE_USE_FSDP"):
        return "fsdp"
    if _flag("ACCELERATE_USE_DEEPSPEED"):
        return f"zero{os.environ.get('ACCELERATE_DEEPSPEED_ZERO_STAGE', '2')}"
    return "ddp" if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 else "single"


def launch_from_config(path: str | os.PathLike) -> str:
    """The same, from an accelerate config file."""
    import yaml

    config = yaml.safe_load(Path(path).read_text()) or {}
    kind = str(config.get("distributed_type", "NO")).upper()
    if kind == "FSDP":
        return "fsdp"
    if kind == "DEEPSPEED":
        return f"zero{(config.get('deepspeed_config') or {}).get('zero_stage', 2)}"
    return "ddp" if int(config.get("num_processes", 1) or 1) > 1 else "single"


def check_installed(launch: str) -> None:
    """A DeepSpeed launch needs DeepSpeed (checked before the recipe is parsed: transformers needs it then)."""
    if launch.startswith("zero") and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(f"{launch}: DeepSpeed is not installed: pip install 'trl-plugins[deepspeed]'")


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
