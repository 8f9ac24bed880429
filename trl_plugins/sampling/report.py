"""What a sampling run reports about each iteration: the summary row (rewards of all and selected samples, counts,
distinct-2, lengths; held-out means with their standard errors and paired change intervals) and the reward plot
``rewards_by_iteration.png`` (no torch). Files: store.py."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path

from ..evaluation.intervals import mean_se, paired_bootstrap
from .store import RunStore, read_jsonl


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct-n: unique word n-grams / all word n-grams over the texts (1.0 = no repetition; 0 if none)."""
    seen, total = set(), 0
    for text in texts:
        words = text.split()
        grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


def _stats(prefix: str, values: Sequence[float]) -> dict:
    if not values:
        return {f"{prefix}_mean": None, f"{prefix}_median": None, f"{prefix}_max": None}
    return {
        f"{prefix}_mean": statistics.fmean(values),
        f"{prefix}_median": statistics.median(values),
        f"{prefix}_max": max(values),
    }


def summarize(iteration: int, generations: list[dict], rewards: list[float | None], selected: list[int]) -> dict:
    """The summary row of an iteration: rewards of all and of selected samples, counts, distinct-2, lengths."""
    valid = [r for r in rewards if r is not None]
    chosen = [rewards[i] for i in selected if rewards[i] is not None]
    texts = [_text(g["completion"]) for g in generations]
    row = {"iteration": iteration, "samples": len(generations), "dropped": len(rewards) - len(valid),
           "unfinished": sum(not g.get("finished", True) for g in generations), "kept": len(selected)}
    row.update(_stats("reward_all", valid))
    row.update(_stats("reward_selected", chosen))
    row["distinct2_all"] = distinct_n(texts)
    row["distinct2_selected"] = distinct_n([texts[i] for i in selected])
    row["mean_tokens_all"] = statistics.fmean(g["num_tokens"] for g in generations) if generations else None
    row["mean_tokens_selected"] = (
        statistics.fmean(generations[i]["num_tokens"] for i in selected) if selected else None
    )
    return row


def noise_keys(key: str) -> tuple[str, str, str, str]:
    """The summary keys that go with a held-out mean ``key`` (``heldout_reward_mean`` or ``heldout/<name>``): its
    standard error, the low and high ends of its change's 95% interval, and its value before training."""
    stem = "heldout_reward" if key == "heldout_reward_mean" else key
    return f"{stem}_se", f"{stem}_change_low", f"{stem}_change_high", f"{stem}_baseline"


def heldout_columns(reward_names: list[str]) -> dict[str, str]:
    """Summary key -> reward key of the scored rows: the total, and each component when there are several."""
    columns = {"heldout_reward_mean": "reward"}
    if len(reward_names) > 1:
        columns.update({f"heldout/{name}": f"reward/{name}" for name in reward_names})
    return columns


def heldout_summary(scored: list[dict], group_sizes: list[int], columns: dict[str, str]) -> dict:
    """Held-out means of scored samples (in prompt order, ``group_sizes`` samples per prompt) for each summary key of
    ``columns`` (summary key -> reward key), each with its standard error over prompts — the unit, since a prompt's
    samples are not independent — and the per-prompt means under ``heldout_per_prompt`` (for paired changes)."""
    def mean(key, rows):
        valid = [row[key] for row in rows if row.get(key) is not None]
        return sum(valid) / len(valid) if valid else None

    starts = [0]
    for size in group_sizes:
        starts.append(starts[-1] + size)
    out, per_prompt = {}, {}
    for column, key in columns.items():
        out[column] = mean(key, scored)
        per_prompt[column] = [mean(key, scored[a:b]) for a, b in zip(starts, starts[1:])]
        out[noise_keys(column)[0]] = mean_se([v for v in per_prompt[column] if v is not None])[1]
    out["heldout_per_prompt"] = per_prompt
    return out


def heldout_changes(before: dict | None, after: dict | None, seed: int = 0) -> dict:
    """For each held-out mean in both per-prompt tables: a paired 95% bootstrap interval of its change since before
    training, over the prompts scored both times (``<stem>_change_low`` / ``_high``, see :func:`noise_keys`)."""
    out = {}
    for column, values in (after or {}).items():
        base = (before or {}).get(column)
        if not base or len(base) != len(values):
            continue
        pairs = [(b, a) for b, a in zip(base, values) if b is not None and a is not None]
        if pairs:
            _, low_key, high_key, _ = noise_keys(column)
            out[low_key], out[high_key] = paired_bootstrap([b for b, _ in pairs], [a for _, a in pairs], seed=seed)
    return out


def _text(completion) -> str:
    if isinstance(completion, list):
        return "\n".join(str(m.get("content", "")) for m in completion if isinstance(m, dict))
    return str(completion)


def plot_rewards(store: RunStore, baseline: float | None = None) -> Path | None:
    """Box plots of every finished iteration's rewards (all samples; selected in a second box), held-out means."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # matplotlib is a demo extra: no plot without it
        return None
    iterations = store.finished_iterations()
    if not iterations:
        return None
    all_rewards, selected_rewards, heldout = [], [], []
    for k in iterations:
        rewards = [r["reward"] for r in read_jsonl(store.path(k, "rewards.jsonl"))]
        summary = json.loads(store.path(k, "summary.json").read_text())
        chosen = summary.get("selected_indices") or []
        all_rewards.append([r for r in rewards if r is not None])
        selected_rewards.append([rewards[i] for i in chosen if rewards[i] is not None])
        heldout.append(summary.get("heldout_reward_mean"))
    fig, ax = plt.subplots(figsize=(1.8 + 1.1 * len(iterations), 4))
    positions = list(range(1, len(iterations) + 1))
    ax.boxplot([v or [float("nan")] for v in all_rewards], positions=[p - 0.18 for p in positions], widths=0.3,
               patch_artist=True, boxprops={"facecolor": "#9ecae1"}, showfliers=False)
    ax.boxplot([v or [float("nan")] for v in selected_rewards], positions=[p + 0.18 for p in positions], widths=0.3,
               patch_artist=True, boxprops={"facecolor": "#fdae6b"}, showfliers=False)
    if any(h is not None for h in heldout):
        xs = ([0] if baseline is not None else []) + positions
        ys = ([baseline] if baseline is not None else []) + [h if h is not None else float("nan") for h in heldout]
        ax.plot(xs, ys, "k.-", label="held-out mean")
    ax.set_xticks(([0] if baseline is not None else []) + positions,
                  (["base"] if baseline is not None else []) + [str(k) for k in iterations])
    ax.set_xlabel("iteration")
    ax.set_ylabel("reward")
    handles = [plt.Rectangle((0, 0), 1, 1, color="#9ecae1"), plt.Rectangle((0, 0), 1, 1, color="#fdae6b")]
    labels = ["all samples", "selected"]
    if any(h is not None for h in heldout):
        handles.append(plt.Line2D([0], [0], color="k", marker="."))
        labels.append("held-out mean")
    ax.legend(handles, labels, loc="best", fontsize=8)
    ax.set_title("rewards by iteration")
    fig.tight_layout()
    out = store.root / "rewards_by_iteration.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
