"""``trl-plugins plan NAME --config RECIPE [--key value ...] [--gpu 24GB] [--json]``: a run's peak GPU memory.

The recipe and flags are parsed exactly as ``train`` parses them (the same strict parser and presets), but nothing
is loaded: the model's config.json and the run's settings are read by :mod:`trl_plugins.planning.inputs` (a local
folder, the Hugging Face cache, the copies shipped in ``trl_plugins/planning/memory_configs/``, or the hub: config.json
only, not with ``HF_HUB_OFFLINE=1``). The estimate itself is :mod:`trl_plugins.planning.memory_plan`; docs/memory.md
explains it. This module parses the flags and prints.

Plan-only flags: ``--gpu SIZE`` (card memory, e.g. ``24GB``, ``12GiB``, ``80``; GB are read as GiB, as card makers
mean them), ``--json``, ``--prompt_length N`` (sampling trainers: prompt tokens per generated sequence, default
256), ``--image_tokens N`` (vision-language models: image tokens per image; default from the vision config).
"""

from __future__ import annotations

import dataclasses
import json
import re

from ..errors import ConfigError, UsageError

NAME = "plan"
HELP = "estimate a run's peak GPU memory from config.json (loads no model)"
TAKES_RECIPE = True
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


def plan_run(name: str, argv: list[str]) -> tuple[dict, dict]:
    """Parse like ``train`` and plan: ``(result of memory_plan.plan, description of the run)``."""
    from ..planning.inputs import (
        as_on_a_gpu,
        judge_settings,
        load_model_config,
        normalize_config,
        reward_model_configs,
        settings_from_args,
    )
    from ..planning.memory_plan import Decoder, plan, profile_for
    from ..registry import get_registry
    from ..run.recipe import parse_run

    flags, rest = _split_plan_flags(argv)
    gpu = parse_gpu(flags["--gpu"]) if "--gpu" in flags else None
    spec = get_registry().trainer(name)
    with as_on_a_gpu():
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
