"""Held-out report of a reward model: pairwise accuracy and reward gap, overall and per margin bucket (as Llama 2
reports per rating), as flat metric names and as a model-card section. Used by margin-rm's evaluation."""

from __future__ import annotations

import re
from typing import Any

import torch

MAX_VALUE_BUCKETS = 8  # numeric margins with at most this many distinct values get one bucket per value


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9.=-]+", "_", name.lower()).strip("_")


def pairwise_report(
    gaps: torch.Tensor, margins: torch.Tensor | None = None, labels: dict[float, str] | None = None
) -> dict[str, Any]:
    """Pairwise accuracy (``r_c > r_r``) and mean reward gap, overall and per margin bucket.

    Buckets: one per distinct margin value when there are at most ``MAX_VALUE_BUCKETS`` of them (named by ``labels``,
    e.g. the rating label whose margin it is, else ``margin=<value>``), otherwise the margin quartiles.
    Returns ``{"accuracy", "reward_gap", "n", "buckets": [{"name", "n", "accuracy", "reward_gap", "margin"}]}``.
    """
    gaps = gaps.detach().float().reshape(-1).cpu()
    report: dict[str, Any] = {
        "accuracy": (gaps > 0).float().mean().item() if gaps.numel() else float("nan"),
        "reward_gap": gaps.mean().item() if gaps.numel() else float("nan"),
        "n": int(gaps.numel()),
        "buckets": [],
    }
    if margins is None or gaps.numel() == 0:
        return report
    margins = margins.detach().float().reshape(-1).cpu()
    if margins.shape != gaps.shape:
        raise ValueError(f"one margin per pair expected: {tuple(margins.shape)} vs {tuple(gaps.shape)}")
    rounded = torch.round(margins * 1e6) / 1e6
    values = sorted(set(rounded.tolist()))
    if len(values) <= MAX_VALUE_BUCKETS:
        groups = []
        for value in values:
            name = (labels or {}).get(round(value, 6)) or f"margin={value:g}"
            groups.append((name, rounded == value, value))
    else:
        edges = torch.quantile(margins, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])).tolist()
        index = torch.bucketize(margins, torch.tensor(edges[1:4]), right=True)  # 0..3, lower edge inclusive
        groups = []
        for q in range(4):
            closing = "]" if q == 3 else ")"
            groups.append((f"margin in [{edges[q]:.3g}, {edges[q + 1]:.3g}{closing}", index == q, None))
    for name, mask, value in groups:
        n = int(mask.sum())
        if n == 0:
            continue
        bucket_gaps = gaps[mask]
        report["buckets"].append(
            {
                "name": name,
                "n": n,
                "accuracy": (bucket_gaps > 0).float().mean().item(),
                "reward_gap": bucket_gaps.mean().item(),
                "margin": value if value is not None else margins[mask].mean().item(),
            }
        )
    return report


def report_metrics(report: dict[str, Any], prefix: str = "eval") -> dict[str, float]:
    """Flat metric names for a :func:`pairwise_report`: ``eval_pairwise_accuracy``, ``eval_bucket_accuracy/<name>``."""
    metrics = {
        f"{prefix}_pairwise_accuracy": report["accuracy"],
        f"{prefix}_reward_gap": report["reward_gap"],
    }
    for bucket in report["buckets"]:
        slug = _slug(bucket["name"])
        metrics[f"{prefix}_bucket_accuracy/{slug}"] = bucket["accuracy"]
        metrics[f"{prefix}_bucket_reward_gap/{slug}"] = bucket["reward_gap"]
        metrics[f"{prefix}_bucket_size/{slug}"] = bucket["n"]
    return metrics


def report_markdown(report: dict[str, Any], title: str) -> str:
    lines = [
        f"### {title}",
        "",
        f"Pairwise accuracy (reward of chosen > rejected): **{report['accuracy']:.4f}** on {report['n']} pairs; "
        f"mean reward gap {report['reward_gap']:.4f}.",
    ]
    if report["buckets"]:
        lines += ["", "| margin bucket | margin | pairs | accuracy | mean reward gap |", "|---|---|---|---|---|"]
        for b in report["buckets"]:
            lines.append(f"| {b['name']} | {b['margin']:.4g} | {b['n']} | {b['accuracy']:.4f} | {b['reward_gap']:.4f} |")
    return "\n".join(lines)


def card_section(args, reports: dict[str, dict[str, Any]], model_name: str | None, step: int) -> str:
    """The model-card section of a margin reward model: its loss and margin source, how to load it, the held-out
    reports (one per evaluation prefix)."""
    import json

    from .ratings import LLAMA2_MARGINS

    source = args.margin_source
    if source == "rating":
        table = args.rating_margins or LLAMA2_MARGINS[args.margin_scale]
        detail = f"rating column `{args.rating_column}` mapped to margins {json.dumps(table)}"
    elif source == "scores":
        detail = f"{args.margin_factor} x (`{args.chosen_score_column}` - `{args.rejected_score_column}`)"
    elif source in ("margin", "auto"):
        detail = f"column `{args.margin_column}` (if present)"
    else:
        detail = "no margin"
    name = model_name or args.output_dir
    section = [
        "",
        "## Margin reward model (trl-plugins `margin-rm`)",
        "",
        f"Loss: `-log σ(r_c - r_r - m)` (Llama 2 §3.2.2); margin source `{source}`: {detail}"
        + (f"; reward centering c = {args.center_rewards_coefficient}" if args.center_rewards_coefficient else "")
        + ".",
        "",
        "Load it as a reward model:",
        "",
        "```python",
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
        f'model = AutoModelForSequenceClassification.from_pretrained("{name}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{name}")',
        "reward = model(**tokenizer(text, return_tensors='pt')).logits[0, 0]",
        "```",
    ]
    for prefix, report in reports.items():
        section += ["", report_markdown(report, f"Held-out evaluation (`{prefix}`, step {step})")]
    return "\n".join(section) + "\n"
