"""Generation on a GPU with the shipped QLoRA RAFT recipes' settings: today's path vs the fast path, side by side.

For each recipe (``recipes/qwen2.5-1.5b-instruct/raft/config_qlora.yaml``, ``recipes/llama-3.1-8b-instruct/raft/
config_qlora.yaml``): a random-weight checkpoint of the model's architecture is built from its config (written below;
no hub), saved, and loaded the way the recipe loads it (its ``peft_preset``: 4-bit NF4, double quantization, bf16
compute, LoRA on all linear layers at the preset's rank, B != 0 so the adapter changes the outputs). Then, with the
recipe's ``num_generations``, ``max_new_tokens``, ``temperature``, ``top_p`` and ``generation_batch_size``:

- ``generate``: today's engine (``fast_decode=False, merge_adapters=False``: ``model.generate`` per batch, LoRA unmerged
  on the 4-bit weights);
- ``fast``: one prefill per prompt, finished rows leave and are refilled, and ``merge_quantized=True`` (a merged 16-bit
  copy of the adapted layers for the phase; its size is printed as "merged copy");
- ``fast_4bit`` (``--all``): the fast loop on the unmerged 4-bit model; ``compile`` (``--compile``): ``model.generate``
  with a static cache + ``torch.compile`` on the merged copy.

Prompts are chat-templated word sequences over the tiny test vocabulary (token ids valid in any vocabulary), about
``--prompt_tokens`` long. Random weights never choose the end-of-sequence token, so every sequence runs to
``max_new_tokens`` (the issue's measurement); ``--mean_tokens N`` makes the end-of-sequence token's probability 1/N at
every step (a logits hook, the same for every path) to see what finished sequences leaving the batch adds. Prints
tokens/s, the ratio, seconds, decoded slots and peak GPU memory per path. Target (issue 12): fast >= 5 x generate on
the 8B recipe on an H100/H200.

    python benchmarks/gpu_generation.py                      # both recipes, one round each (about 6-8 min on an H100)
    python benchmarks/gpu_generation.py --recipes llama --batches 2 --mean_tokens 256
    python benchmarks/gpu_generation.py --device cpu --tiny  # smoke test of this script (tiny configs, CPU, seconds)
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import tempfile
import time
import warnings

from common import alternate_rounds, print_table

# the architectures' configs (values of the hub checkpoints' config.json / generation_config.json)
ARCHITECTURES = {
    "qwen": {
        "recipe": "qwen2.5-1.5b-instruct/raft/config_qlora",
        "config": dict(model_type="qwen2", hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                       num_attention_heads=12, num_key_value_heads=2, vocab_size=151936,
                       max_position_embeddings=32768, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
                       tie_word_embeddings=True, use_sliding_window=False, sliding_window=32768, max_window_layers=21,
                       bos_token_id=151643, eos_token_id=151645, hidden_act="silu", attention_dropout=0.0),
        "generation": dict(bos_token_id=151643, pad_token_id=151643, eos_token_id=[151645, 151643], do_sample=True,
                           repetition_penalty=1.1, temperature=0.7, top_p=0.8, top_k=20),
    },
    "llama": {
        "recipe": "llama-3.1-8b-instruct/raft/config_qlora",
        "config": dict(model_type="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                       max_position_embeddings=131072, rope_theta=500_000.0, rms_norm_eps=1e-5,
                       tie_word_embeddings=False, bos_token_id=128000, eos_token_id=[128001, 128008, 128009],
                       hidden_act="silu", attention_bias=False, mlp_bias=False,
                       rope_scaling=dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                         original_max_position_embeddings=8192, rope_type="llama3")),
        "generation": dict(bos_token_id=128000, eos_token_id=[128001, 128008, 128009], do_sample=True,
                           temperature=0.6, top_p=0.9),
    },
}
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=512, max_position_embeddings=1024)


def recipe_settings(name: str, tiny: bool) -> dict:
    """Generation settings of a shipped recipe and the recipe keys of its peft preset."""
    import yaml

    from trl_plugins.models.peft_presets import preset_values

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "recipes", name + ".yaml")) as f:
        recipe = yaml.safe_load(f)
    settings = {key: recipe[key] for key in ("num_generations", "max_new_tokens", "temperature", "top_p",
                                             "generation_batch_size", "peft_preset", "attn_implementation")}
    settings["model_keys"] = preset_values(recipe["peft_preset"])
    if tiny:
        settings.update(max_new_tokens=16, generation_batch_size=16, num_generations=4)
        settings["model_keys"].update(lora_r=8, lora_alpha=16)
    return settings


def build(arch: str, settings: dict, device: str, tiny: bool, workdir: str):
    """A random-weight checkpoint of ``arch`` saved in ``workdir``, loaded as the recipe loads it (trl-plugins'
    ``load_model`` with TRL's ``ModelConfig`` from the preset: 4-bit NF4, LoRA via TRL's ``get_peft_config``)."""
    import dataclasses

    import torch
    from peft import get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig
    from trl import ModelConfig, get_peft_config

    from trl_plugins.models.loading import load_model

    spec = ARCHITECTURES[arch]
    values = dict(spec["config"])
    model_type = values.pop("model_type")
    generation = dict(spec["generation"])
    if tiny:  # the tiny vocabulary has no room for the real special-token ids: use the test tokenizer's
        values.update(TINY, bos_token_id=None, eos_token_id=2)
        values.pop("rope_scaling", None)
        generation.update(bos_token_id=None, eos_token_id=2, pad_token_id=0)
    config = AutoConfig.for_model(model_type, **values)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    path = os.path.join(workdir, arch)
    model.save_pretrained(path)
    GenerationConfig(**generation).save_pretrained(path)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    keys = {k: v for k, v in settings["model_keys"].items() if k in fields}
    model_args = ModelConfig(model_name_or_path=path, attn_implementation=settings["attn_implementation"], **keys)
    model = load_model(model_args, **({"device_map": {"": "cpu"}} if device == "cpu" else {}))
    model = get_peft_model(model, get_peft_config(model_args))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.002)
    shutil.rmtree(path, ignore_errors=True)
    return model.eval()


def eos_hook(model, eos: int, mean_tokens: int):
    """Make the end-of-sequence token's probability 1/mean_tokens at every step (before temperature)."""
    import torch

    head = model.get_output_embeddings()

    def hook(module, args, output):
        others = torch.logsumexp(output.float(), dim=-1)
        output[..., eos] = (others - math.log(mean_tokens - 1)).to(output.dtype)
        return output

    return head.register_forward_hook(hook)


def prompts_for(n: int, tokens: int, seed: int) -> list:
    import random

    from tiny import WORDS

    rng = random.Random(seed)
    return [[{"role": "user", "content": " ".join(rng.choice(WORDS) for _ in range(rng.randint(tokens // 2,
                                                                                               3 * tokens // 2)))}]
            for _ in range(n)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipes", default="qwen,llama", help="comma list of: qwen, llama")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny configs of the same architectures (smoke test)")
    parser.add_argument("--batches", type=int, default=1, help="prompts = batches x generation_batch_size / K")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--prompt_tokens", type=int, default=96)
    parser.add_argument("--mean_tokens", type=int, default=0, help="end-of-sequence probability 1/N per step")
    parser.add_argument("--all", action="store_true", help="also time the fast loop on the unmerged 4-bit model")
    parser.add_argument("--compile", action="store_true", help="also time generate + static cache + torch.compile")
    parser.add_argument("--workdir", default=None, help="where the random checkpoints are written (then deleted)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    import torch

    from trl_plugins.sampling.adapter_merge import merged_copy_bytes
    from trl_plugins.sampling.generation import SamplingParams, TransformersBackend

    from tiny import tiny_tokenizer

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --device cpu --tiny for the smoke test")
    workdir = args.workdir or tempfile.mkdtemp(prefix="gpu_generation_")
    tokenizer = tiny_tokenizer()
    gpu = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    for arch in [a.strip() for a in args.recipes.split(",") if a.strip()]:
        settings = recipe_settings(ARCHITECTURES[arch]["recipe"], args.tiny)
        started = time.perf_counter()
        model = build(arch, settings, args.device, args.tiny, workdir)
        setup = time.perf_counter() - started
        hook = eos_hook(model, tokenizer.eos_token_id, args.mean_tokens) if args.mean_tokens else None
        k, batch = settings["num_generations"], settings["generation_batch_size"]
        prompts = prompts_for(args.batches * max(1, batch // k), args.prompt_tokens, seed=0)
        common = dict(max_new_tokens=settings["max_new_tokens"], temperature=settings["temperature"],
                      top_p=settings["top_p"], batch_size=batch)
        paths = {"generate": SamplingParams(**common, fast_decode=False, merge_adapters=False),
                 "fast": SamplingParams(**common, merge_quantized=True)}
        if args.all:
            paths["fast_4bit"] = SamplingParams(**common)
        if args.compile:
            paths["compile"] = SamplingParams(**common, compile=True, merge_quantized=True)
        backend = TransformersBackend(model, tokenizer)
        totals = {name: {"tokens": 0, "seconds": 0.0, "slots": 0, "peak": 0} for name in paths}
        round_no = [0]

        def run_one(name):
            if args.device == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            backend.generate(prompts, k, paths[name], seed=round_no[0])  # noqa: F821 - the closure runs before the `del` below
            if args.device == "cuda":
                torch.cuda.synchronize()
                totals[name]["peak"] = max(totals[name]["peak"], torch.cuda.max_memory_allocated())
            stats = backend.last_stats  # noqa: F821
            totals[name]["tokens"] += stats["generated_tokens"]
            totals[name]["seconds"] += stats["seconds"]
            totals[name]["slots"] += stats["decoded_slots"]
            round_no[0] += 1
            return []

        alternate_rounds(list(paths), args.rounds, run_one)
        if hook is not None:
            hook.remove()
        rate = {name: t["tokens"] / t["seconds"] for name, t in totals.items()}
        rows = []
        for name in paths:
            t = totals[name]
            rows.append((f"{name}: tokens/s", f"{rate['generate']:.1f}", f"{rate[name]:.1f}",
                         f"{rate[name] / rate['generate']:.2f}" + ("  (target >= 5 on the 8B recipe)"
                                                                    if name == "fast" else "")))
            rows.append((f"{name}: seconds / tokens / decoded slots", "",
                         f"{t['seconds']:.1f} / {t['tokens']} / {t['slots']}", ""))
            if args.device == "cuda":
                rows.append((f"{name}: peak GPU memory (GiB)", f"{totals['generate']['peak'] / 2**30:.2f}",
                             f"{t['peak'] / 2**30:.2f}", ""))
        rows.append(("merged copy (MiB, allocated during 'fast')", "", f"{merged_copy_bytes(model) / 2**20:.1f}", ""))
        print_table(
            f"{arch} ({'tiny ' if args.tiny else ''}{settings['peft_preset']}, "
            f"LoRA r{settings['model_keys']['lora_r']}) "
            f"on {gpu}: "
            f"{len(prompts)} prompts x K={k}, max_new_tokens {settings['max_new_tokens']}, batch {batch}, "
            f"{args.rounds} round(s), mean_tokens {args.mean_tokens or 'off'}; setup {setup:.0f} s",
            rows, header=("metric", "generate (today)", "this path", "ratio vs generate"))
        del model, backend
        if args.device == "cuda":
            torch.cuda.empty_cache()
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
