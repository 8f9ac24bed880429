"""The sampling engine: one iteration of a sampling run as named stages over one :class:`~.records.Sample` per
sampled completion. ``SamplingEngine.run_iteration(k)``:

    generate_samples(k)     the policy samples K completions per prompt of the iteration    -> [Sample]
    score_samples(samples)  every reward source scores them: Sample.rewards, Sample.reward (None: dropped)
    update_policy(k, s)     select or pair, then train (the subclass's rule and TRL loop); marks Sample.selected
    evaluate_policy()       fresh samples of the held-out prompts, scored (:func:`evaluate_heldout`)
    store_iteration(k, ...) summary.json + sampling_summary.jsonl, the plot, the table row (store.py, report.py)

The SFT trainers mix it in before ``SFTTrainer`` (trainer.py: select -> SFT), the iterative preference trainers before
``DPOTrainer`` (preference.py: pair -> DPO/ORPO); they choose the update stage and reuse every other. A killed run
resumes: generations and rewards an unfinished iteration already wrote are read back instead of made again, finished
iterations are skipped. Under several processes every stage shares its work with :class:`Shards` and writes through
the store's one rule (store.py). The held-out monitors and the reward-hacking guard: ``evaluate_heldout`` and
guard_stage.py (docs/monitors.md). Only the stages here call a generation backend (tests/test_layout.py checks it).
Docs: docs/methods/sampling_engine.md.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
from dataclasses import dataclass

import torch
from transformers.trainer_utils import TrainOutput

from ..evaluation.monitors import MonitorSettings
from ..formats import is_conversational, template_kwargs
from . import reward_sources
from .config import sampling_params_of
from .generation import SamplingParams, make_backend
from .guard_stage import GuardStage
from .records import MONITOR_SECONDS, GenerationStats, HeldoutScores, IterationSummary, Sample, heldout_columns
from .report import monitor_line, plot_rewards, table_header, table_row
from .store import RunStore

logger = logging.getLogger(__name__)

GENERATIONS, REWARDS, BASELINE = "generations.jsonl", "rewards.jsonl", "heldout_baseline.json"
HELDOUT_SAMPLES = "heldout_samples.jsonl"  # an iteration's held-out samples and rewards (the baseline's: beside it)
HELDOUT_SEED_OFFSET = 7_919  # held-out samples are drawn with the run's seed + this, by every caller
PROCESS_SEED_STRIDE = 10_007  # process r samples its share with seed + r x this


class Shards:
    """The one rule for sharing work over a run's processes: process ``r`` of ``N`` takes items ``r``, ``r + N``, ...;
    the results are gathered back into input order, identical on every process. ``Shards()``: one process."""

    def __init__(self, accelerator=None):
        self.accelerator = accelerator

    @property
    def index(self) -> int:
        return self.accelerator.process_index if self.accelerator is not None else 0

    @property
    def count(self) -> int:
        return self.accelerator.num_processes if self.accelerator is not None else 1

    def seed(self, seed: int) -> int:
        """This process's sampling seed of a stage seeded ``seed``."""
        return seed + PROCESS_SEED_STRIDE * self.index

    def map(self, items: list, work) -> list:
        """``work(items)`` (one result per item) with the items shared out, the results in input order."""
        if self.count == 1:
            return list(work(items))
        from accelerate.utils import gather_object

        mine = list(range(self.index, len(items), self.count))
        local = list(work([items[i] for i in mine]))
        results: list = [None] * len(items)
        for i, value in gather_object(list(zip(mine, local))):
            results[i] = value
        return results

    def gather(self, value) -> list:
        """Every process's ``value``, in process order."""
        if self.count == 1:
            return [value]
        from accelerate.utils import gather_object

        return gather_object([value])


# -- the stages' work, usable without a trainer ----------------------------------------------------------------------
def generate(backend, shards: Shards, rows: list[dict], row_ids: list[int], k: int, params: SamplingParams,
             seed: int, progress: bool = False) -> tuple[list[Sample], GenerationStats]:
    """``k`` samples of each row's prompt, rendered with the row's ``tools`` / ``chat_template_kwargs``, in row order
    (``row_ids``: the rows' numbers in their dataset); the speed of the call over every process."""
    seed = shards.seed(seed)

    def work(mine):  # (prompt, chat-template arguments) of this process's rows
        extra = {"chat_kwargs": [c for _, c in mine]} if any(c for _, c in mine) else {}
        return backend.generate([p for p, _ in mine], k, params, seed=seed, progress=progress, **extra)

    out = shards.map([(row["prompt"], template_kwargs(row)) for row in rows], work)
    stats = GenerationStats.over(shards.gather(dict(backend.last_stats)))
    samples: list[Sample] = []
    for row_id, row, generations in zip(row_ids, rows, out):
        chat = is_conversational(row["prompt"])
        for j, g in enumerate(generations):
            completion = [{"role": "assistant", "content": g.text}] if chat else g.text
            samples.append(Sample(row_id, j, row["prompt"], completion, g.num_tokens, g.finished, len(samples)))
    return samples, stats


def score(samples: list[Sample], sources: list, columns: list[dict], shards: Shards, progress: bool = False,
          total: bool = True) -> None:
    """Every source scores every sample (``columns``: each sample's other dataset columns), shared out over the
    processes: ``Sample.rewards[name]``, and with ``total`` the weighted sum ``Sample.reward`` (None if any is None)."""

    def work(indices):
        totals, parts = reward_sources.score(sources, [samples[i].prompt for i in indices],
                                             [samples[i].completion for i in indices], [columns[i] for i in indices],
                                             progress=progress)
        return [(t, {name: parts[name][j] for name in parts}) for j, t in enumerate(totals)]

    for sample, (value, parts) in zip(samples, shards.map(list(range(len(samples))), work)):
        sample.rewards.update(parts)
        if total:
            sample.reward = value


@dataclass(frozen=True)
class HeldoutSettings:
    """How held-out prompts are sampled: ``num_generations`` each, with ``params``, seeded ``seed +``
    :data:`HELDOUT_SEED_OFFSET` (``seed``: ``heldout_seed``, default the run's)."""

    num_generations: int
    params: SamplingParams
    seed: int

    @classmethod
    def of(cls, options) -> HeldoutSettings:
        """From a sampling config, or anything with its field names (``config.sampling_options``)."""
        seed = options.heldout_seed if getattr(options, "heldout_seed", None) is not None else options.seed
        return cls(options.heldout_num_generations, sampling_params_of(options, heldout=True), seed)


@dataclass
class HeldoutEvaluation:
    """What :func:`evaluate_heldout` returns: per held-out prompt its samples, each with its rewards by source, and
    the scores over them."""

    rows: list[dict]  # the held-out rows
    samples: list[list[Sample]]  # per row, in row order: its samples (Sample.row = the row's number)
    scores: HeldoutScores
    generation: GenerationStats

    @property
    def generated_tokens(self) -> int:
        return sum(s.num_tokens for group in self.samples for s in group)


def evaluate_heldout(backend, rows: list[dict], sources: list, monitors: list, settings: HeldoutSettings,
                     shards: Shards | None = None, watch: MonitorSettings | None = None) -> HeldoutEvaluation:
    """The one held-out evaluation — the engine's before training and after every iteration, compare's for every
    method, the ORPO demo's: ``settings.num_generations`` fresh samples of each row's prompt (rendered with the row's
    ``tools`` / ``chat_template_kwargs``) from ``backend``, scored by the training rewards ``sources`` (their weighted
    total is ``heldout_reward_mean``) and by the ``monitors`` (``heldout_reward_funcs``: ``heldout/<name>`` only).
    Means with standard errors over prompts and the per-prompt means in ``scores`` (:class:`HeldoutScores`). With
    ``watch``, the held-out monitors of ``evaluation/monitors.py`` too (``monitor/<name>`` columns, their forward
    passes shared over the processes; their wall time in ``scores.extra["monitor_seconds"]``)."""
    shards = shards or Shards()
    flat, stats = generate(backend, shards, rows, list(range(len(rows))), settings.num_generations, settings.params,
                           settings.seed + HELDOUT_SEED_OFFSET)
    columns = [{c: v for c, v in rows[s.row].items() if c != "prompt"} for s in flat]
    score(flat, sources, columns, shards)
    if monitors:
        score(flat, monitors, columns, shards, total=False)
    samples: list[list[Sample]] = [[] for _ in rows]
    for sample in flat:
        samples[sample.row].append(sample)
    names = heldout_columns([s.entry.name for s in sources], [m.entry.name for m in monitors])
    scores = HeldoutScores.of(samples, names)
    if watch is not None and watch.names:
        ordered = [s for group in samples for s in group]
        figures = watch.run([s.prompt for s in ordered], [s.completion for s in ordered], [len(g) for g in samples],
                            settings.params.temperature, lengths=[s.num_tokens for s in ordered],
                            chat_kwargs=[template_kwargs(rows[s.row]) or None for s in ordered], share=shards.map)
        scores.add(figures.per_prompt).extra[MONITOR_SECONDS] = figures.seconds
    return HeldoutEvaluation(rows, samples, scores, stats)


class SamplingEngine(GuardStage):
    """The stages and the loop (see the module docstring). A trainer mixes it in before its TRL parent, calls
    :meth:`_init_engine` after the parent's ``__init__`` and implements :meth:`update_policy`."""

    restart_from_base = False  # ReST-EM: every phase fine-tunes the base weights, not the last policy

    def _init_engine(self, args, train_dataset, heldout_dataset=None, rewards=None, heldout_rewards=None) -> None:
        self.prompt_dataset = train_dataset
        self.heldout_dataset = heldout_dataset
        if rewards is None:
            rewards = reward_sources.resolve(args.reward_funcs, args.reward_weights, options=args,
                                             required=args.rewards_required())
        if heldout_rewards is None and args.heldout_reward_funcs:
            heldout_rewards = reward_sources.resolve(args.heldout_reward_funcs, key="heldout_reward_funcs",
                                                     options=args)
        self.judge_models: dict = {}  # (model, load_in_4bit) -> the JudgeModel every judge of that model shares
        self.reward_sources = self._sources(rewards)
        self.heldout_sources = self._sources(heldout_rewards or [])
        self.shards = Shards(self.accelerator)
        self.backend = make_backend(args.generation_backend, self.model, self.processing_class)
        self.store = RunStore(args.output_dir, self.accelerator)
        self.summaries: list[IterationSummary] = []
        self.reward_history: list[tuple[list[float], list[float]]] = []  # per finished iteration: all, selected
        self.heldout_baseline: HeldoutScores | None = None  # before any training (read back on resume)
        self._prompt_rows = train_dataset.to_list()
        self._heldout_rows = heldout_dataset.to_list() if heldout_dataset is not None else []
        self.total_phase_steps = 0  # optimizer steps over every update phase of this process's run
        self.generation_stats = GenerationStats()  # the last generate stage's speed (empty when read from disk)
        self._base_weights = None  # ReST-EM: the starting trainable weights (taken when the run starts)
        self.watch: MonitorSettings | None = None  # the held-out monitors and their π₀ (built on first use)
        self.last_evaluation: HeldoutEvaluation | None = None  # the evaluate stage's last result
        self.guard_state, self.stopped = None, None  # the reward-hacking guard's (guard_stage.py)

    def _sources(self, entries: list) -> list:
        """The reward sources of resolved entries, on this process's device (models load on first use); judges get
        the policy (``judge:policy``, and a judge naming the LoRA policy's base reuses it with the adapter off)."""
        return reward_sources.build(entries, self.accelerator.device, self.args.reward_batch_size,
                                    policy=self.policy_handle(), judge_models=self.judge_models)

    def policy_handle(self):
        """The training policy as the judges see it (:class:`~.judge.PolicyHandle`: unwrapped model, tokenizer)."""
        from .judge import PolicyHandle

        return PolicyHandle(self.accelerator.unwrap_model(self.model), self.processing_class)

    def judges(self) -> list:
        """Everything of this run that judges with a model and keeps its ``seconds`` (judge reward sources, a
        pairwise judge)."""
        return [s for s in (*self.reward_sources, *self.heldout_sources) if hasattr(s, "judge")]

    def judge_clock(self) -> float | None:
        """The judges' seconds so far, the slowest process's (they judge side by side); None without a judge."""
        judges = self.judges()
        if not judges:
            return None
        return max(self.shards.gather(sum(j.seconds for j in judges)))

    @property
    def _progress(self) -> bool:
        return not self.args.disable_tqdm and self.accelerator.is_main_process

    # -- the stages ------------------------------------------------------------------------------------------------
    def iteration_rows(self, k: int) -> list[int]:
        """Dataset rows whose prompts are sampled in iteration ``k`` (seeded: the same on a resumed run)."""
        n = len(self._prompt_rows)
        m = self.args.prompts_per_iteration
        if m is None or m >= n:
            return list(range(n))
        return sorted(random.Random(self.args.seed * 1_000_003 + k).sample(range(n), m))

    def generate_samples(self, k: int) -> list[Sample]:
        """Iteration ``k``'s samples: ``num_generations`` per prompt of :meth:`iteration_rows`, in row order."""
        ids = self.iteration_rows(k)
        samples, self.generation_stats = generate(
            self.backend, self.shards, [self._prompt_rows[r] for r in ids], ids, self.args.num_generations,
            self.args.sampling_params(), self.args.seed + k, self._progress)
        return samples

    def score_samples(self, samples: list[Sample]) -> None:
        columns = [{c: v for c, v in self._prompt_rows[s.row].items() if c != "prompt"} for s in samples]
        score(samples, self.reward_sources, columns, self.shards, progress=self._progress)

    def selectable(self, samples: list[Sample]) -> list[float | None]:
        """The rewards as the selection rules see them: ``None`` (never selected) for samples cut off at
        ``max_new_tokens`` unless ``keep_unfinished``."""
        keep = self.args.keep_unfinished
        return [s.reward if keep or s.finished else None for s in samples]

    def update_policy(self, k: int, samples: list[Sample]) -> dict:
        """Turn iteration ``k``'s scored samples into training rows (marking ``Sample.selected``) and train the
        policy on them; returns the update's own summary fields (``train_loss``, ...)."""
        raise NotImplementedError

    def evaluate_policy(self) -> HeldoutEvaluation | None:
        """The current policy's :func:`evaluate_heldout` on the held-out prompts, with the held-out monitors (None
        without a held-out set)."""
        if self.heldout_dataset is None:
            return None
        if self.watch is None:
            self.watch, note = MonitorSettings.of(self.args.heldout_monitors, self.accelerator.unwrap_model(self.model),
                                                  self.processing_class, self._starting_context(),
                                                  self.args.reward_batch_size)
            if note:
                self.accelerator.print(note)
        self.last_evaluation = evaluate_heldout(self.backend, self._heldout_rows, self.reward_sources,
                                                self.heldout_sources, HeldoutSettings.of(self.args), self.shards,
                                                self.watch)
        return self.last_evaluation

    def _heldout_rows_of(self, evaluation: HeldoutEvaluation | None) -> list[dict]:
        """``heldout_samples.jsonl``'s rows: every held-out sample with its rewards (to read what the policy says)."""
        return [] if evaluation is None else [{**s.generation_row(), **s.reward_row()}
                                              for group in evaluation.samples for s in group]

    def starting_weights(self) -> dict[str, torch.Tensor] | None:
        """A host copy of the starting trainable weights that the method already holds (ReST-EM's base; iterative-dpo
        overrides it for ``reference: initial``): π₀ of the KL and loglik monitors without LoRA. None: it holds none."""
        return self._base_weights

    def _starting_context(self):
        held = self.starting_weights()
        return None if held is None else (lambda: self.weights_swapped(held))

    @contextlib.contextmanager
    def weights_swapped(self, state: dict[str, torch.Tensor]):
        """The trainable weights ``state`` in the model for the duration; the current ones back afterwards."""
        current = self.trainable_snapshot()
        self.load_trainable(state)
        try:
            yield
        finally:
            self.load_trainable(current)

    def store_iteration(self, k: int, summary: IterationSummary, samples: list[Sample]) -> None:
        """The iteration is finished: the guard's verdict on it, its summary written, kept, plotted, logged and
        printed; the guard's action (``stop``: the run ends here, the best policy by the guard is kept)."""
        self.judge_iteration(summary)
        if summary.heldout is not None and self.last_evaluation is not None:
            self.store.write_rows(k, HELDOUT_SAMPLES, self._heldout_rows_of(self.last_evaluation))
        self.store.write_summary(k, summary.to_json())
        self.summaries.append(summary)
        self.reward_history.append(_plotted([s.reward for s in samples], summary.selected_indices))
        if self.args.plot_rewards:
            self.store.on_main(lambda: plot_rewards(self.store.root, self.summaries, self.reward_history,
                                                    self.heldout_baseline))
        self.log({f"sampling/{key}": v for key, v in summary.to_json().items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None})
        self._print_row(summary)
        self._act_on_guard(summary)

    def restore(self, k: int) -> None:
        """Rebuild a subclass's in-memory state (e.g. a pool) from finished iteration ``k``'s files on resume."""

    # -- the loop --------------------------------------------------------------------------------------------------
    def train(self, resume_from_checkpoint=None, trial=None, ignore_keys_for_eval=None, **kwargs):
        done = self._start(resume=bool(resume_from_checkpoint))
        self._heldout_baseline()
        self._start_guard(done)
        for k in range(len(done) + 1, self.args.num_iterations + 1):
            if self.stopped:  # the reward-hacking guard ended the run (reward_hacking: stop)
                break
            self.run_iteration(k)
        self.accelerator.wait_for_everyone()
        losses = [s.train_loss for s in self.summaries if s.train_loss is not None]
        return TrainOutput(self.total_phase_steps, losses[-1] if losses else math.nan,
                           {"iterations": len(self.summaries)})

    def run_iteration(self, k: int) -> None:
        """The stages of iteration ``k``, reusing the generations and rewards a killed run left."""
        self.generation_stats = GenerationStats()  # stays empty when the generations are read from disk
        judged = self.judge_clock()
        if self.store.has(k, GENERATIONS):
            samples = [Sample.from_rows(i, row) for i, row in enumerate(self.store.rows(k, GENERATIONS))]
        else:
            samples = self.generate_samples(k)
            self.store.write_rows(k, GENERATIONS, [s.generation_row() for s in samples])
        if self.store.has(k, REWARDS):
            for sample, row in zip(samples, self.store.rows(k, REWARDS)):
                sample.read_rewards(row)
        else:
            self.score_samples(samples)
            self.store.write_rows(k, REWARDS, [s.reward_row() for s in samples])
        update = self.update_policy(k, samples)
        # held-out scores (minutes) before the policy is saved: a run killed while they are computed still holds the
        # policy of iteration k - 1 and redoes iteration k from its files on resume
        evaluation = self.evaluate_policy()
        self.save_policy(k)
        heldout = evaluation.scores.compared_with(self.heldout_baseline, self.args.seed) if evaluation else None
        summary = IterationSummary.of(
            k, samples, generation=self.generation_stats, update=update, heldout=heldout,
            baseline=self.heldout_baseline.means if self.heldout_baseline else {},
            global_step=self.state.global_step, processes=self.accelerator.num_processes,
            judge_seconds=None if judged is None else self.judge_clock() - judged)
        self.store_iteration(k, summary, samples)

    def _start(self, resume: bool) -> list[int]:
        """A fresh run clears the sampling files of an earlier one; a resumed run loads the policy and state of its
        last finished iteration. Returns the finished iterations."""
        store = self.store
        self._base_weights = self.trainable_snapshot() if self.restart_from_base else None
        if not resume:
            store.clear()
            return []
        done = store.finished_iterations()
        if done:
            saved = store.saved_iteration()
            if saved != done[-1]:
                raise RuntimeError(f"{store.state_dir}: policy saved after iteration {saved}, expected {done[-1]}")
            self.load_policy()
            self.restore(done[-1])
            self.summaries = [IterationSummary.from_json(row) for row in store.summaries()]
            self.reward_history = [_plotted([row["reward"] for row in store.rows(s.iteration, REWARDS)],
                                            s.selected_indices) for s in self.summaries]
            logger.warning("resuming the sampling run after iteration %d of %d", done[-1], self.args.num_iterations)
        return done

    def _heldout_baseline(self) -> None:
        """Held-out scores of the policy before any training (read back on resume)."""
        if self.heldout_dataset is None:
            return
        saved = self.store.record(BASELINE)
        if saved is not None:
            self.heldout_baseline = HeldoutScores.from_json(saved)
        else:
            self.heldout_baseline = self.evaluate_policy().scores
            self.store.write_rows(None, f"{BASELINE.removesuffix('.json')}_samples.jsonl",
                                  self._heldout_rows_of(self.last_evaluation))
            self.store.write_record(BASELINE, self.heldout_baseline.to_json())
        seconds = self.heldout_baseline.extra.get(MONITOR_SECONDS)
        if seconds is not None:  # their cost, once per run
            names = ", ".join(self.watch.names if self.watch else self.args.heldout_monitors)
            self.accelerator.print(f"held-out monitors ({names}): {seconds:.1f} s per held-out evaluation (before "
                                   "training and after each iteration); heldout_monitors leaves a costly one out")

    def _print_row(self, summary: IterationSummary) -> None:
        monitors = [f"heldout/{source.entry.name}" for source in self.heldout_sources]
        if not getattr(self, "_printed_header", False):
            self.accelerator.print(table_header(self.heldout_baseline, monitors))
            self._printed_header = True
        self.accelerator.print(table_row(summary, monitors))
        if line := monitor_line(summary):
            self.accelerator.print(line)
        if summary.judge_seconds is not None:
            self.accelerator.print(f"     judges: {summary.judge_seconds:.1f} s this iteration")

    # -- weights -----------------------------------------------------------------------------------------------------
    def _trainable(self) -> dict[str, torch.nn.Parameter]:
        model = self.accelerator.unwrap_model(self.model)
        return {n: p for n, p in model.named_parameters() if p.requires_grad}

    def trainable_snapshot(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().to("cpu", copy=True) for n, p in self._trainable().items()}

    def load_trainable(self, state: dict[str, torch.Tensor]) -> None:
        params = self._trainable()
        missing = set(params) - set(state)
        if missing:
            raise RuntimeError(f"saved policy lacks {len(missing)} trainable tensors (e.g. {sorted(missing)[0]})")
        with torch.no_grad():
            for name, param in params.items():
                param.copy_(state[name].to(param.device, param.dtype))

    def save_policy(self, k: int) -> None:
        self.store.save_policy(k, self.trainable_snapshot)

    def load_policy(self) -> None:
        self.load_trainable(self.store.load_policy())


def _plotted(rewards: list[float | None], selected: list[int]) -> tuple[list[float], list[float]]:
    """The plot's data of an iteration: the rewards of all samples and of the selected ones (dropped left out)."""
    return [r for r in rewards if r is not None], [rewards[i] for i in selected if rewards[i] is not None]
