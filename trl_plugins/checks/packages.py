"""What a recipe asks for that this machine cannot give, refused in one line before any model loads: a ``report_to``
integration that is not installed, an attention kernel (``attn_implementation``) without its package or device, an
optimizer whose package is missing, Liger kernels without liger-kernel. (A DeepSpeed config without DeepSpeed is
refused while the recipe is parsed, ``run/distributed.py``: transformers needs DeepSpeed to build the config.) Docs: docs/plugins.md ("Packages a recipe needs").

Every answer comes from transformers' own availability checks (``transformers.utils.import_utils``, the reporting
integrations, ``Trainer.get_optimizer_cls_and_kwargs``), so a check says yes exactly when training would.
"""

from __future__ import annotations

import re

from ..errors import ConfigError

_PIP = {"azure_ml": "azureml-core", "comet_ml": "comet-ml"}  # report_to name -> pip package, where they differ


def check_packages(training_args, model_args, where: str = "recipe") -> None:
    """Raise :class:`ConfigError` naming the first thing the run asks for that is not installed (or has no device)."""
    for problem in (_report_to(training_args), _attention(model_args, training_args), _optimizer(training_args),
                    _liger(training_args)):
        if problem:
            raise ConfigError(f"{where}: {problem}")


def _report_to(training_args) -> str | None:
    from transformers.integrations.integration_utils import (
        INTEGRATION_TO_CALLBACK,
        get_available_reporting_integrations,
    )

    names = training_args.report_to or []
    names = [names] if isinstance(names, str) else list(names)
    available = set(get_available_reporting_integrations())
    for name in names:
        if name in ("none", "all"):
            continue
        if name not in INTEGRATION_TO_CALLBACK:
            return f"report_to {name!r} is not an integration (known: {', '.join(sorted(INTEGRATION_TO_CALLBACK))})"
        if name not in available and name not in ("flyte", "kubeflow"):  # these two have no availability check
            return (f"report_to {name!r}: {name} is not installed (pip install {_PIP.get(name, name)}), or drop it "
                    f"from report_to")
    return None


def _attention(model_args, training_args) -> str | None:
    requested = getattr(model_args, "attn_implementation", None)
    init_kwargs = getattr(training_args, "model_init_kwargs", None)
    if isinstance(init_kwargs, dict) and init_kwargs.get("attn_implementation"):
        requested = init_kwargs["attn_implementation"]
    if not requested:
        return None
    from transformers.integrations.hub_kernels import is_kernel
    from transformers.modeling_flash_attention_utils import FLASH_ATTENTION_COMPATIBILITY_MATRIX
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.utils.import_utils import is_kernels_available, is_torch_flex_attn_available

    name = requested.removeprefix("paged|") if requested != "paged|eager" else requested
    flash = re.fullmatch(r"flash_attention_(\d)", name)
    if flash and int(flash.group(1)) in FLASH_ATTENTION_COMPATIBILITY_MATRIX:
        row = FLASH_ATTENTION_COMPATIBILITY_MATRIX[int(flash.group(1))]
        devices = [device for available, device in row["supported_devices"] if available()]
        if not devices:
            wanted = ", ".join(device for _, device in row["supported_devices"])
            return (f"attn_implementation {requested!r} runs on a GPU ({wanted}) and this machine has none; use sdpa "
                    "(or eager)")
        if not row["general_availability_check"](kernels_fallback_ok=True):
            return (f"attn_implementation {requested!r}: its package is not installed (flash_attention_2: pip install "
                    "flash-attn), and no kernel from the hub could stand in (pip install kernels, online once); "
                    "or use sdpa")
    elif name == "flex_attention" and not is_torch_flex_attn_available():
        return f"attn_implementation {requested!r} needs a torch with flex attention; use sdpa"
    elif is_kernel(name):
        if not is_kernels_available():
            return f"attn_implementation {requested!r} is a hub kernel and needs the kernels package: pip install kernels"
    elif name not in ["eager", *ALL_ATTENTION_FUNCTIONS.valid_keys()]:
        known = ", ".join(["eager", *ALL_ATTENTION_FUNCTIONS.valid_keys()])
        return f"attn_implementation {requested!r} is not an attention implementation (known: {known}, or a hub kernel)"
    return None


def _optimizer(training_args) -> str | None:
    """transformers' own optimizer lookup, without a model: it checks the optimizer's package before anything else
    (bitsandbytes, GaLore, APOLLO, LOMO, torchao, schedulefree, ...); what needs the model is checked later by it."""
    from transformers import Trainer

    try:
        Trainer.get_optimizer_cls_and_kwargs(training_args)
    except ImportError as exc:
        return f"optim {_value(training_args.optim)!r}: {str(exc).strip().splitlines()[0]}"
    except ValueError as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if "install" in text.lower() or "failed to import" in text.lower():
            return f"optim {_value(training_args.optim)!r}: {text}"
    return None


def _liger(training_args) -> str | None:
    from transformers.utils.import_utils import is_liger_kernel_available

    if getattr(training_args, "use_liger_kernel", False) and not is_liger_kernel_available():
        return "use_liger_kernel is set but liger-kernel is not installed: pip install liger-kernel"
    return None


def _value(option) -> str:
    return getattr(option, "value", option)
