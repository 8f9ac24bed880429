"""The sampling engine's generation vs a prompt-by-prompt ``generate`` loop (LMFlow RAFT's pattern), side by side.

Same model (SmolLM2-135M-Instruct by default), same prompts (IMDB openings, chat template), same sampling settings
(K completions per prompt, temperature, top_p, max_new_tokens). Two loops: LMFlow's RAFT pattern (every prompt
repeated K times, one ``model.generate`` call per query, i.e. per sample) and a kinder per-prompt loop (one call per
prompt with ``num_return_sequences=K``); the engine batches prompts x K per call with left padding. Generated tokens count up to and including the first end-of-sequence token. Rounds alternate;
the ratio uses the summed tokens and time of all rounds. Target: engine >= 4 x the loop's tokens/s.

    python benchmarks/sampling_engine.py [--prompts 16] [--k 4] [--max_new_tokens 32] [--rounds 2]
"""

from __future__ import annotations

import argparse
import time
import warnings

from common import print_table


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--max_new_tokens", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=64, help="engine: sequences per generate call")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default="embedded:smollm2-135m-instruct")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_plugins.embedded import load_embedded_dataset
    from trl_plugins.models import resolve_model_path
    from trl_plugins.sampling.generation import SamplingParams, TransformersBackend, prompt_text

    path = resolve_model_path(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    prompts = load_embedded_dataset("imdb-openings", f"n_test={args.prompts}")["test"]["prompt"]
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.85, top_p=1.0,
                            batch_size=args.batch_size)
    eos = tokenizer.eos_token_id
    engine = TransformersBackend(model, tokenizer)

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

    def batched(seed):
        return sum(g.num_tokens for gens in engine.generate(prompts, args.k, params, seed) for g in gens)

    totals = {"loop": [0, 0.0], "per_prompt": [0, 0.0], "engine": [0, 0.0]}
    runs = (("loop", lambda s: loop(s, 1)), ("per_prompt", lambda s: loop(s, args.k)), ("engine", batched))
    for r in range(args.rounds):
        for name, fn in runs:
            start = time.perf_counter()
            tokens = fn(r)
            totals[name][0] += tokens
            totals[name][1] += time.perf_counter() - start
    rate = {name: tokens / seconds for name, (tokens, seconds) in totals.items()}
    print_table(
        f"generation ('TRL' column = the loop) on {args.model}: {args.prompts} prompts x K={args.k}, max_new_tokens {args.max_new_tokens}, "
        f"{args.rounds} rounds (CPU, {torch.get_num_threads()} threads)",
        [("tokens/s vs LMFlow loop (1 seq/call)", f"{rate['loop']:.1f}", f"{rate['engine']:.1f}",
          f"{rate['engine'] / rate['loop']:.2f}  (target >= 4)"),
         ("tokens/s vs per-prompt loop (K/call)", f"{rate['per_prompt']:.1f}", f"{rate['engine']:.1f}",
          f"{rate['engine'] / rate['per_prompt']:.2f}"),
         ("tokens generated (LMFlow loop / engine)", str(totals["loop"][0]), str(totals["engine"][0]), ""),
         ("seconds (LMFlow loop / engine)", f"{totals['loop'][1]:.1f}", f"{totals['engine'][1]:.1f}", "")],
    )


if __name__ == "__main__":
    main()
