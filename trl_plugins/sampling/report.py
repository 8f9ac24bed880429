"""What a sampling run shows of each iteration, read from its :class:`~.records.IterationSummary`: the console table
(rewards of all and selected samples, counts, distinct-2, lengths; held-out means with their standard errors and paired
change intervals) and the reward plot ``rewards_by_iteration.png`` (no torch). Files: store.py; the records:
records.py."""

from __future__ import annotations

from pathlib import Path

from .records import TOTAL, HeldoutScores, IterationSummary

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


def plot_rewards(root: Path, summaries: list[IterationSummary], rewards: list[tuple[list[float], list[float]]],
                 baseline: float | None = None) -> Path | None:
    """Box plots of every finished iteration's rewards (``rewards``: per iteration, of all samples and of the
    selected ones) and the held-out means (before training: ``baseline``), as ``root/rewards_by_iteration.png``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # matplotlib is a demo extra: no plot without it
        return None
    if not summaries:
        return None
    heldout = [s.heldout.means.get(TOTAL) if s.heldout else None for s in summaries]
    fig, ax = plt.subplots(figsize=(1.8 + 1.1 * len(summaries), 4))
    positions = list(range(1, len(summaries) + 1))
    for side, (shift, color) in enumerate(((-0.18, "#9ecae1"), (0.18, "#fdae6b"))):
        ax.boxplot([r[side] or [float("nan")] for r in rewards], positions=[p + shift for p in positions],
                   widths=0.3, patch_artist=True, boxprops={"facecolor": color}, showfliers=False)
    labels = [(plt.Rectangle((0, 0), 1, 1, color="#9ecae1"), "all samples"),
              (plt.Rectangle((0, 0), 1, 1, color="#fdae6b"), "selected")]
    start = [0] if baseline is not None else []
    if any(h is not None for h in heldout):
        ys = ([baseline] if baseline is not None else []) + [h if h is not None else float("nan") for h in heldout]
        ax.plot(start + positions, ys, "k.-", label="held-out mean")
        labels.append((plt.Line2D([0], [0], color="k", marker="."), "held-out mean"))
    ax.set_xticks(start + positions, (["base"] if baseline is not None else []) + [str(s.iteration) for s in summaries])
    ax.set_xlabel("iteration")
    ax.set_ylabel("reward")
    ax.legend([h for h, _ in labels], [label for _, label in labels], loc="best", fontsize=8)
    ax.set_title("rewards by iteration")
    fig.tight_layout()
    out = root / PLOT
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
