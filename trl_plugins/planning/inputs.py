"""What the memory planner reads, without loading a model: a model's config.json (a local folder, an embedded model,
the Hugging Face cache, the copies shipped in ``memory_configs/`` for the shipped recipes' models, or the hub: the file
only, not with ``HF_HUB_OFFLINE=1``), the reward models' and judges' config.json, and a run's :class:`RunSettings` from its parsed
config. ``trl-plugins plan`` (cli/plan.py) and ``benchmarks/gpu_memory.py`` call these; docs/memory.md.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from ..errors import ConfigError

SHIPPED_CONFIGS = Path(__file__).parent / "memory_configs"
DEFAULT_PROMPT_LENGTH = 256  # prompt tokens per generated sequence unless --prompt_length or max_prompt_length


# -- config.json --------------------------------------------------------------------------------------------------
def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _read(path: Path, what: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc}") from exc


def load_model_config(name: str, what: str = "model_name_or_path") -> dict:
    """config.json of a local folder, an embedded model, a cached or shipped hub model, or (online) the hub."""
    from ..models.loading import EMBEDDED_PREFIX, cache_root

    if name.startswith(EMBEDDED_PREFIX):
        embedded = name.removeprefix(EMBEDDED_PREFIX)
        built = cache_root() / "models" / embedded / "config.json"
        if built.is_file():
            return _read(built, what)
        shipped = SHIPPED_CONFIGS / f"embedded--{embedded}.json"
        if shipped.is_file():
            return _read(shipped, what)
        from ..models.loading import resolve_model_path  # builds the embedded model once, offline

        return _read(Path(resolve_model_path(name)) / "config.json", what)
    path = Path(os.path.expanduser(name))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"{what}: {name!r} is a folder without config.json")
        return _read(path / "config.json", what)
    if name.startswith((".", "/", "~")):
        raise ConfigError(f"{what}: model path {name!r} does not exist")
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json")
    if isinstance(cached, str):
        return _read(Path(cached), what)
    shipped = SHIPPED_CONFIGS / f"{name.replace('/', '--')}.json"
    if shipped.is_file():
        return _read(shipped, what)
    if not _offline():
        from huggingface_hub import hf_hub_download

        try:
            return _read(Path(hf_hub_download(name, "config.json")), what)
        except Exception as exc:  # noqa: BLE001 - any hub failure is a one-line input problem here
            reason = type(exc).__name__
            raise ConfigError(f"{what}: cannot get config.json of {name!r} from the hub ({reason})") from exc
    raise ConfigError(f"{what}: no config.json for {name!r} offline (not a local folder, not in the Hugging Face "
                      "cache, not shipped in trl_plugins/planning/memory_configs); unset HF_HUB_OFFLINE or give a local path")


def normalize_config(config: dict) -> dict:
    """Fill in what config.json leaves to transformers' defaults (e.g. LLaVA's text_config), when transformers knows
    the model type; the config unchanged otherwise."""
    model_type = config.get("model_type")
    if not model_type:
        return config
    try:
        from transformers import AutoConfig

        fields = {k: v for k, v in config.items() if k != "model_type"}
        full = AutoConfig.for_model(model_type, **fields).to_dict()
    except Exception:  # noqa: BLE001 - an unknown or custom model type: plan from the file as it is
        return config
    merged = dict(full)
    for key in ("text_config", "vision_config"):  # keep keys the file set (e.g. Qwen2.5-VL's flat text fields)
        if isinstance(config.get(key), dict) and isinstance(full.get(key), dict):
            merged[key] = {**full[key], **config[key]}
    merged.update({k: v for k, v in config.items() if k not in ("text_config", "vision_config")})
    return merged


# -- the run's settings ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def as_on_a_gpu():
    """A plan is for a GPU run: parse bf16 recipes on any machine (TrainingArguments refuses bf16 without a GPU)."""
    import transformers.training_args as training_args

    original = training_args.is_torch_bf16_gpu_available
    training_args.is_torch_bf16_gpu_available = lambda *args, **kwargs: True
    try:
        yield
    finally:
        training_args.is_torch_bf16_gpu_available = original


def _value(option) -> str:
    return str(getattr(option, "value", option))


def reward_model_configs(training_args, policy_config: dict) -> tuple[list[dict], list[str]]:
    """config.json of each reward model in ``reward_funcs`` (functions need no GPU memory). A model whose config.json
    cannot be read offline is counted as the policy's architecture (a margin-rm output of the same base)."""
    from ..sampling.reward_sources import names_a_model

    configs, notes = [], []
    for entry in getattr(training_args, "reward_funcs", None) or []:
        if not names_a_model(entry):
            continue
        try:
            configs.append(normalize_config(load_model_config(entry, "reward_funcs")))
        except ConfigError:
            configs.append(policy_config)
            notes.append(f"reward model {entry!r}: no config.json offline; counted as the policy's architecture "
                         "in bf16")
    return configs, notes


CHARS_PER_TOKEN = 4  # a judge template's length in tokens, roughly (English text under a BPE tokenizer)


def judge_settings(training_args, model_args, policy_config: dict, prompt_length: int) -> tuple[dict, list[str]]:
    """The ``judge_*`` RunSettings of the judges of a run — the ``judge:`` entries in ``reward_funcs`` and
    ``heldout_reward_funcs``, and ``pair_rule: judge_pairwise``'s judge (its template shows two completions) — and
    notes: a judge that is the policy (``policy``, or its base model under LoRA) adds no weights; another is read from
    its config.json (the policy's architecture when that cannot be read offline), once however many entries name it."""
    from ..sampling.judge_prompts import load_template
    from ..sampling.reward_sources import JUDGE

    entries = [e for key in ("reward_funcs", "heldout_reward_funcs") for e in getattr(training_args, key, None) or []
               if e.startswith(JUDGE)]
    targets = {e.removeprefix(JUDGE): e for e in entries}
    new_tokens = getattr(training_args, "max_new_tokens", 256)
    tokens = []
    if entries:
        _, template = load_template(getattr(training_args, "judge_template", None))
        tokens.append(len(template) // CHARS_PER_TOKEN + prompt_length + new_tokens)
    if getattr(training_args, "pair_rule", None) == "judge_pairwise":
        target = getattr(training_args, "judge_pairwise_model", None) or next(iter(targets), None)
        if target is None:
            raise ConfigError("judge_pairwise_model: pair_rule judge_pairwise needs a judge: set judge_pairwise_model "
                              "or list a judge:MODEL in reward_funcs")
        targets.setdefault(target, f"judge_pairwise_model {target}")
        _, template = load_template(getattr(training_args, "judge_pairwise_template", None),
                                    "judge_pairwise_template")
        tokens.append(len(template) // CHARS_PER_TOKEN + prompt_length + 2 * new_tokens)  # both completions
    if not targets:
        return {}, []
    configs, notes, on_policy = [], [], False
    for target, entry in targets.items():
        if target == "policy" or (target == model_args.model_name_or_path and model_args.use_peft):
            on_policy = True
            notes.append(f"{entry}: the policy{'' if target == 'policy' else ' with its adapter off'} judges (no "
                         "second copy)")
            continue
        try:
            configs.append(normalize_config(load_model_config(target, "reward_funcs")))
        except ConfigError:
            configs.append(policy_config)
            notes.append(f"judge {entry!r}: no config.json offline; counted as the policy's architecture")
    score = bool(entries) and getattr(training_args, "judge_mode", "yes_probability") == "score"
    return {"judge_models": configs, "judge_on_policy": on_policy, "judge_tokens": int(max(tokens)),
            "judge_batch_size": getattr(training_args, "judge_batch_size", 8),
            "judge_new_tokens": getattr(training_args, "judge_max_new_tokens", 0) if score else 0,
            "judge_load_in_4bit": bool(getattr(training_args, "judge_load_in_4bit", False))}, notes


def settings_from_args(training_args, model_args, flags: dict, reward_models: list[dict], max_positions: int):
    from .memory_plan import RunSettings

    max_length = getattr(training_args, "max_length", None) or max_positions
    prompt_length = (flags.get("--prompt_length") or getattr(training_args, "max_prompt_length", None)
                     or DEFAULT_PROMPT_LENGTH)
    iterations = getattr(training_args, "num_iterations", 1) or 1
    return RunSettings(
        per_device_batch=training_args.per_device_train_batch_size,
        max_length=int(max_length),
        gradient_accumulation_steps=training_args.gradient_accumulation_steps,
        use_peft=bool(model_args.use_peft),
        lora_r=model_args.lora_r,
        lora_targets=model_args.lora_target_modules,
        lora_dropout=model_args.lora_dropout,
        load_in_4bit=bool(model_args.load_in_4bit),
        load_in_8bit=bool(model_args.load_in_8bit),
        double_quant=bool(model_args.use_bnb_nested_quant),
        dtype=_value(model_args.dtype) if model_args.dtype else "bfloat16",
        gradient_checkpointing=bool(training_args.gradient_checkpointing),
        optimizer=_value(training_args.optim),
        fused_lm_head=getattr(training_args, "fused_lm_head", None),
        freeze_vision_tower=getattr(training_args, "freeze_vision_tower", True),
        image_tokens=flags.get("--image_tokens"),
        generation_batch_size=getattr(training_args, "generation_batch_size", 64),
        max_new_tokens=getattr(training_args, "max_new_tokens", 256),
        prompt_length=int(prompt_length),
        reward_batch_size=getattr(training_args, "reward_batch_size", 16),
        reward_models=reward_models,
        num_iterations=int(iterations),
        heldout=bool(getattr(training_args, "heldout_prompts", 0)),
        merged_generation_copy=str(getattr(training_args, "generation_merge_quantized", "false")).lower() == "true",
    )
