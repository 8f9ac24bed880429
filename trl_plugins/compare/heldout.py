"""Held-out scores of a model that is not a sampling trainer (orpo, kto-weighted, ...), taken the way the sampling
engine takes its own (``SamplingTrainer.heldout_scores``): the same generation backend, sampling parameters, seed,
reward sources and summary (``sampling/report.py``), so its numbers sit in the same table. Docs: docs/compare.md.
"""

from __future__ import annotations

from ..sampling import reward_sources
from ..sampling.generation import SamplingParams, flatten_samples, make_backend
from ..sampling.report import heldout_columns, heldout_summary

# SamplingTrainer.heldout_scores samples the held-out prompts with seed `args.seed + 7_919` (process 0)
HELDOUT_SEED_OFFSET = 7_919


def sampling_params(heldout: dict) -> SamplingParams:
    """The task's ``heldout:`` settings as the sampling engine's parameters (its other knobs at their defaults)."""
    return SamplingParams(max_new_tokens=heldout["max_new_tokens"], temperature=heldout["temperature"],
                          top_p=heldout["top_p"], top_k=heldout["top_k"], batch_size=heldout["batch_size"])


def heldout_scores(model, tokenizer, rows: list[dict], metric: list[str], heldout: dict, seed: int) -> dict:
    """``heldout_reward_mean`` (the metric's weighted total) with its SE and per-prompt means, and ``heldout/<name>``
    for each metric entry when there are several — the keys of the sampling engine's ``heldout_baseline.json``."""
    prompts = [row["prompt"] for row in rows]
    backend = make_backend("transformers", model, tokenizer)
    out = backend.generate(prompts, heldout["num_generations"], sampling_params(heldout),
                           seed=seed + HELDOUT_SEED_OFFSET)
    flat_prompts, completions, extra = flatten_samples(rows, out)
    device = next(model.parameters()).device
    sources = reward_sources.build(reward_sources.resolve(metric, key="metric"), device)
    totals, parts = reward_sources.score(sources, flat_prompts, completions, extra)
    scored = [{"reward": t, **{f"reward/{name}": parts[name][i] for name in parts}} for i, t in enumerate(totals)]
    summary = heldout_summary(scored, [len(gens) for gens in out], heldout_columns(list(parts)))
    summary["generated_tokens"] = sum(g.num_tokens for gens in out for g in gens)
    return summary
