"""Monitors of held-out samples that no reward pays for: how far the policy moved from where it started (KL), how
likely the starting model finds the samples (fluency), how varied they are (distinct-2), how long, and whether they
still answer their prompt (relevance: the starting model's log-likelihood after the sample's own prompt minus after
another held-out prompt, a pointwise mutual information per token). Each is taken
per sample, averaged per prompt (the unit of every interval: a prompt's samples are not independent); the sampling
engine's held-out evaluation (``sampling.engine.evaluate_heldout``) adds them to its scores as ``monitor/<name>``
columns, with their SE over prompts and paired change intervals (``keys.py``). The guard that reads them:
``guard.py``. Docs: docs/monitors.md.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..formats import completion_text

PREFIX = "monitor/"


@dataclass(frozen=True)
class Monitor:
    """A monitor a run can turn on: the summary keys it fills, which way is worse and what it costs."""

    name: str
    keys: tuple[str, ...]
    direction: int  # +1: falling is worse; -1: rising is worse; 0: not judged by the guard's paired rule
    cost: str
    help: str
    label: str = ""  # its first key's name in tables and plots


MONITORS = {m.name: m for m in (
    Monitor("kl", ("monitor/kl_token", "monitor/kl_seq", "monitor/kl_token_k1", "monitor/kl_seq_k1"), 0,
            "one forward pass of the policy and one of the starting model (LoRA: the adapter switched off) per sample",
            "KL to the starting policy, per token (k3, TRL GRPO's `kl`; k1) and per sequence; judged against max_kl",
            "KL/token"),
    Monitor("loglik", ("monitor/loglik",), +1, "the forward pass of the starting model that kl makes (one if kl is off)",
            "the starting model's mean log-likelihood per token of the samples (fluency); falling is worse", "loglik"),
    Monitor("distinct2", ("monitor/distinct2",), +1, "none (text only)",
            "distinct-2 of each sample (unique word bigrams / all: how much it repeats itself); falling is worse",
            "distinct-2"),
    Monitor("length", ("monitor/length",), 0, "none", "mean completion length in tokens; shown, not judged",
            "length"),
    Monitor("relevance", ("monitor/relevance",), +1,
            "one more forward pass of the starting model per sample (the sample after another held-out prompt)",
            "how much more likely the starting model finds a sample after its own prompt than after another held-out "
            "prompt, per token (pointwise mutual information); falling is worse: text that no longer answers its "
            "prompt", "relevance"),
)}
DEFAULT_MONITORS = ("kl", "loglik", "distinct2", "length", "relevance")
KL_TOKEN = "monitor/kl_token"  # what max_kl is compared with
NEED_START = ("kl", "loglik", "relevance")  # the monitors that need the starting policy π₀ (forward passes of it)


def unknown_monitors(names: Sequence[str]) -> list[str]:
    return [n for n in names if n not in MONITORS]


def direction(key: str) -> int:
    """Which way a held-out figure is worse: a monitor's own direction, +1 for any other check (a held-out reward)."""
    for monitor in MONITORS.values():
        if key in monitor.keys:
            return monitor.direction
    return +1


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct-n (Li et al. 2016): unique word n-grams / all word n-grams over the texts (1.0 = no repetition; 0 if
    none)."""
    seen, total = set(), 0
    for text in texts:
        words = text.split()
        grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


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
    """Per prompt, the mean over its samples of each sample's own distinct-2 (:func:`distinct_n` of one text: how
    much it repeats itself); samples without a bigram are left out, None when no sample has one. Each sample on its
    own, not the prompt's samples together: a policy whose samples agree with each other (what a selection method
    trains towards) is not repeating itself (docs/monitors.md)."""
    values = [distinct_n([t]) if len(t.split()) > 1 else None for t in texts]
    return per_prompt_means(values, group_sizes)


# -- the forward passes -----------------------------------------------------------------------------------------------
def _reference(model, reference_model, reference_context):
    """A model and a context in which it computes π₀: ``reference_model`` (a frozen start held apart), ``model``
    inside ``reference_context()`` (the engine's: the starting weights a method holds swapped in), or ``model`` with
    its LoRA adapter switched off (peft's ``disable_adapter``; no second copy)."""
    import contextlib

    if reference_model is not None:
        return reference_model, contextlib.nullcontext()
    if reference_context is not None:
        return model, reference_context()
    if hasattr(model, "disable_adapter") and getattr(model, "peft_config", None):
        return model, model.disable_adapter()
    raise ValueError("the KL and loglik monitors need the starting policy: a peft model (adapter switched off), a "
                     "reference_model or a reference_context")


def token_monitors(model, tokenizer, prompts: Sequence, completions: Sequence, *, monitors: Sequence[str],
                   reference_model=None, reference_context: Callable | None = None, temperature: float = 1.0,
                   batch_size: int = 16, max_length: int | None = None,
                   chat_kwargs: Sequence[dict | None] | None = None, other_prompts: Sequence | None = None,
                   other_chat_kwargs: Sequence[dict | None] | None = None) -> list[dict[str, float | None]]:
    """Per sample, the monitors that take forward passes (``kl``'s four keys, ``loglik``, ``relevance``), as a dict
    per sample (empty when ``monitors`` holds none). ``temperature``, ``chat_kwargs``: see :func:`heldout_monitors`;
    ``other_prompts`` (and their ``other_chat_kwargs``): per sample, the other prompt ``relevance`` puts it after."""
    from .heldout import completion_token_logps

    prompts, completions = list(prompts), list(completions)
    out: list[dict[str, float | None]] = [{} for _ in prompts]
    if not prompts or not any(m in monitors for m in NEED_START):
        return out
    temperature = temperature if temperature and temperature > 0 else 1.0
    ref, switched = _reference(model, reference_model, reference_context)
    temperatures = [temperature] if "kl" in monitors else []  # loglik, relevance: the last list, at T = 1
    if ("loglik" in monitors or "relevance" in monitors) and temperatures != [1.0]:
        temperatures.append(1.0)
    relevance = "relevance" in monitors and other_prompts is not None
    with switched:
        reference = completion_token_logps(ref, tokenizer, prompts, completions, batch_size, max_length,
                                           temperatures=temperatures, chat_kwargs=chat_kwargs)
        if relevance:
            (elsewhere,) = completion_token_logps(ref, tokenizer, list(other_prompts), completions, batch_size,
                                                  max_length, chat_kwargs=other_chat_kwargs)
    if "loglik" in monitors:
        for row, t in zip(out, reference[-1]):
            row["monitor/loglik"] = t.double().mean().item() if len(t) else None
    if relevance:
        for row, own, other in zip(out, reference[-1], elsewhere):
            row["monitor/relevance"] = (own.double().mean() - other.double().mean()).item() if len(own) and len(other) else None
    if "kl" in monitors:
        (policy,) = completion_token_logps(model, tokenizer, prompts, completions, batch_size, max_length,
                                           temperatures=[temperature], chat_kwargs=chat_kwargs)
        for row, p, r in zip(out, policy, reference[0]):
            row.update(kl_estimates(p, r))
    return out


@dataclass
class MonitorFigures:
    """What :func:`heldout_monitors` returns: each ``monitor/<name>`` key's per-prompt means, and the wall time."""

    per_prompt: dict[str, list[float | None]] = field(default_factory=dict)
    seconds: float = 0.0


def _one_process(items: list, work: Callable[[list], list]) -> list:
    return list(work(items))


def heldout_monitors(model, tokenizer, prompts: Sequence, completions: Sequence, group_sizes: Sequence[int], *,
                     monitors: Sequence[str] = DEFAULT_MONITORS, reference_model=None,
                     reference_context: Callable | None = None, temperature: float = 1.0,
                     lengths: Sequence[int] | None = None, batch_size: int = 16, max_length: int | None = None,
                     chat_kwargs: Sequence[dict | None] | None = None,
                     share: Callable[[list, Callable[[list], list]], list] = _one_process) -> MonitorFigures:
    """The monitors of held-out samples (flat, in prompt order, ``group_sizes`` per prompt): per prompt, the mean of
    each per-sample figure, and the wall time.

    ``temperature``: the held-out sampling temperature; KL compares the distributions the samples were drawn from
    (logits / T for π and π₀, as TRL's GRPO does). With greedy samples (0) it uses T = 1, and the figure is the log
    ratio on the policy's greedy output, not an estimate of a KL. ``loglik`` is always at T = 1 (the model as it is).
    ``lengths``: the completion lengths in generated tokens (default: the completion's tokens).
    ``chat_kwargs``: per sample, its row's chat-template arguments (``tools``, ...), as its prompt was rendered.
    π₀: ``reference_model``, or ``model`` inside ``reference_context()``, or a peft ``model`` with its adapter off.
    ``share(items, work)``: how the forward passes are shared over processes (the engine's ``Shards.map``; default:
    all here)."""
    start = time.perf_counter()
    monitors = list(monitors)
    if unknown := unknown_monitors(monitors):
        raise ValueError(f"unknown monitor {unknown[0]!r} (known: {', '.join(MONITORS)})")
    prompts, completions = list(prompts), list(completions)
    other = other_prompt_indices(group_sizes) if "relevance" in monitors else None
    other_prompts = None if other is None else [prompts[j] for j in other]
    other_kwargs = None if other is None or chat_kwargs is None else [chat_kwargs[j] for j in other]

    def work(indices):
        def pick(values):
            return None if values is None else [values[i] for i in indices]

        return token_monitors(model, tokenizer, pick(prompts), pick(completions), monitors=monitors,
                              reference_model=reference_model, reference_context=reference_context,
                              temperature=temperature, batch_size=batch_size, max_length=max_length,
                              chat_kwargs=pick(chat_kwargs), other_prompts=pick(other_prompts),
                              other_chat_kwargs=pick(other_kwargs))

    per_sample = share(list(range(len(prompts))), work) if any(m in monitors for m in NEED_START) else []
    per_prompt = {key: per_prompt_means([row.get(key) for row in per_sample], group_sizes)
                  for m in NEED_START if m in monitors for key in MONITORS[m].keys}
    if "distinct2" in monitors:
        per_prompt["monitor/distinct2"] = per_prompt_distinct2([completion_text(c) for c in completions], group_sizes)
    if "length" in monitors:
        if lengths is None:
            lengths = [len(tokenizer(completion_text(c), add_special_tokens=False)["input_ids"]) for c in completions]
        per_prompt["monitor/length"] = per_prompt_means([float(n) for n in lengths], group_sizes)
    return MonitorFigures(per_prompt, time.perf_counter() - start)


def other_prompt_indices(group_sizes: Sequence[int]) -> list[int] | None:
    """``relevance``'s other prompt for each sample (flat, ``group_sizes`` per prompt): the first sample's prompt of
    the next prompt with samples (the last prompt's: the first's), so no sample is put after its own prompt; None with
    fewer than two such prompts."""
    starts, at = [], 0
    for size in group_sizes:
        starts.append(at if size else None)
        at += size
    filled = [g for g, start in enumerate(starts) if start is not None]
    if len(filled) < 2:
        return None
    after = {g: starts[filled[(i + 1) % len(filled)]] for i, g in enumerate(filled)}
    return [after[g] for g, size in enumerate(group_sizes) for _ in range(size)]


def needs_start(names: Sequence[str]) -> bool:
    return any(n in names for n in NEED_START)


def skipped_line(names: Sequence[str]) -> str:
    """The one line a run prints when it leaves out the monitors that need π₀ (a full fine-tune holding no copy of
    its starting weights)."""
    left = [n for n in NEED_START if n in names]
    listed = ", ".join(left[:-1]) + " and " + left[-1] if len(left) > 1 else left[0]
    return (f"held-out monitors: {listed} left out: a full fine-tune "
            "holds no copy of its starting weights (with LoRA the adapter switched off is the start; for fluency add "
            "heldout_reward_funcs: loglik:MODEL, a second copy of the model)")


@dataclass
class MonitorSettings:
    """Which monitors a held-out evaluation computes and on what: the policy ``model`` (adapter active, unmerged) and
    how it becomes π₀ (see :func:`heldout_monitors`); ``evaluate_heldout`` passes the samples, the temperature and
    the processes."""

    names: Sequence[str]
    model: Any = None
    tokenizer: Any = None
    reference_model: Any = None
    reference_context: Callable | None = None
    batch_size: int = 16
    max_length: int | None = None

    @classmethod
    def of(cls, names: Sequence[str], model, tokenizer, reference_context: Callable | None = None,
           batch_size: int = 16) -> tuple[MonitorSettings, str | None]:
        """The settings of a run's monitors with its π₀: with LoRA the adapter switched off, otherwise
        ``reference_context`` (the starting weights a method already holds, swapped in); without either, ``kl`` and
        ``loglik`` are left out and the second value is the line that says so (else None)."""
        names, note = list(names), None
        peft = hasattr(model, "disable_adapter") and getattr(model, "peft_config", None)
        if needs_start(names) and not peft and reference_context is None:
            names, note = [n for n in names if n not in NEED_START], skipped_line(names)
        return cls(names, model, tokenizer, reference_context=None if peft else reference_context,
                   batch_size=batch_size), note

    def run(self, prompts, completions, group_sizes, temperature: float, lengths=None, chat_kwargs=None,
            share=_one_process) -> MonitorFigures:
        return heldout_monitors(self.model, self.tokenizer, prompts, completions, group_sizes, monitors=self.names,
                                reference_model=self.reference_model, reference_context=self.reference_context,
                                temperature=temperature, lengths=lengths, batch_size=self.batch_size,
                                max_length=self.max_length, chat_kwargs=chat_kwargs, share=share)
