"""What a sampling run shows of each iteration, read from its :class:`~.records.IterationSummary`: the console table
(rewards of all and selected samples, counts, distinct-2, lengths; held-out means with their standard errors and paired
change intervals; a line of held-out monitors) and the plot ``rewards_by_iteration.png`` (rewards; the held-out
monitors by iteration) (no torch). Files: store.py; the records: records.py."""

from __future__ import annotations

from pathlib import Path

from ..evaluation.monitors import MONITORS
from .records import MONITOR_SECONDS, TOTAL, HeldoutScores, IterationSummary

PLOT = "rewards_by_iteration.png"


def _f(v) -> str:
    return "   -   " if v is None else f"{v:7.3f}"


def table_header(baseline: HeldoutScores | None, monitors: list[str]) -> str:
    """The table's header line: the columns (a held-out group per monitor column ``heldout/<name>``) and the
    held-out means before training with their standard errors."""

    def was(column):  # a held-out mean before training, with its SE
        value, se = (baseline.means.get(column), baseline.se.get(column)) if baseline else (None, None)
        return _f(value).strip() + (f" ±{se:.3f}" if se is not None else "")

    before = "; ".join([was(TOTAL)] + [f"{key.split('/')[-1]} {was(key)}" for key in monitors])
    return (f"{'iter':>4} {'reward':>7} {'select':>7} {'kept':>6} {'drop':>5} {'cut':>5} {'dist-2':>7} "
            f"{'tokens':>7} {'heldout':>7} {'±SE':>6} {'change [95%]':>20}"
            + "".join(f" {key.split('/')[-1][:12]:>12} {'±SE':>6} {'change [95%]':>20}" for key in monitors)
            + f"   (held-out before training: {before})")


def table_row(summary: IterationSummary, monitors: list[str]) -> str:
    """One iteration's line of the table."""
    s, heldout = summary.sampled, summary.heldout or HeldoutScores()

    def noise(column):  # ±SE of a held-out mean, and its change since before training with the 95% interval
        se = "   -  " if heldout.se.get(column) is None else f"±{heldout.se[column]:.3f}"
        value, base, change = heldout.means.get(column), summary.baseline.get(column), heldout.changes.get(column)
        if change is None or base is None or value is None:
            return f"{se:>6} {'-':>20}"
        return f"{se:>6} {value - base:+.3f} [{change[0]:+.2f},{change[1]:+.2f}]"

    return (f"{s['iteration']:>4} {_f(s['reward_all_mean'])} {_f(s['reward_selected_mean'])} "
            f"{s['kept']:>6} {s['dropped']:>5} {s['unfinished']:>5} {_f(s['distinct2_all'])} "
            f"{_f(s['mean_tokens_all'])} {_f(heldout.means.get(TOTAL))} {noise(TOTAL)}"
            + "".join(f"      {_f(heldout.means.get(key))} {noise(key)}" for key in monitors))


def _shown(summary: IterationSummary) -> list[tuple[str, str]]:
    """(label, key) of each held-out monitor the summary holds: its first key (KL per token, not the others)."""
    heldout = summary.heldout or HeldoutScores()
    return [(m.label, m.keys[0]) for m in MONITORS.values() if heldout.means.get(m.keys[0]) is not None]


def monitor_line(summary: IterationSummary) -> str | None:
    """The iteration's held-out monitors under its table row: each with its ±SE and its change since before training
    with the paired 95% interval (KL per token: its value, 0 before training), and their wall time."""
    heldout = summary.heldout
    if heldout is None or not (shown := _shown(summary)):
        return None
    parts = []
    for label, key in shown:
        value, se, base = heldout.means[key], heldout.se.get(key), summary.baseline.get(key)
        text = f"{label} {value:.4g}" + (f" ±{se:.2g}" if se is not None else "")
        if key in heldout.changes and base is not None:
            low, high = heldout.changes[key]
            text += f" Δ {value - base:+.3g} [{low:+.3g},{high:+.3g}]"
        parts.append(text)
    seconds = heldout.extra.get(MONITOR_SECONDS)
    return "     monitors: " + "; ".join(parts) + (f" ({seconds:.1f} s)" if seconds is not None else "")


def plot_rewards(root: Path, summaries: list[IterationSummary], rewards: list[tuple[list[float], list[float]]],
                 baseline: HeldoutScores | None = None) -> Path | None:
    """Box plots of every finished iteration's rewards (``rewards``: per iteration, of all samples and of the
    selected ones) and the held-out means (before training: ``baseline``), and under them a panel per held-out monitor
    (its mean ± SE by iteration), as ``root/rewards_by_iteration.png``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # matplotlib is a demo extra: no plot without it
        return None
    if not summaries:
        return None
    heldout = [s.heldout.means.get(TOTAL) if s.heldout else None for s in summaries]
    shown = _shown(summaries[-1])
    width = max(1.8 + 1.1 * len(summaries), 2.4 * len(shown))
    if shown:
        fig = plt.figure(figsize=(width, 6.5))
        grid = fig.add_gridspec(2, len(shown), height_ratios=(3, 2))
        ax = fig.add_subplot(grid[0, :])
        _plot_monitors([fig.add_subplot(grid[1, i]) for i in range(len(shown))], shown, summaries, baseline)
    else:
        fig, ax = plt.subplots(figsize=(width, 4))
    baseline_mean = baseline.means.get(TOTAL) if baseline else None
    positions = list(range(1, len(summaries) + 1))
    for side, (shift, color) in enumerate(((-0.18, "#9ecae1"), (0.18, "#fdae6b"))):
        ax.boxplot([r[side] or [float("nan")] for r in rewards], positions=[p + shift for p in positions],
                   widths=0.3, patch_artist=True, boxprops={"facecolor": color}, showfliers=False)
    labels = [(plt.Rectangle((0, 0), 1, 1, color="#9ecae1"), "all samples"),
              (plt.Rectangle((0, 0), 1, 1, color="#fdae6b"), "selected")]
    start = [0] if baseline_mean is not None else []
    if any(h is not None for h in heldout):
        ys = ([baseline_mean] if baseline_mean is not None else []) + [h if h is not None else float("nan")
                                                                       for h in heldout]
        ax.plot(start + positions, ys, "k.-", label="held-out mean")
        labels.append((plt.Line2D([0], [0], color="k", marker="."), "held-out mean"))
        tripped = [(p, h) for p, h, s in zip(positions, heldout, summaries)
                   if s.guard and s.guard.get("tripped") and h is not None]
        if tripped:
            ax.plot([p for p, _ in tripped], [h for _, h in tripped], "rx", markersize=10, mew=2)
            labels.append((plt.Line2D([0], [0], color="r", marker="x", ls=""), "reward-hacking guard tripped"))
    ax.set_xticks(start + positions, (["base"] if baseline_mean is not None else []) + [str(s.iteration)
                                                                                       for s in summaries])
    ax.set_xlabel("iteration")
    ax.set_ylabel("reward")
    ax.legend([h for h, _ in labels], [label for _, label in labels], loc="best", fontsize=8)
    ax.set_title("rewards by iteration")
    fig.tight_layout()
    out = root / PLOT
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _plot_monitors(axes, shown, summaries: list[IterationSummary], baseline: HeldoutScores | None) -> None:
    """One small panel per held-out monitor: its mean ± SE over prompts, before training ("base") and by iteration."""
    for ax, (label, key) in zip(axes, shown):
        points = [("base", baseline)] if baseline is not None and baseline.means.get(key) is not None else []
        points += [(str(s.iteration), s.heldout) for s in summaries if s.heldout is not None]
        ys = [h.means.get(key) for _, h in points]
        ax.errorbar(range(len(points)), [float("nan") if y is None else y for y in ys],
                    yerr=[h.se.get(key) or 0.0 for _, h in points], marker="o", capsize=3, color="k")
        ax.set_xticks(range(len(points)), [name for name, _ in points])
        ax.set_title(f"held-out {label}", fontsize=9)
        ax.tick_params(labelsize=8)
