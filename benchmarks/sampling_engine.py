"""The sampling engine's generation, side by side: the fast path vs ``model.generate`` vs transformers' continuous
batching vs per-prompt loops.

Same LoRA policy (SmolLM2-135M-Instruct + a LoRA r16 adapter on all linear layers with non-zero B, so the adapter
changes the outputs), same prompts (IMDB openings, chat template), same sampling settings (K completions per prompt,
temperature 0.85, max_new_tokens). Runs:

- ``fast``: the engine's defaults (one prefill per prompt, finished sequences leave the batch and rows are refilled,
  LoRA merged for the phase): ``TransformersBackend`` with ``SamplingParams()`` defaults;
- ``generate``: the engine before the fast path: ``fast_decode=False, merge_adapters=False`` (``model.generate`` per
  length-sorted batch with ``num_return_sequences=K``, LoRA unmerged);
- ``continuous``: transformers' continuous batching, ``model.generate_batch`` (paged KV cache, the engine TRL's GRPO
  uses with ``use_transformers_continuous_batching``), ``use_cuda_graph=False`` off a GPU, its cache sized to the
  workload (left to itself on a CPU it sizes the cache from the machine's memory and spends a minute on it), at most
  ``--batch_size`` sequences per step; LoRA unmerged;
- ``per_prompt``: one ``generate`` call per prompt with ``num_return_sequences=K``; ``--lmflow`` adds LMFlow RAFT's
  loop (one call per sample).

Generated tokens count up to and including the first end-of-sequence token. The order flips every round
(``common.alternate_rounds``); ratios use the summed tokens and seconds of all rounds. A greedy pass (K=1) checks that
the fast path returns the same completions as ``generate`` (and counts those continuous batching matches). Targets: fast >= 1.5 x generate; engine >= 4 x LMFlow's
loop.

    python benchmarks/sampling_engine.py [--prompts 16] [--k 4] [--max_new_tokens 40] [--rounds 2] [--lmflow]
        [--no_continuous] [--threads N] [--profile]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

from common import alternate_rounds, print_table


def lora_policy(model_name: str, rank: int, dtype=None, seed: int = 0):
    """The model with a LoRA adapter on all linear layers whose B is non-zero (small normal), in eval mode."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_plugins.models.loading import resolve_model_path

    path = resolve_model_path(model_name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32)
    model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear",
                                             lora_dropout=0.05))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.002)
    return model.eval(), tokenizer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--max_new_tokens", type=int, default=40)
    parser.add_argument("--batch_size", type=int, default=64, help="engine: sequences decoded together")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--lora_r", type=int, default=16)
    parser.add_argument("--model", default="embedded:smollm2-135m-instruct")
    parser.add_argument("--lmflow", action="store_true", help="add LMFlow RAFT's loop (one generate call per sample)")
    parser.add_argument("--no_per_prompt", action="store_true", help="skip the per-prompt loop")
    parser.add_argument("--no_continuous", action="store_true", help="skip transformers' continuous batching")
    parser.add_argument("--variants", action="store_true",
                        help="also time fast without refill / without merging, and generate with merging")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--profile", action="store_true", help="torch profile of one fast and one generate call")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    import torch

    from trl_plugins.embedded import load_embedded_dataset
    from trl_plugins.sampling.generation import SamplingParams, TransformersBackend, prompt_text

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = lora_policy(args.model, args.lora_r)
    prompts = load_embedded_dataset("imdb-openings", f"n_test={args.prompts}")["test"]["prompt"]
    common = dict(max_new_tokens=args.max_new_tokens, temperature=0.85, top_p=1.0, batch_size=args.batch_size)
    engines = {"fast": SamplingParams(**common),
               "generate": SamplingParams(**common, fast_decode=False, merge_adapters=False)}
    if args.variants:
        engines.update({"fast_no_refill": SamplingParams(**common, refill=False),
                        "fast_unmerged": SamplingParams(**common, merge_adapters=False),
                        "generate_merged": SamplingParams(**common, fast_decode=False)})
    backend = TransformersBackend(model, tokenizer)
    eos = tokenizer.eos_token_id
    stats: dict[str, list[dict]] = {name: [] for name in engines}

    def loop(seed, per_call):  # LMFlow's RAFT: one query at a time (per_call=1); kinder: K per call
        tokens = 0
        torch.manual_seed(seed)
        with torch.no_grad():
            for prompt in prompts:
                for _ in range(args.k // per_call):
                    enc = tokenizer(prompt_text(tokenizer, prompt), return_tensors="pt", add_special_tokens=False)
                    out = model.generate(**enc, do_sample=True, temperature=0.85, top_p=1.0, top_k=0,
                                         max_new_tokens=args.max_new_tokens, num_return_sequences=per_call,
                                         pad_token_id=tokenizer.pad_token_id or eos)
                    for row in out[:, enc["input_ids"].shape[1]:]:
                        hits = (row == eos).nonzero()
                        tokens += int(hits[0]) + 1 if len(hits) else row.shape[0]
        return tokens

    def continuous(seed, k=args.k, temperature=0.85):  # transformers' continuous batching: model.generate_batch
        import math

        from transformers import GenerationConfig
        from transformers.generation.configuration_utils import ContinuousBatchingConfig

        ids = [tokenizer(prompt_text(tokenizer, p), add_special_tokens=False)["input_ids"] for p in prompts]
        sampling = {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0} if temperature else {
            "do_sample": False}
        config = GenerationConfig(max_new_tokens=args.max_new_tokens, num_return_sequences=k, eos_token_id=eos,
                                  pad_token_id=tokenizer.pad_token_id or eos, **sampling)
        pages = math.ceil((max(map(len, ids)) + args.max_new_tokens) / 256)  # 256-token pages per sequence
        paged = ContinuousBatchingConfig(use_cuda_graph=torch.cuda.is_available(), seed=seed,
                                         num_blocks=len(ids) * k * pages + 8, max_requests_per_batch=args.batch_size,
                                         max_batch_tokens=max(args.batch_size, 1024))
        with torch.no_grad():
            out = model.generate_batch(ids, generation_config=config, continuous_batching_config=paged)
        texts, tokens = {}, 0
        for request, result in out.items():
            row = list(result.generated_tokens)
            row = row[: row.index(eos) + 1] if eos in row else row
            tokens += len(row)
            texts[request] = tokenizer.decode(row, skip_special_tokens=True)
        return tokens, texts

    runs = {name: None for name in engines}
    if not args.no_continuous:
        runs["continuous"] = lambda s: continuous(s)[0]
    if not args.no_per_prompt:
        runs["per_prompt"] = lambda s: loop(s, args.k)
    if args.lmflow:
        runs["lmflow"] = lambda s: loop(s, 1)
    totals = {name: [0, 0.0] for name in runs}
    round_no = [0]

    def run_one(name):
        start = time.perf_counter()
        if name in engines:
            backend.generate(prompts, args.k, engines[name], seed=round_no[0] // len(runs))
            stats[name].append(backend.last_stats)
            tokens = backend.last_stats["generated_tokens"]
        else:
            tokens = runs[name](round_no[0] // len(runs))
        totals[name][0] += tokens
        totals[name][1] += time.perf_counter() - start
        round_no[0] += 1
        return []

    load_before = os.getloadavg()
    alternate_rounds(list(runs), args.rounds, run_one)
    load_after = os.getloadavg()

    # greedy check: same completions from both paths
    greedy = {name: backend.generate(prompts, 1, SamplingParams(**{**common, "temperature": 0.0},
                                                                  **({"fast_decode": False, "merge_adapters": False}
                                                                     if name == "generate" else {})), seed=0)
              for name in ("fast", "generate")}
    same = sum(a[0].text == b[0].text for a, b in zip(greedy["fast"], greedy["generate"]))
    if "continuous" in runs:  # request ids are req_<prompt index> with K=1
        cb = continuous(0, k=1, temperature=0.0)[1]
        same_cb = sum(cb.get(f"req_{i}", "").strip() == g[0].text.strip() for i, g in enumerate(greedy["fast"]))

    rate = {name: tokens / seconds for name, (tokens, seconds) in totals.items()}
    slots = {name: sum(s["decoded_slots"] for s in stats[name]) for name in engines}
    rows = [("tokens/s, fast vs generate (today's engine)", f"{rate['generate']:.1f}", f"{rate['fast']:.1f}",
             f"{rate['fast'] / rate['generate']:.2f}  (target >= 1.5)")]
    for name in engines:
        if name not in ("fast", "generate"):
            rows.append((f"tokens/s, {name} vs generate", f"{rate['generate']:.1f}", f"{rate[name]:.1f}",
                         f"{rate[name] / rate['generate']:.2f}"))
    if "continuous" in rate:
        rows.append(("tokens/s, continuous batching vs generate", f"{rate['generate']:.1f}", f"{rate['continuous']:.1f}",
                     f"{rate['continuous'] / rate['generate']:.2f}"))
        rows.append(("tokens/s, fast vs continuous batching", f"{rate['continuous']:.1f}", f"{rate['fast']:.1f}",
                     f"{rate['fast'] / rate['continuous']:.2f}"))
    if "per_prompt" in rate:
        rows.append(("tokens/s, fast vs per-prompt loop (K/call)", f"{rate['per_prompt']:.1f}", f"{rate['fast']:.1f}",
                     f"{rate['fast'] / rate['per_prompt']:.2f}"))
        rows.append(("tokens/s, generate vs per-prompt loop", f"{rate['per_prompt']:.1f}", f"{rate['generate']:.1f}",
                     f"{rate['generate'] / rate['per_prompt']:.2f}"))
    if "lmflow" in rate:
        rows.append(("tokens/s, fast vs LMFlow loop (1 seq/call)", f"{rate['lmflow']:.1f}", f"{rate['fast']:.1f}",
                     f"{rate['fast'] / rate['lmflow']:.2f}  (target >= 4)"))
    rows += [
        ("tokens generated (generate / fast)", str(totals["generate"][0]), str(totals["fast"][0]), ""),
        ("decoded slots (generate / fast)", str(slots["generate"]), str(slots["fast"]),
         f"{slots['fast'] / slots['generate']:.2f}"),
        ("seconds (generate / fast)", f"{totals['generate'][1]:.1f}", f"{totals['fast'][1]:.1f}", ""),
        ("greedy completions identical (K=1)", "", f"{same}/{len(prompts)}", ""),
    ]
    if "continuous" in runs:
        rows += [("seconds (continuous batching)", "", f"{totals['continuous'][1]:.1f}", ""),
                 ("greedy completions, continuous = fast (K=1)", "", f"{same_cb}/{len(prompts)}", "")]
    print_table(
        f"generation on {args.model} + LoRA r{args.lora_r} (all-linear, B != 0): {args.prompts} prompts x K={args.k}, "
        f"max_new_tokens {args.max_new_tokens}, batch {args.batch_size}, {args.rounds} rounds, CPU "
        f"{torch.get_num_threads()} threads, load average {load_before[0]:.1f} before / {load_after[0]:.1f} after",
        rows, header=("metric", "baseline", "fast / ours", "ratio"))

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        for name in ("fast", "generate"):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                backend.generate(prompts, args.k, engines[name], seed=0)
            print(f"\nprofile: {name} ({backend.last_stats['seconds']:.1f} s)")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
