"""Per-iteration files of a sampling run and what resume reads back (no torch). Statistics and the plot: report.py.

    output_dir/
      iteration_K/generations.jsonl   one row per sample: row (prompt's dataset row), sample, prompt, completion,
                                      num_tokens, finished
      iteration_K/rewards.jsonl       one row per sample: reward (weighted total, null = dropped) and per-source values
      iteration_K/selection*.jsonl    the selected samples (index, prompt, completion, reward): the SFT data
      iteration_K/heldout_samples.jsonl  the held-out samples after iteration K, with their rewards
      iteration_K/summary.json        written last: the iteration is finished
      sampling_state/policy.safetensors + state.json   trainable weights after the last finished iteration
      heldout_baseline.json (+ heldout_baseline_samples.jsonl)  held-out scores (and samples) before training
      sampling_summary.jsonl          one summary row per finished iteration
      rewards_by_iteration.png        reward distributions by iteration (all samples and the selected ones) and the
                                      held-out monitors
      best/ + best/guard_best.json    reward_hacking: stop — the best iteration's policy by the guard (docs/monitors.md)

Who writes: the main process only, and every other process waits until the file is there — one rule, kept in one
place: every write goes through a :class:`RunStore` method built on :meth:`RunStore.on_main` (the trainers never
open a file for writing; ``tests/test_distributed.py`` checks that). Every file is written to a temporary name and
renamed, so a killed run leaves whole files only. A restarted run (with any number of processes: the files do not
depend on it) skips finished iterations, loads the policy weights of the last one and, inside an unfinished
iteration, reuses generations and rewards already on disk instead of sampling again.

Who reads: the main process, and every other process gets its answer (:meth:`RunStore.from_main`) — is a file
there, which iterations are finished, the rows of a file, the saved policy. Nodes that do not share a disk (each
its own ``output_dir``) thus agree on where to resume and act on the same data (docs/distributed.md, "Several
machines").
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

BEST, BEST_RECORD = "best", "guard_best.json"  # reward_hacking: stop keeps the best policy by the guard here


def write_jsonl(path: Path, rows: Sequence[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    os.replace(tmp, path)


class RunStore:
    """Paths and state of one sampling run in ``output_dir``; ``processes`` is the run's ``accelerate`` object
    (``is_main_process``, ``wait_for_everyone``), ``None`` for a single process."""

    def __init__(self, output_dir: str | os.PathLike, processes=None):
        self.root = Path(output_dir)
        self.processes = processes
        self._main_only = 0  # > 0 while the main process runs a write or a read alone: reads stay local there

    # -- the one write rule ---------------------------------------------------------------------------------------
    def on_main(self, write: Callable[[], object]) -> None:
        """Run ``write`` on the main process only; every process waits until it is done."""
        if self.processes is None or self.processes.is_main_process:
            self._alone(write)
        if self.processes is not None:
            self.processes.wait_for_everyone()

    # -- the one read rule ----------------------------------------------------------------------------------------
    def from_main(self, read: Callable[[], object]):
        """``read()`` on the main process, its result sent to every process (every process must call this at the
        same point). Inside :meth:`on_main` or another ``from_main`` it is a plain local read."""
        processes = self.processes
        if processes is None or processes.num_processes == 1 or self._main_only:
            return self._alone(read)
        from accelerate.utils import broadcast_object_list

        box = [self._alone(read) if processes.is_main_process else None]
        broadcast_object_list(box, from_process=0)
        return box[0]

    def _alone(self, work: Callable[[], object]):
        self._main_only += 1
        try:
            return work()
        finally:
            self._main_only -= 1

    def write_rows(self, k: int | None, name: str, rows: Sequence[dict]) -> None:
        """``iteration_K/name`` (``k=None``: ``output_dir/name``) as JSON lines."""
        path = self.root / name if k is None else self.path(k, name)
        self.on_main(lambda: write_jsonl(path, rows))

    def write_record(self, name: str, data: dict) -> None:
        """``output_dir/name`` as one JSON object."""
        self.on_main(lambda: write_json(self.root / name, data))

    def write_summary(self, k: int, summary: dict) -> None:
        """``iteration_K/summary.json`` (the iteration is finished) and the run's ``sampling_summary.jsonl``."""

        def write():
            write_json(self.path(k, "summary.json"), summary)
            write_jsonl(self.root / "sampling_summary.jsonl", self.summaries())

        self.on_main(write)

    def save_policy(self, k: int, tensors: Callable[[], dict]) -> None:
        """The trainable weights after iteration ``k`` (``tensors()`` is called on the main process only)."""

        def write():
            from safetensors.torch import save_file

            self.state_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.state_dir / "policy.safetensors.tmp"
            save_file({n: t.contiguous() for n, t in tensors().items()}, str(tmp))
            tmp.replace(self.state_dir / "policy.safetensors")
            write_json(self.state_dir / "state.json", {"iteration": k})

        self.on_main(write)

    def save_best(self, k: int, save: Callable[[Path], None]) -> None:
        """``output_dir/best``: the policy of iteration ``k`` (``save(folder)`` writes it, on the main process), with
        ``guard_best.json`` naming ``k``; written beside and swapped in whole."""

        def write():
            import shutil

            best, tmp, old = self.root / BEST, self.root / f"{BEST}.tmp", self.root / f"{BEST}.old"
            for path in (tmp, old):
                shutil.rmtree(path, ignore_errors=True)
            save(tmp)
            write_json(tmp / BEST_RECORD, {"iteration": k})
            if best.exists():
                best.rename(old)
            tmp.rename(best)
            shutil.rmtree(old, ignore_errors=True)

        self.on_main(write)

    def best_iteration(self) -> int | None:
        """The iteration whose policy ``output_dir/best`` holds (None: no such folder)."""
        path = self.root / BEST / BEST_RECORD
        return self.from_main(lambda: json.loads(path.read_text())["iteration"] if path.is_file() else None)

    def clear(self) -> None:
        """Remove the sampling files of an earlier run in the same ``output_dir``."""

        def remove():
            import shutil

            for path in list(self.root.glob("iteration_*")) + [self.root / "sampling_state", self.root / BEST]:
                shutil.rmtree(path, ignore_errors=True)
            for name in ("sampling_summary.jsonl", "rewards_by_iteration.png", "heldout_baseline.json",
                         "heldout_baseline_samples.jsonl", "preference_pairs.jsonl"):
                (self.root / name).unlink(missing_ok=True)

        self.on_main(remove)

    # -- reading --------------------------------------------------------------------------------------------------
    def iteration_dir(self, k: int) -> Path:
        return self.root / f"iteration_{k}"

    def path(self, k: int, name: str) -> Path:
        return self.iteration_dir(k) / name

    def has(self, k: int, name: str) -> bool:
        return self.from_main(lambda: self.path(k, name).is_file())

    def rows(self, k: int, name: str) -> list[dict]:
        return self.from_main(lambda: read_jsonl(self.path(k, name)))

    def record(self, name: str) -> dict | None:
        """``output_dir/name`` (one JSON object), None when it is not there."""
        path = self.root / name
        return self.from_main(lambda: json.loads(path.read_text()) if path.is_file() else None)

    def finished(self, k: int) -> bool:
        return self.has(k, "summary.json")

    def finished_iterations(self) -> list[int]:
        def read():
            done, k = [], 1
            while self.finished(k):
                done.append(k)
                k += 1
            return done

        return self.from_main(read)

    @property
    def state_dir(self) -> Path:
        return self.root / "sampling_state"

    def saved_iteration(self) -> int:
        state = self.state_dir / "state.json"
        return self.from_main(lambda: json.loads(state.read_text())["iteration"] if state.is_file() else 0)

    def load_policy(self) -> dict:
        """The trainable weights saved by :meth:`save_policy` (CPU tensors, read by the main process)."""

        def read():
            from safetensors.torch import load_file

            return load_file(str(self.state_dir / "policy.safetensors"))

        return self.from_main(read)

    def summaries(self) -> list[dict]:
        return self.from_main(lambda: [json.loads(self.path(k, "summary.json").read_text())
                                       for k in self.finished_iterations()])
