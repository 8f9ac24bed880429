"""Shared helpers for the side-by-side benchmarks: a step timer callback, peak memory, and table printing.

Every benchmark builds the TRL trainer and ours on the same model, data and config in one process, alternates
their timed runs, and prints the ratio. Run them from the repository root, e.g. ``python benchmarks/orpo.py``.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))


def step_timer():
    """A TrainerCallback recording the wall time of each optimizer step."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []
            self._start = None

        def on_step_begin(self, args, state, control, **kwargs):
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self._start)

    return StepTimer()


def median_step(times: list[float], skip: int = 2) -> float:
    kept = times[skip:] if len(times) > skip else times
    return statistics.median(kept)


def param_bytes(*modules) -> int:
    """Bytes of parameters and buffers held by the given modules (each tensor counted once)."""
    seen, total = set(), 0
    for module in modules:
        if module is None:
            continue
        for tensor in list(module.parameters()) + list(module.buffers()):
            if tensor.data_ptr() in seen:
                continue
            seen.add(tensor.data_ptr())
            total += tensor.numel() * tensor.element_size()
    return total


def print_table(title: str, rows: list[tuple[str, str, str, str]],
                header: tuple[str, str, str, str] = ("metric", "TRL", "trl-plugins", "ratio (ours / TRL)")) -> None:
    print(f"\n{title}")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(4)]
    for row in [header] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))


def alternate_rounds(names, rounds: int, run_one) -> dict[str, list[float]]:
    """Time every trainer in ``names`` once per round and pool the step times per name.

    ``run_one(name)`` builds and trains one trainer and returns its step times (warm-up steps already dropped). The
    order flips every round (A B, B A, A B, ...) so that no trainer always runs first on a cold process or second
    on a warm one; with one round the order is fixed, so use at least 2 rounds for a ratio you report.
    """
    names = list(names)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name] += run_one(name)
    return times


def time_trainers(build, names, rounds: int, skip: int = 1):
    """Train ``build(name) -> (trainer, step_timer)`` for every name, alternating as :func:`alternate_rounds` does.

    Returns ``(times, last)``: the step times per name without each run's first ``skip`` warm-up steps, and per name
    the last run's ``{"bytes": parameter bytes of the policy and any reference model, "loss": training loss}``.
    """
    last: dict[str, dict] = {}

    def run_one(name):
        trainer, timer = build(name)
        out = trainer.train()
        last[name] = {"bytes": param_bytes(trainer.model, getattr(trainer, "ref_model", None)),
                      "loss": out.training_loss}
        return timer.times[skip:]

    return alternate_rounds(names, rounds, run_one), last
