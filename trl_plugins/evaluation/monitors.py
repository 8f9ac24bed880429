"""Monitors of held-out samples that no reward pays for: how far the policy moved from where it started (KL), how
likely the starting model finds the samples (fluency), how varied they are (distinct-2) and how long. Each is taken
per sample, averaged per prompt (the unit of every interval: a prompt's samples are not independent) and summarized
like a held-out reward: ``monitor/<name>`` with its SE over prompts and per-prompt means (``sampling/report.py``'s
keys). The guard that reads them: ``guard.py``. Docs: docs/monitors.md.

KL to the starting policy π₀ from samples y ~ π (Schulman, "Approximating KL Divergence", 2020), per token with
``log_ratio = log π(y_t|x,y<t) − log π₀(y_t|x,y<t)`` and ``r = π₀/π = exp(−log_ratio)``:

- k1 = ``log_ratio`` (unbiased for KL(π‖π₀), noisy, can be negative per token);
- k3 = ``(r − 1) − log r`` (unbiased, lower variance, ≥ 0 per token).

``monitor/kl_token`` is k3's mean over a sample's tokens: the quantity TRL's ``GRPOTrainer`` logs as ``kl``
(``exp(ref − logp) − (ref − logp) − 1`` per token); ``RLOOTrainer`` logs k1 per token (``monitor/kl_token_k1``). TRL
averages over all tokens of a batch (a long sample weighs more); here each sample counts once, then each prompt.
``monitor/kl_seq`` and ``monitor/kl_seq_k1`` are the sums over a sample's tokens: KL of whole completions.

No torch at import time (the names and directions are read by the compare's task parser).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ..formats import completion_text
from ..sampling.records import distinct_n, noise_keys
from .intervals import mean_se

PREFIX = "monitor/"


@dataclass(frozen=True)
class Monitor:
    """A monitor a run can turn on: the summary keys it fills, which way is worse and what it costs."""

    name: str
    keys: tuple[str, ...]
    direction: int  # +1: falling is worse; -1: rising is worse; 0: not judged by the guard's paired rule
    cost: str
    help: str


MONITORS = {m.name: m for m in (
    Monitor("kl", ("monitor/kl_token", "monitor/kl_seq", "monitor/kl_token_k1", "monitor/kl_seq_k1"), 0,
            "one forward pass of the policy and one of the starting model (LoRA: the adapter switched off) per sample",
            "KL to the starting policy, per token (k3, TRL GRPO's `kl`; k1) and per sequence; judged against max_kl"),
    Monitor("loglik", ("monitor/loglik",), +1, "the forward pass of the starting model that kl makes (one if kl is off)",
            "the starting model's mean log-likelihood per token of the samples (fluency); falling is worse"),
    Monitor("distinct2", ("monitor/distinct2",), +1, "none (text only)",
            "distinct-2 of each prompt's samples (unique word bigrams / all); falling is worse (less varied text)"),
    Monitor("length", ("monitor/length",), 0, "none", "mean completion length in tokens; shown, not judged"),
)}
DEFAULT_MONITORS = ("kl", "loglik", "distinct2", "length")
KL_TOKEN = "monitor/kl_token"  # what max_kl is compared with


def unknown_monitors(names: Sequence[str]) -> list[str]:
    return [n for n in names if n not in MONITORS]


def direction(key: str) -> int:
    """Which way a held-out figure is worse: a monitor's own direction, +1 for any other check (a held-out reward)."""
    for monitor in MONITORS.values():
        if key in monitor.keys:
            return monitor.direction
    return +1


# -- the estimators (torch tensors of per-token log-probabilities, one sample) ----------------------------------------
def kl_estimates(policy_logps, reference_logps) -> dict[str, float | None]:
    """k1 and k3 of one sample from its per-token ``log π`` and ``log π₀`` (1-D, the same tokens): the mean over
    tokens (``monitor/kl_token``, ``..._k1``) and the sum (``monitor/kl_seq``, ``..._k1``); None means for no tokens."""
    import torch

    log_ratio = policy_logps.double() - reference_logps.double()
    k1 = log_ratio
    k3 = torch.expm1(-log_ratio) + log_ratio  # (r - 1) - log r with log r = -log_ratio
    n = len(log_ratio)
    return {"monitor/kl_token": k3.mean().item() if n else None, "monitor/kl_seq": k3.sum().item(),
            "monitor/kl_token_k1": k1.mean().item() if n else None, "monitor/kl_seq_k1": k1.sum().item()}


def per_prompt_means(values: Sequence[float | None], group_sizes: Sequence[int]) -> list[float | None]:
    """The mean of each prompt's values (``group_sizes`` consecutive samples per prompt); None where none is set."""
    out, start = [], 0
    for size in group_sizes:
        valid = [v for v in values[start : start + size] if v is not None]
        out.append(math.fsum(valid) / len(valid) if valid else None)
        start += size
    if start != len(values):
        raise ValueError(f"group sizes add up to {start} samples, got {len(values)}")
    return out


def per_prompt_distinct2(texts: Sequence[str], group_sizes: Sequence[int]) -> list[float | None]:
    """Distinct-2 of each prompt's samples together (``sampling/report.py``'s ``distinct_n``); None without bigrams."""
    out, start = [], 0
    for size in group_sizes:
        group = texts[start : start + size]
        out.append(distinct_n(group) if any(len(t.split()) > 1 for t in group) else None)
        start += size
    return out


def summarize(per_prompt: dict[str, list[float | None]]) -> dict:
    """``{key: mean over prompts, <key>_se: its SE, heldout_per_prompt: {key: per-prompt means}}``, the shape of
    ``sampling/report.py``'s ``heldout_summary`` (so ``heldout_changes`` gives each key's paired change interval)."""
    out: dict = {}
    for key, values in per_prompt.items():
        mean, se = mean_se([v for v in values if v is not None])
        out[key] = None if math.isnan(mean) else mean
        out[noise_keys(key)[0]] = None if math.isnan(se) else se
    out["heldout_per_prompt"] = {key: list(values) for key, values in per_prompt.items()}
    return out


# -- the forward passes -----------------------------------------------------------------------------------------------
def _reference(model, reference_model):
    """A context in which ``model`` (or ``reference_model``) computes π₀: the LoRA adapter switched off (peft's
    ``disable_adapter``; no second copy), or the reference model passed in."""
    import contextlib

    if reference_model is not None:
        return reference_model, contextlib.nullcontext()
    if hasattr(model, "disable_adapter") and getattr(model, "peft_config", None):
        return model, model.disable_adapter()
    raise ValueError("the KL and loglik monitors need the starting policy: a peft model (adapter switched off) or a "
                     "reference_model")


def heldout_monitors(model, tokenizer, prompts: Sequence, completions: Sequence, group_sizes: Sequence[int], *,
                     monitors: Sequence[str] = DEFAULT_MONITORS, reference_model=None, temperature: float = 1.0,
                     lengths: Sequence[int] | None = None, batch_size: int = 16,
                     max_length: int | None = None) -> dict:
    """The monitors of held-out samples (flat, in prompt order, ``group_sizes`` per prompt), summarized by
    :func:`summarize`, plus ``monitor_seconds`` (the wall time of the forward passes and the rest).

    ``temperature``: the held-out sampling temperature; KL compares the distributions the samples were drawn from
    (logits / T for π and π₀, as TRL's GRPO does). With greedy samples (0) it uses T = 1, and the figure is the log
    ratio on the policy's greedy output, not an estimate of a KL. ``loglik`` is always at T = 1 (the model as it is).
    ``lengths``: the completion lengths in generated tokens (default: the completion tokens scored).
    ``reference_model``: π₀ when ``model`` is not a peft model (or when its adapter is not the whole change)."""
    from .heldout import completion_token_logps

    start = time.perf_counter()
    monitors = list(monitors)
    if unknown := unknown_monitors(monitors):
        raise ValueError(f"unknown monitor {unknown[0]!r} (known: {', '.join(MONITORS)})")
    temperature = temperature if temperature and temperature > 0 else 1.0
    per_sample: dict[str, list[float | None]] = {}
    prompts, completions = list(prompts), list(completions)
    scored_tokens = None
    if "kl" in monitors or "loglik" in monitors:
        ref, switched_off = _reference(model, reference_model)
        temperatures = [temperature] if "kl" in monitors else []  # loglik: the last list, at T = 1
        if "loglik" in monitors and temperatures != [1.0]:
            temperatures.append(1.0)
        with switched_off:
            reference = completion_token_logps(ref, tokenizer, prompts, completions, batch_size, max_length,
                                               temperatures=temperatures)
        scored_tokens = [len(t) for t in reference[0]]
        if "loglik" in monitors:
            per_sample["monitor/loglik"] = [t.double().mean().item() if len(t) else None for t in reference[-1]]
        if "kl" in monitors:
            (policy,) = completion_token_logps(model, tokenizer, prompts, completions, batch_size, max_length,
                                               temperatures=[temperature])
            estimates = [kl_estimates(p, r) for p, r in zip(policy, reference[0])]
            for key in MONITORS["kl"].keys:
                per_sample[key] = [e[key] for e in estimates]
    per_prompt = {key: per_prompt_means(values, group_sizes) for key, values in per_sample.items()}
    if "distinct2" in monitors:
        per_prompt["monitor/distinct2"] = per_prompt_distinct2([completion_text(c) for c in completions], group_sizes)
    if "length" in monitors:
        if lengths is None:
            lengths = scored_tokens or [len(tokenizer(completion_text(c), add_special_tokens=False)["input_ids"])
                                        for c in completions]
        per_prompt["monitor/length"] = per_prompt_means([float(n) for n in lengths], group_sizes)
    out = summarize(per_prompt)
    out["monitor_seconds"] = time.perf_counter() - start
    return out

