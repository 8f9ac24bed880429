"""What the held-out monitors cost: seconds for ``heldout_monitors`` (KL to the start + the base's loglik: one forward
of the LoRA policy and one with the adapter switched off; relevance: one more with the adapter off, after another
prompt; distinct-2 and length are text only) on held-out samples of
SmolLM2-135M-Instruct with a LoRA r16 adapter (non-zero B), beside the ``loglik:MODEL`` reward source (a second copy
of the base, one forward). The samples are IMDB review text cut to max_new_tokens tokens after chat-template prompts:
the cost depends only on the token counts. Docs: docs/monitors.md ("Cost").

    python benchmarks/monitors_cost.py [--prompts 64] [--k 1] [--max_new_tokens 64] [--rounds 3] [--batch_size 16]
        [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

from sampling_engine import lora_policy

from common import print_table


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--k", type=int, default=1, help="held-out samples per prompt")
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=16, help="sequences per forward pass")
    parser.add_argument("--model", default="embedded:smollm2-135m-instruct")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from trl_plugins.embedded import load_embedded_dataset
    from trl_plugins.evaluation.monitors import DEFAULT_MONITORS, heldout_monitors
    from trl_plugins.sampling import reward_sources

    model, tokenizer = lora_policy(args.model, 16)
    data = load_embedded_dataset("imdb-openings", f"n_test={args.prompts}")
    prompts = [r["prompt"] for r in data["test"].to_list() for _ in range(args.k)]
    # completions of exactly max_new_tokens tokens: review text (the cost depends on the token counts only)
    words = " ".join(data["train"]["opening"]).split()
    completions, cursor = [], 0
    for _ in prompts:
        ids = tokenizer(" ".join(words[cursor : cursor + 4 * args.max_new_tokens]),
                        add_special_tokens=False)["input_ids"][: args.max_new_tokens]
        completions.append([{"role": "assistant", "content": tokenizer.decode(ids)}])
        cursor += 4 * args.max_new_tokens
    lengths = [args.max_new_tokens] * len(prompts)
    groups = [args.k] * args.prompts
    (loglik_source,) = reward_sources.build(reward_sources.resolve([f"loglik:{args.model}"]),
                                            batch_size=args.batch_size)
    loglik_source(prompts[:1], completions[:1], {})  # loads the second copy outside the timing

    sets = {"monitors: the default (kl + loglik + distinct2 + length + relevance)": list(DEFAULT_MONITORS),
            "monitors: kl + loglik + distinct2 + length": ["kl", "loglik", "distinct2", "length"],
            "monitors: distinct2 + length": ["distinct2", "length"]}
    timings: dict[str, list[float]] = {**{name: [] for name in sets}, "loglik:MODEL source (2nd copy)": []}
    cpu: dict[str, list[float]] = {name: [] for name in timings}  # CPU seconds of this process: less load-bound
    figures = None
    for _ in range(args.rounds):
        for name in timings:
            start, start_cpu = time.perf_counter(), time.process_time()
            if name.startswith("loglik:"):
                loglik_source(prompts, completions, {})
            else:
                result = heldout_monitors(model, tokenizer, prompts, completions, groups, temperature=0.7,
                                          lengths=lengths, batch_size=args.batch_size, monitors=sets[name])
                figures = figures or result
            timings[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
            print(f"  {name}: {timings[name][-1]:.2f} s, {cpu[name][-1]:.2f} CPU s", flush=True)
    print_table(f"{len(completions)} held-out samples ({args.prompts} prompts x {args.k}) of about {lengths[0]} "
                f"tokens each; batch {args.batch_size}, {args.rounds} rounds, {torch.get_num_threads()} threads",
                [(name, f"{statistics.median(t):.2f} [{min(t):.2f}, {max(t):.2f}]",
                  f"{statistics.median(cpu[name]):.2f}", f"{statistics.median(t) / len(completions) * 1000:.0f}")
                 for name, t in timings.items()],
                header=("what", "wall s: median [min, max]", "CPU s (median)", "wall ms per sample"))
    means = {k: statistics.fmean(v for v in values if v is not None) for k, values in figures.per_prompt.items()}
    print("figures (review text, not the policy's samples: a check that the numbers are finite): "
          + ", ".join(f"{k} {means[k]:.4f}" for k in ("monitor/kl_token", "monitor/kl_token_k1", "monitor/loglik",
                                                      "monitor/distinct2", "monitor/length", "monitor/relevance")))


if __name__ == "__main__":
    main()
