"""``trl-plugins plan NAME --config RECIPE [--key value ...] [--gpu 24GB] [--json]``: a run's peak GPU memory.

The recipe and flags are parsed exactly as ``train`` parses them (the same strict parser and presets), but nothing
is loaded: the model's config.json is read from a local folder, the Hugging Face cache, the copies shipped in
``trl_plugins/planning/memory_configs/`` (the shipped recipes' models), or the hub (config.json only; not with
``HF_HUB_OFFLINE=1``). The estimate itself is :mod:`trl_plugins.planning.memory_plan`; docs/memory.md explains it.

Plan-only flags: ``--gpu SIZE`` (card memory, e.g. ``24GB``, ``12GiB``, ``80``; GB are read as GiB, as card makers
mean them), ``--json``, ``--prompt_length N`` (sampling trainers: prompt tokens per generated sequence, default
256), ``--image_tokens N`` (vision-language models: image tokens per image; default from the vision config).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
from pathlib import Path

from ..errors import ConfigError, UsageError

NAME = "plan"
HELP = "estimate a run's peak GPU memory from config.json (loads no model)"
TAKES_RECIPE = True
SHIPPED_CONFIGS = Path(__file__).parents[1] / "planning" / "memory_configs"
DEFAULT_PROMPT_LENGTH = 256
_PLAN_FLAGS = {"--gpu": str, "--prompt_length": int, "--image_tokens": int}


def parse_gpu(value: str) -> float:
    """``24GB`` / ``24 GiB`` / ``24g`` / ``24`` -> 24.0 (GiB: a "24 GB" card has 24 GiB)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(gb|gib|g)?\s*", str(value), flags=re.IGNORECASE)
    if not match or float(match.group(1)) <= 0:
        raise UsageError(f"--gpu {value!r}: give the card's memory as a size, e.g. 24GB, 12GiB or 80")
    return float(match.group(1))


def _split_plan_flags(argv: list[str]) -> tuple[dict, list[str]]:
    found, rest, i = {"--json": False}, [], 0
    while i < len(argv):
        arg = argv[i]
        name, _, inline = arg.partition("=")
        if arg == "--json":
            found["--json"] = True
        elif name in _PLAN_FLAGS:
            if not inline and i + 1 >= len(argv):
                raise UsageError(f"{name} needs a value")
            value = inline or argv[i + 1]
            i += 0 if inline else 1
            try:
                found[name] = _PLAN_FLAGS[name](value)
            except ValueError as exc:
                raise UsageError(f"{name} expects an integer, got {value!r}") from exc
        else:
            rest.append(arg)
        i += 1
    return found, rest


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
def _as_on_a_gpu():
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
    """The ``judge_*`` RunSettings of the ``judge:`` entries in ``reward_funcs`` and ``heldout_reward_funcs``, and
    notes: a judge that is the policy (``judge:policy``, or its base model under LoRA) adds no weights; another is
    read from its config.json (the policy's architecture when that cannot be read offline)."""
    from ..sampling.judge_prompts import load_template
    from ..sampling.reward_sources import JUDGE

    entries = [e for key in ("reward_funcs", "heldout_reward_funcs") for e in getattr(training_args, key, None) or []
               if e.startswith(JUDGE)]
    if not entries:
        return {}, []
    _, template = load_template(getattr(training_args, "judge_template", None))
    configs, notes, on_policy = [], [], False
    for entry in entries:
        target = entry.removeprefix(JUDGE)
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
    score = getattr(training_args, "judge_mode", "yes_probability") == "score"
    tokens = len(template) // CHARS_PER_TOKEN + prompt_length + getattr(training_args, "max_new_tokens", 256)
    return {"judge_models": configs, "judge_on_policy": on_policy, "judge_tokens": int(tokens),
            "judge_batch_size": getattr(training_args, "judge_batch_size", 8),
            "judge_new_tokens": getattr(training_args, "judge_max_new_tokens", 0) if score else 0,
            "judge_load_in_4bit": bool(getattr(training_args, "judge_load_in_4bit", False))}, notes


def settings_from_args(training_args, model_args, flags: dict, reward_models: list[dict], max_positions: int):
    from ..planning.memory_plan import RunSettings

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


def plan_run(name: str, argv: list[str]) -> tuple[dict, dict]:
    """Parse like ``train`` and plan: ``(result of memory_plan.plan, description of the run)``."""
    from ..planning.memory_plan import Decoder, plan, profile_for
    from ..registry import get_registry
    from ..run.recipe import parse_run

    flags, rest = _split_plan_flags(argv)
    gpu = parse_gpu(flags["--gpu"]) if "--gpu" in flags else None
    spec = get_registry().trainer(name)
    with _as_on_a_gpu():
        parsed = parse_run(spec, rest, prog=f"trl-plugins plan {spec.name}")
    parsed.require_model()
    recipe, training_args, model_args = parsed.recipe, parsed.training_args, parsed.model_args
    config = normalize_config(load_model_config(model_args.model_name_or_path))
    try:
        max_positions = Decoder.from_config(config).max_positions
    except ValueError as exc:
        raise ConfigError(f"{model_args.model_name_or_path}: {exc}; cannot plan this architecture") from exc
    profile = profile_for(spec.load_method())
    reward_models, notes = reward_model_configs(training_args, config) if profile.generation else ([], [])
    settings = settings_from_args(training_args, model_args, flags, reward_models, max_positions)
    if profile.generation:
        judges, judge_notes = judge_settings(training_args, model_args, config, settings.prompt_length)
        settings, notes = dataclasses.replace(settings, **judges), notes + judge_notes
    result = plan(config, settings, profile, gpu)
    auto = str(getattr(training_args, "generation_merge_quantized", "")).lower() == "auto"
    if profile.generation and auto and settings.use_peft and (settings.load_in_4bit or settings.load_in_8bit):
        merged = plan(config, dataclasses.replace(settings, merged_generation_copy=True), profile, gpu)
        verdict = "" if gpu is None else (" — fits this GPU, so generation would use it" if merged["fits"] else
                                          " — does not fit this GPU, so generation keeps the 4-bit weights + LoRA")
        notes.append(f"generation_merge_quantized auto: a merged 16-bit copy for generation would raise the peak to "
                     f"{merged['peak_gib']:.2f} GiB{verdict} (decided from the GPU's free memory at run time)")
    result["notes"] = notes + result["notes"]
    run = {"method": spec.name, "model": model_args.model_name_or_path, "recipe": str(recipe) if recipe else None,
           "settings": settings, "profile": profile}
    return result, run


def describe(result: dict, run: dict) -> str:
    """The plan as text: the run, its peak's breakdown, the phases, the fit."""
    from ..planning.memory_plan import FIT_FRACTION

    s = run["settings"]
    weights = ("4-bit NF4" + (" + double quant" if s.double_quant else "") if s.load_in_4bit
               else "8-bit" if s.load_in_8bit else f"16-bit ({s.dtype})")
    adapter = f"LoRA r{s.lora_r} on {s.lora_targets}" if s.use_peft else "full fine-tuning"
    rows = f"batch {s.per_device_batch} x {result['sequences_per_example']} sequence(s) x {s.max_length} tokens"
    lines = [f"plan: {run['method']} on {run['model']} — {weights}, {adapter}, {rows}, "
             f"{'gradient checkpointing' if s.gradient_checkpointing else 'no gradient checkpointing'}, "
             f"{s.optimizer}, LM head: {result['lm_head']}"]
    if run["profile"].generation:
        lines.append(f"  generation: {s.generation_batch_size} sequences x ({s.prompt_length} prompt + "
                     f"{s.max_new_tokens} new tokens) per generate call")
    lines.append(f"  peak {result['peak_gib']:.2f} GiB during {result['peak_phase']}:")
    width = max(len(k) for k in result["breakdown"])
    lines += [f"    {key.ljust(width)}  {value:7.2f} GiB" for key, value in result["breakdown"].items()]
    lines.append("  phases: " + ", ".join(f"{k} {v:.2f}" for k, v in result["phases"].items()) + " (GiB)")
    if "gpu_gib" in result:
        verdict = "fits" if result["fits"] else "does NOT fit"
        lines.append(f"  {verdict} a {result['gpu_gib']:g} GiB GPU: {result['share_of_gpu']:.0%} of the card "
                     f"(a plan fits at <= {FIT_FRACTION:.0%}, leaving room for the CUDA context and fragmentation)")
        fit = f"  largest per-device batch that fits: {result['largest_batch']} (max_length {s.max_length})"
        if "largest_max_length" in result:
            fit += f"; largest max_length: {result['largest_max_length']} (batch {s.per_device_batch})"
        if "largest_generation_batch_size" in result:
            fit += (f"; largest generation_batch_size: {result['largest_generation_batch_size']}, largest "
                    f"max_new_tokens: {result['largest_max_new_tokens']}")
        lines.append(fit)
    lines += [f"  note: {note}" for note in result["notes"]]
    return "\n".join(lines)


def run_plan(name: str, argv: list[str]) -> int:
    """The ``plan`` command's body; one-line errors are raised (UsageError/ConfigError, exit 2)."""
    if not name or name.startswith("-"):
        raise UsageError("usage: trl-plugins plan NAME --config RECIPE.yaml [--key value ...] [--gpu 24GB] [--json]")
    if "-h" in argv or "--help" in argv:
        print(f"usage: trl-plugins plan {name} --config RECIPE.yaml [--key value ...] [--gpu 24GB] [--json] "
              "[--prompt_length N] [--image_tokens N]\n\nThe recipe keys are those of `trl-plugins train "
              f"{name} --help`; the plan-only flags:\n" + __doc__.split("Plan-only flags: ", 1)[1].strip())
        return 0
    as_json = "--json" in argv
    result, run = plan_run(name, argv)
    if as_json:
        print(json.dumps({"method": run["method"], "model": run["model"], "recipe": run["recipe"], **result},
                         indent=2, default=str))
    else:
        print(describe(result, run))
    return 0


def run(args, rest: list[str]) -> int:
    return run_plan(args.name, rest)
