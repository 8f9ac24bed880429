"""What the sampling engine holds (no torch): one :class:`Sample` per sampled completion as it goes through an
iteration's stages, one :class:`HeldoutScores` per held-out evaluation, one :class:`IterationSummary` per finished
iteration — and how each is read from and written to the run's files (formats: store.py's docstring, unchanged).

The table, ``summary.json``, the plot (report.py), the demos and ``compare`` all read these types; a summary is also
readable by its ``summary.json`` key (``summary["kept"]``), the names docs/methods/sampling_engine.md lists.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..evaluation.intervals import mean_se, paired_bootstrap
from ..evaluation.keys import TOTAL, noise_keys
from ..evaluation.monitors import distinct_n
from ..formats import completion_text

GENERATION_KEYS = ("generation_tokens_per_s", "generation_seconds", "generation_tokens", "generation_decoded_slots")
JUDGE_SECONDS = "judge_seconds"  # seconds the run's judges spent in an iteration (summary.json; only runs with a judge)


@dataclass
class Sample:
    """One sampled completion: its prompt's dataset row, the completion, how it ended, its rewards, and whether the
    update stage trains towards it."""

    row: int  # the prompt's row in its dataset (the training split; the held-out split for held-out samples)
    sample: int  # which of the prompt's K samples
    prompt: Any  # text, or chat messages
    completion: Any  # text, or one assistant message for a conversational prompt
    num_tokens: int  # generated tokens up to and including the first end-of-sequence token
    finished: bool  # ended with an end-of-sequence token (not cut off at max_new_tokens)
    index: int = 0  # position in its iteration's sample list (the files' row order)
    rewards: dict[str, float | None] = field(default_factory=dict)  # by reward source name, unweighted
    reward: float | None = None  # the weighted total of the training rewards; None: dropped (some source gave None)
    selected: bool = False  # chosen by the select (or pair) stage

    @property
    def text(self) -> str:
        return completion_text(self.completion)

    def generation_row(self) -> dict:
        """Its ``generations.jsonl`` row."""
        return {"row": self.row, "sample": self.sample, "prompt": self.prompt, "completion": self.completion,
                "num_tokens": self.num_tokens, "finished": self.finished}

    def reward_row(self) -> dict:
        """Its ``rewards.jsonl`` row: the total and every training source's value."""
        return {"reward": self.reward, **{f"reward/{name}": value for name, value in self.rewards.items()}}

    def selection_row(self, **extra) -> dict:
        """A selection file's row (``selection*.jsonl``, ``pool.jsonl``): the sample, its index and its reward."""
        return {**self.generation_row(), "index": self.index, "reward": self.reward, **extra}

    def read_rewards(self, row: dict) -> None:
        """Its rewards from its ``rewards.jsonl`` row."""
        self.reward = row["reward"]
        self.rewards = {key.removeprefix("reward/"): v for key, v in row.items() if key.startswith("reward/")}

    @classmethod
    def from_rows(cls, index: int, generation: dict) -> Sample:
        """The sample of ``generations.jsonl``'s row ``index``."""
        return cls(generation["row"], generation["sample"], generation["prompt"], generation["completion"],
                   generation["num_tokens"], generation.get("finished", True), index)


def mark_selected(samples: Sequence[Sample], indices: Sequence[int]) -> list[Sample]:
    """Mark the samples at ``indices`` (and only those) selected; returns them, in ``indices`` order."""
    for sample in samples:
        sample.selected = False
    for i in indices:
        samples[i].selected = True
    return [samples[i] for i in indices]


@dataclass
class GenerationStats:
    """The speed of one generation stage, over every process (they run side by side: seconds of the slowest)."""

    tokens_per_s: float | None = None
    seconds: float | None = None
    tokens: int | None = None
    decoded_slots: int | None = None

    @classmethod
    def over(cls, per_process: Sequence[dict]) -> GenerationStats:
        """From each process's ``backend.last_stats``."""
        tokens = sum(s.get("generated_tokens") or 0 for s in per_process)
        seconds = max((s.get("seconds") or 0.0 for s in per_process), default=0.0)
        return cls(tokens / seconds if seconds else None, seconds, tokens,
                   sum(s.get("decoded_slots") or 0 for s in per_process))

    def to_json(self) -> dict:
        return dict(zip(GENERATION_KEYS, (self.tokens_per_s, self.seconds, self.tokens, self.decoded_slots)))


def heldout_columns(reward_names: Sequence[str], monitor_names: Sequence[str] = ()) -> dict[str, str | None]:
    """Held-out column -> the source it reads (``None``: the weighted total): :data:`TOTAL`, each training reward when
    there are several, and each monitor (``heldout_reward_funcs``)."""
    names = [*(reward_names if len(reward_names) + len(monitor_names) > 1 else ()), *monitor_names]
    return {TOTAL: None, **{f"heldout/{name}": name for name in names}}


def _mean(values: Sequence[float | None]) -> float | None:
    valid = [v for v in values if v is not None]
    return sum(valid) / len(valid) if valid else None


@dataclass
class HeldoutScores:
    """One held-out evaluation's numbers per column: the mean over samples, its standard error over prompts (the unit:
    a prompt's samples are not independent), the per-prompt means (for paired changes) and, once compared with the
    evaluation before training, each change's paired 95% interval. ``extra``: other keys its file carries."""

    means: dict[str, float | None] = field(default_factory=dict)
    se: dict[str, float | None] = field(default_factory=dict)
    per_prompt: dict[str, list[float | None]] = field(default_factory=dict)
    changes: dict[str, tuple[float, float]] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @classmethod
    def of(cls, samples: Sequence[Sequence[Sample]], columns: dict[str, str | None]) -> HeldoutScores:
        """The scores of held-out ``samples`` (one list per prompt) for each column (see :func:`heldout_columns`)."""
        out = cls()
        for column, source in columns.items():
            values = [[s.reward if source is None else s.rewards.get(source) for s in group] for group in samples]
            out.means[column] = _mean([v for group in values for v in group])
            out.per_prompt[column] = [_mean(group) for group in values]
            out.se[column] = mean_se([v for v in out.per_prompt[column] if v is not None])[1]
        return out

    def add(self, per_prompt: dict[str, Sequence[float | None]]) -> HeldoutScores:
        """Columns given per prompt (the monitors', ``evaluation/monitors.py``): each one's mean and standard error
        over the prompts that have a value."""
        for column, values in per_prompt.items():
            valid = [v for v in values if v is not None]
            self.per_prompt[column] = list(values)
            self.means[column] = _mean(valid)
            self.se[column] = mean_se(valid)[1] if valid else None
        return self

    def compared_with(self, before: HeldoutScores | None, seed: int = 0) -> HeldoutScores:
        """These scores with the paired 95% bootstrap interval of each column's change since ``before``, over the
        prompts scored both times."""
        for column, values in self.per_prompt.items():
            base = (before.per_prompt if before else {}).get(column)
            if not base or len(base) != len(values):
                continue
            pairs = [(b, a) for b, a in zip(base, values) if b is not None and a is not None]
            if pairs:
                self.changes[column] = paired_bootstrap([b for b, _ in pairs], [a for _, a in pairs], seed=seed)
        return self

    def mean_keys(self) -> dict:
        """Each column's mean and standard error by their file keys."""
        return {key: value for column in self.means
                for key, value in ((column, self.means[column]), (noise_keys(column)[0], self.se.get(column)))}

    def change_keys(self) -> dict:
        return {key: value for column, interval in self.changes.items()
                for key, value in zip(noise_keys(column)[1:3], interval)}

    def to_json(self) -> dict:
        """``heldout_baseline.json`` (compare: also ``heldout_final.json``)."""
        return {**self.mean_keys(), "heldout_per_prompt": self.per_prompt, **self.change_keys(), **self.extra}

    @classmethod
    def from_json(cls, data: dict) -> HeldoutScores:
        per_prompt = data.get("heldout_per_prompt") or {}
        columns = list(per_prompt) or [k for k in data if k == TOTAL or k.startswith("heldout/") and
                                       not k.endswith(("_se", "_baseline", "_change_low", "_change_high"))]
        out = cls(per_prompt=dict(per_prompt))
        known = {"heldout_per_prompt"}
        for column in columns:
            se_key, low_key, high_key, _ = noise_keys(column)
            out.means[column], out.se[column] = data.get(column), data.get(se_key)
            if data.get(low_key) is not None:
                out.changes[column] = (data[low_key], data[high_key])
            known |= {column, se_key, low_key, high_key}
        out.extra = {k: v for k, v in data.items() if k not in known}
        return out


def _stats(prefix: str, values: Sequence[float]) -> dict:
    if not values:
        return {f"{prefix}_mean": None, f"{prefix}_median": None, f"{prefix}_max": None}
    return {f"{prefix}_mean": statistics.fmean(values), f"{prefix}_median": statistics.median(values),
            f"{prefix}_max": max(values)}


_SAMPLE_KEYS = ("iteration", "samples", "dropped", "unfinished", "kept", "reward_all_mean", "reward_all_median",
                "reward_all_max", "reward_selected_mean", "reward_selected_median", "reward_selected_max",
                "distinct2_all", "distinct2_selected", "mean_tokens_all", "mean_tokens_selected")
_RUN_KEYS = ("global_step", "processes", "selected_indices")
VERDICT, GUARD_STATE = "reward_hacking", "guard_state"  # the guard's verdict on the iteration, its state after it
MONITOR_SECONDS = "monitor_seconds"  # the held-out monitors' wall time (evaluation/monitors.py)


@dataclass
class IterationSummary:
    """A finished iteration: statistics of its samples (all and selected), the generation's speed, the update stage's
    own fields (``train_loss``, ``pairs``, ``pool_size``, ...), the held-out scores after it with their changes since
    before training, and where the run stands. ``to_json()`` is its ``summary.json``."""

    iteration: int
    sampled: dict  # the sample statistics, by their summary.json keys (see :meth:`of`)
    generation: GenerationStats = field(default_factory=GenerationStats)
    update: dict = field(default_factory=dict)
    heldout: HeldoutScores | None = None
    baseline: dict[str, float | None] = field(default_factory=dict)  # held-out means before training, by column
    global_step: int = 0
    processes: int = 1
    selected_indices: list[int] = field(default_factory=list)
    guard: dict | None = None  # the reward-hacking guard's verdict on this iteration (evaluation/guard.py)
    guard_state: dict | None = None  # the guard's state after it (GuardState.to_json): a resumed run goes on from it
    judge_seconds: float | None = None  # the judges' seconds in this iteration (scoring, pairing, held-out); no judge: None

    @classmethod
    def of(cls, iteration: int, samples: Sequence[Sample], **fields) -> IterationSummary:
        """Statistics of an iteration's samples: rewards of all and of the selected ones, counts, distinct-2,
        lengths."""
        valid = [s.reward for s in samples if s.reward is not None]
        chosen = [s for s in samples if s.selected]
        sampled = {"iteration": iteration, "samples": len(samples), "dropped": len(samples) - len(valid),
                   "unfinished": sum(not s.finished for s in samples), "kept": len(chosen),
                   **_stats("reward_all", valid), **_stats("reward_selected", [s.reward for s in chosen
                                                                             if s.reward is not None]),
                   "distinct2_all": distinct_n([s.text for s in samples]),
                   "distinct2_selected": distinct_n([s.text for s in chosen]),
                   "mean_tokens_all": statistics.fmean(s.num_tokens for s in samples) if samples else None,
                   "mean_tokens_selected": statistics.fmean(s.num_tokens for s in chosen) if chosen else None}
        return cls(iteration, sampled, selected_indices=[s.index for s in chosen], **fields)

    @property
    def train_loss(self) -> float | None:
        return self.update.get("train_loss")

    def to_json(self) -> dict:
        """``summary.json``: the sample statistics, the generation's speed, the update's fields, the judges' seconds
        (runs with a judge), the held-out means
        (``heldout_reward_mean``: None without a held-out set) with their values before training and their change
        intervals, the run's state, and the held-out per-prompt means."""
        out = {**self.sampled, **self.generation.to_json(), **self.update, TOTAL: None}
        if self.judge_seconds is not None:
            out[JUDGE_SECONDS] = self.judge_seconds
        heldout = self.heldout or HeldoutScores()
        out.update(heldout.mean_keys())
        out[noise_keys(TOTAL)[3]] = self.baseline.get(TOTAL)
        out.update({noise_keys(c)[3]: v for c, v in self.baseline.items() if c != TOTAL and c in heldout.per_prompt})
        out.update(heldout.change_keys())
        if heldout.extra.get(MONITOR_SECONDS) is not None:
            out[MONITOR_SECONDS] = heldout.extra[MONITOR_SECONDS]
        if self.guard_state is not None:
            out.update({VERDICT: self.guard, GUARD_STATE: self.guard_state})
        out.update({"global_step": self.global_step, "processes": self.processes,
                    "selected_indices": self.selected_indices})
        if self.heldout is not None:
            out["heldout_per_prompt"] = self.heldout.per_prompt
        return out

    @classmethod
    def from_json(cls, data: dict) -> IterationSummary:
        heldout, held = None, {TOTAL, noise_keys(TOTAL)[0], "heldout_per_prompt"}
        if data.get("heldout_per_prompt") is not None:
            heldout = HeldoutScores.from_json(data)
            heldout.extra = {MONITOR_SECONDS: data[MONITOR_SECONDS]} if data.get(MONITOR_SECONDS) is not None else {}
            held |= {*heldout.mean_keys(), *heldout.change_keys(), MONITOR_SECONDS}
        baseline = {column: data[noise_keys(column)[3]] for column in (heldout.means if heldout else [TOTAL])
                    if noise_keys(column)[3] in data}
        known = {*_SAMPLE_KEYS, *GENERATION_KEYS, *_RUN_KEYS, JUDGE_SECONDS, *held,
                 *(noise_keys(c)[3] for c in baseline), VERDICT, GUARD_STATE}
        return cls(data["iteration"], {k: data.get(k) for k in _SAMPLE_KEYS},
                   GenerationStats(*(data.get(k) for k in GENERATION_KEYS)),
                   {k: v for k, v in data.items() if k not in known}, heldout, baseline,
                   data.get("global_step", 0), data.get("processes", 1), list(data.get("selected_indices") or []),
                   data.get(VERDICT), data.get(GUARD_STATE), data.get(JUDGE_SECONDS))

    def __getitem__(self, key: str):
        """A field by its ``summary.json`` key."""
        return self.to_json()[key]

    def get(self, key: str, default=None):
        return self.to_json().get(key, default)
