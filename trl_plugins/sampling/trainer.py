"""The outer generate -> score -> select -> fine-tune loop shared by the sampling trainers — a TRL ``SFTTrainer``.

``SamplingTrainer.train()`` runs ``num_iterations`` iterations: sample K completions per prompt from the current
policy (``generation.py``), score them (``reward_sources.py``), select (the subclass's rule, ``selection.py``) and
fine-tune on the selection with SFTTrainer's own loop (a fresh optimizer and schedule per phase). The loop itself is
:class:`SamplingEngine`, which the preference trainers share (``preference.py``: pairs -> DPO/ORPO). Files and resume:
``store.py``; summaries and the plot: ``report.py``. Docs: docs/methods/sampling_engine.md.
"""

from __future__ import annotations

import logging
import math
import random

import torch
from transformers.trainer_utils import TrainOutput
from trl import SFTTrainer

from ..formats import TEMPLATE_COLUMNS, is_conversational, template_kwargs
from . import reward_sources
from .config import SamplingConfig
from .generation import flatten_samples, make_backend
from .report import heldout_changes, heldout_columns, heldout_summary, noise_keys, plot_rewards, summarize
from .store import RunStore

logger = logging.getLogger(__name__)


class SamplingEngine:
    """The loop shared by every sampling trainer, whatever TRL trainer runs its update phase: prompts, generation,
    scoring, held-out statistics, sharding, the store, resume and the summary rows. A trainer mixes it in before its
    TRL parent, calls :meth:`_init_engine` after the parent's ``__init__`` and implements :meth:`run_iteration` (the
    select -> SFT phase of :class:`SamplingTrainer`; the pair -> preference phase of ``sampling/preference.py``)."""

    restart_from_base = False  # ReST-EM: every phase fine-tunes the base weights, not the last policy

    def _init_engine(self, args, train_dataset, heldout_dataset=None, rewards=None, heldout_rewards=None) -> None:
        self.prompt_dataset = train_dataset
        self.heldout_dataset = heldout_dataset
        if rewards is None:
            rewards = reward_sources.resolve(args.reward_funcs, args.reward_weights)
        if heldout_rewards is None and args.heldout_reward_funcs:
            heldout_rewards = reward_sources.resolve(args.heldout_reward_funcs, key="heldout_reward_funcs")
        device, batch_size = self.accelerator.device, args.reward_batch_size
        self.reward_sources = reward_sources.build(rewards, device, batch_size)
        self.heldout_sources = reward_sources.build(heldout_rewards or [], device, batch_size)
        # local sampling: the trainer shares the prompts out over the processes and gathers (see _sharded)
        self.backend = make_backend(args.generation_backend, self.model, self.processing_class)
        self.store = RunStore(args.output_dir, self.accelerator)
        self.summaries: list[dict] = []
        self.heldout_baseline: float | None = None
        self.heldout_baseline_scores: dict[str, float | None] = {}
        self._prompt_rows = train_dataset.to_list()
        self.total_phase_steps = 0  # optimizer steps over every update phase of this process's run
        self.generation_stats: dict = {}  # speed of the last generation call (see _generate)

    # -- engine ------------------------------------------------------------------------------------------------------
    @property
    def _progress(self) -> bool:
        return not self.args.disable_tqdm and self.accelerator.is_main_process

    def iteration_rows(self, k: int) -> list[int]:
        """Dataset rows whose prompts are sampled in iteration ``k`` (seeded: the same on a resumed run)."""
        n = len(self._prompt_rows)
        m = self.args.prompts_per_iteration
        if m is None or m >= n:
            return list(range(n))
        return sorted(random.Random(self.args.seed * 1_000_003 + k).sample(range(n), m))

    def _sharded(self, items: list, work) -> list:
        """``work(items)`` with the items shared out over the processes (process ``r`` of ``N`` takes items ``r``,
        ``r + N``, ...) and the results gathered back into input order, identical on every process."""
        acc = self.accelerator
        if acc.num_processes == 1:
            return list(work(items))
        from accelerate.utils import gather_object

        mine = list(range(acc.process_index, len(items), acc.num_processes))
        local = list(work([items[i] for i in mine]))
        results: list = [None] * len(items)
        for i, value in gather_object(list(zip(mine, local))):
            results[i] = value
        return results

    def _generate(self, prompts: list, k: int, params, seed: int, progress: bool = False, rows=None) -> list:
        """K generations per prompt, the prompts shared out over the processes (each seeded on its own), each
        rendered with its dataset row's ``tools``/``chat_template_kwargs`` (``rows``); the speed of the call, over
        all processes, in ``self.generation_stats``."""
        seed = seed + 10_007 * self.accelerator.process_index
        chat = [template_kwargs(row) for row in rows] if rows is not None else [None] * len(prompts)

        def work(mine):
            extra = {"chat_kwargs": [c for _, c in mine]} if any(c for _, c in mine) else {}
            return self.backend.generate([p for p, _ in mine], k, params, seed=seed, progress=progress, **extra)

        out = self._sharded(list(zip(prompts, chat)), work)
        stats = [dict(self.backend.last_stats)]
        if self.accelerator.num_processes > 1:
            from accelerate.utils import gather_object

            stats = gather_object(stats)
        tokens = sum(s.get("generated_tokens") or 0 for s in stats)
        seconds = max((s.get("seconds") or 0.0 for s in stats), default=0.0)  # the processes run side by side
        self.generation_stats = {"generation_tokens_per_s": tokens / seconds if seconds else None,
                                 "generation_seconds": seconds, "generation_tokens": tokens,
                                 "generation_decoded_slots": sum(s.get("decoded_slots") or 0 for s in stats)}
        return out

    def generate_samples(self, k: int) -> list[dict]:
        """Iteration ``k``'s samples: ``num_generations`` per prompt of :meth:`iteration_rows`, in row order."""
        rows = self.iteration_rows(k)
        prompts = [self._prompt_rows[r]["prompt"] for r in rows]
        out = self._generate(prompts, self.args.num_generations, self.args.sampling_params(), self.args.seed + k,
                             self._progress, [self._prompt_rows[r] for r in rows])
        samples = []
        for r, prompt, gens in zip(rows, prompts, out):
            for j, g in enumerate(gens):
                completion = [{"role": "assistant", "content": g.text}] if is_conversational(prompt) else g.text
                samples.append({"row": r, "sample": j, "prompt": prompt, "completion": completion,
                                "num_tokens": g.num_tokens, "finished": g.finished})
        return samples

    def _score(self, sources, prompts, completions, extra, progress=False) -> list[dict]:
        """Per sample ``{"reward": weighted total, "reward/<name>": value, ...}``, shared out over the processes."""

        def work(indices):
            totals, parts = reward_sources.score(sources, [prompts[i] for i in indices],
                                                 [completions[i] for i in indices], [extra[i] for i in indices],
                                                 progress=progress)
            return [{"reward": t, **{f"reward/{name}": parts[name][j] for name in parts}} for j, t in enumerate(totals)]

        return self._sharded(list(range(len(prompts))), work)

    def score_samples(self, samples: list[dict]) -> list[dict]:
        extra = [{c: v for c, v in self._prompt_rows[s["row"]].items() if c != "prompt"} for s in samples]
        return self._score(self.reward_sources, [s["prompt"] for s in samples], [s["completion"] for s in samples],
                           extra, progress=self._progress)

    def heldout_scores(self) -> dict[str, float | None]:
        """Mean rewards of fresh samples on the held-out prompts: ``heldout_reward_mean`` (the training reward, as
        weighted for selection) and ``heldout/<name>`` for each training reward and each ``heldout_reward_funcs``,
        each with its standard error, and the per-prompt means (``report.heldout_summary``)."""
        if self.heldout_dataset is None:
            return {}
        rows = self.heldout_dataset.to_list()
        prompts = [r["prompt"] for r in rows]
        out = self._generate(prompts, self.args.heldout_num_generations, self.args.sampling_params(True),
                             self.args.seed + 7_919, rows=rows)
        flat_prompts, completions, extra = flatten_samples(rows, out)
        scored = self._score(self.reward_sources, flat_prompts, completions, extra)
        if self.heldout_sources:
            for row, more in zip(scored, self._score(self.heldout_sources, flat_prompts, completions, extra)):
                row.update({key: v for key, v in more.items() if key != "reward"})

        names = [key.removeprefix("reward/") for key in (scored[0] if scored else {}) if key.startswith("reward/")]
        return heldout_summary(scored, [len(gens) for gens in out], heldout_columns(names))

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

    def selectable(self, samples: list[dict], rewards: list[float | None]) -> list[float | None]:
        """The rewards as the selection rules see them: ``None`` (never selected) for samples cut off at
        ``max_new_tokens`` unless ``keep_unfinished``."""
        if self.args.keep_unfinished:
            return list(rewards)
        return [r if s.get("finished", True) else None for s, r in zip(samples, rewards)]

    def run_iteration(self, k: int, samples: list[dict], rewards: list[float | None]) -> dict:
        """Turn iteration ``k``'s scored samples into training rows and update the policy; returns
        ``{"selected": indices, ...extra summary fields}``."""
        raise NotImplementedError

    def restore(self, k: int) -> None:
        """Rebuild in-memory state (e.g. a pool) from finished iteration ``k``'s files on resume."""

    # -- the loop ----------------------------------------------------------------------------------------------------
    def _load_or_make(self, k: int, name: str, make) -> list[dict]:
        """Iteration ``k``'s file ``name`` if a killed run already wrote it, else ``make()`` written to it."""
        if self.store.has(k, name):
            return self.store.rows(k, name)
        rows = make()
        self.store.write_rows(k, name, rows)
        return rows

    def train(self, resume_from_checkpoint=None, trial=None, ignore_keys_for_eval=None, **kwargs):
        done = self._start(resume=bool(resume_from_checkpoint))
        self._heldout_baseline()
        for k in range(len(done) + 1, self.args.num_iterations + 1):
            self._iteration(k)
        self.accelerator.wait_for_everyone()
        losses = [s["train_loss"] for s in self.summaries if s.get("train_loss") is not None]
        return TrainOutput(self.total_phase_steps, losses[-1] if losses else math.nan,
                           {"iterations": len(self.summaries)})

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
            self.summaries = store.summaries()
            logger.warning("resuming the sampling run after iteration %d of %d", done[-1], self.args.num_iterations)
        return done

    def _heldout_baseline(self) -> None:
        """Held-out scores of the policy before any training (read back on resume)."""
        if self.heldout_dataset is None:
            return
        saved = self.store.record("heldout_baseline.json")
        if saved is not None:
            self.heldout_baseline_scores = saved
        else:
            self.heldout_baseline_scores = self.heldout_scores()
            self.store.write_record("heldout_baseline.json", self.heldout_baseline_scores)
        self.heldout_baseline = self.heldout_baseline_scores.get("heldout_reward_mean")

    def _iteration(self, k: int) -> None:
        """Generate, score, select and fine-tune (reusing files a killed run left), then save the policy and report."""
        self.generation_stats = {}  # stays empty when a resumed run reads the generations from disk
        samples = self._load_or_make(k, "generations.jsonl", lambda: self.generate_samples(k))
        generation = dict(self.generation_stats)
        scored = self._load_or_make(k, "rewards.jsonl", lambda: self.score_samples(samples))
        rewards = [s["reward"] for s in scored]
        result = self.run_iteration(k, samples, rewards)
        # held-out scores (minutes) before the policy is saved: a run killed while they are computed still holds the
        # policy of iteration k - 1 and redoes iteration k from its files on resume
        heldout = self.heldout_scores()
        self.save_policy(k)
        summary = summarize(k, samples, rewards, result["selected"])
        summary.update({key: generation.get(key) for key in ("generation_tokens_per_s", "generation_seconds",
                                                             "generation_tokens", "generation_decoded_slots")})
        summary.update({key: v for key, v in result.items() if key != "selected"})
        summary["heldout_reward_mean"] = None  # keeps the summary's column order when there is no held-out set
        per_prompt = heldout.pop("heldout_per_prompt", None)
        summary.update(heldout)
        summary["heldout_reward_baseline"] = self.heldout_baseline
        summary.update({f"{key}_baseline": v for key, v in self.heldout_baseline_scores.items()
                        if key in (per_prompt or {}) and key.startswith("heldout/")})
        summary.update(heldout_changes(self.heldout_baseline_scores.get("heldout_per_prompt"), per_prompt,
                                       seed=self.args.seed))
        summary["global_step"] = self.state.global_step
        summary["processes"] = self.accelerator.num_processes
        summary["selected_indices"] = result["selected"]
        if per_prompt is not None:
            summary["heldout_per_prompt"] = per_prompt
        self.store.write_summary(k, summary)
        if self.args.plot_rewards:
            self.store.on_main(lambda: plot_rewards(self.store, self.heldout_baseline))
        self.summaries.append(summary)
        self.log({f"sampling/{key}": v for key, v in summary.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None})
        self._print_row(summary)

    def _print_row(self, s: dict) -> None:
        def f(v):
            return "   -   " if v is None else f"{v:7.3f}"

        def noise(key):  # ±SE of a held-out mean, and its change since before training with the 95% interval
            se_key, low_key, high_key, base_key = noise_keys(key)
            se = "   -  " if s.get(se_key) is None else f"±{s[se_key]:.3f}"
            if s.get(low_key) is None or s.get(base_key) is None or s.get(key) is None:
                return f"{se:>6} {'-':>20}"
            return f"{se:>6} {s[key] - s[base_key]:+.3f} [{s[low_key]:+.2f},{s[high_key]:+.2f}]"

        monitors = [f"heldout/{source.entry.name}" for source in self.heldout_sources]
        if s["iteration"] == 1 or not getattr(self, "_printed_header", False):
            def was(key):  # a held-out mean before training, with its SE
                value, se = self.heldout_baseline_scores.get(key), self.heldout_baseline_scores.get(noise_keys(key)[0])
                return f(value).strip() + (f" ±{se:.3f}" if se is not None else "")

            before = "; ".join([was("heldout_reward_mean")] + [f"{key.split('/')[-1]} {was(key)}" for key in monitors])
            self.accelerator.print(f"{'iter':>4} {'reward':>7} {'select':>7} {'kept':>6} {'drop':>5} {'cut':>5} {'dist-2':>7} "
                                   f"{'tokens':>7} {'heldout':>7} {'±SE':>6} {'change [95%]':>20}"
                                   + "".join(f" {key.split('/')[-1][:12]:>12} {'±SE':>6} {'change [95%]':>20}"
                                             for key in monitors)
                                   + f"   (held-out before training: {before})")
            self._printed_header = True
        self.accelerator.print(f"{s['iteration']:>4} {f(s['reward_all_mean'])} {f(s['reward_selected_mean'])} "
                               f"{s['kept']:>6} {s['dropped']:>5} {s['unfinished']:>5} {f(s['distinct2_all'])} "
                               f"{f(s['mean_tokens_all'])} {f(s['heldout_reward_mean'])} {noise('heldout_reward_mean')}"
                               + "".join(f"      {f(s.get(key))} {noise(key)}" for key in monitors))


class SamplingTrainer(SamplingEngine, SFTTrainer):
    """Base class of the sampling trainers; see the module docstring. Built like an SFTTrainer on prompt-only data;
    ``rewards``/``heldout_rewards`` are resolved ``reward_funcs``/``heldout_reward_funcs`` entries (resolved from
    ``args`` when not given)."""

    _tag_names = ["trl", "sft", "trl-plugins", "sampling"]

    def __init__(self, model, args: SamplingConfig, train_dataset, processing_class=None, peft_config=None,
                 heldout_dataset=None, callbacks=None, rewards=None, heldout_rewards=None, **kwargs):
        if not isinstance(args, SamplingConfig):
            raise TypeError(f"`args` must be a SamplingConfig subclass, got {type(args).__name__}")
        from datasets import IterableDataset

        if isinstance(train_dataset, IterableDataset):
            from .method import STREAMING_REFUSED

            raise ValueError(STREAMING_REFUSED)
        if "prompt" not in train_dataset.column_names:
            raise ValueError("the sampling trainers need a 'prompt' column")
        super().__init__(model=model, args=args, train_dataset=train_dataset, processing_class=processing_class,
                         peft_config=peft_config, callbacks=callbacks, **kwargs)
        self._init_engine(args, train_dataset, heldout_dataset, rewards, heldout_rewards)

    # -- SFTTrainer hooks --------------------------------------------------------------------------------------------
    def _prepare_dataset(self, dataset, processing_class, args, packing, formatting_func, dataset_name):
        from trl.data_utils import get_dataset_column_names

        columns = get_dataset_column_names(dataset)
        if "prompt" in columns and "completion" not in columns and "input_ids" not in columns:
            return dataset  # the prompt source: tokenized per phase after selection, not here
        return super()._prepare_dataset(dataset, processing_class, args, packing, formatting_func, dataset_name)

    # -- one SFT phase -----------------------------------------------------------------------------------------------
    def sft_phase(self, selected: list[dict], name: str, seed: int):
        """Fine-tune the current model on selected ``{"prompt", "completion"}`` rows with SFTTrainer's loop."""
        from datasets import Dataset
        from transformers import set_seed

        if not selected:
            logger.warning("%s: no sample selected; the policy is left as it is", name)
            return None
        if self.restart_from_base:
            self.load_trainable(self._base_weights)
        carried = [c for c in TEMPLATE_COLUMNS if c in self.prompt_dataset.column_names]  # kept like SFTTrainer does
        data = Dataset.from_list([{"prompt": s["prompt"], "completion": s["completion"],
                                   **{c: self._prompt_rows[s["row"]][c] for c in carried if "row" in s}}
                                  for s in selected])
        self.train_dataset = super()._prepare_dataset(data, self.processing_class, self.args, self.args.packing,
                                                      None, name)
        self.optimizer, self.lr_scheduler = None, None  # every phase is a fresh SFT run: new AdamW state and schedule
        set_seed(seed)
        out = SFTTrainer.train(self)
        self.total_phase_steps += out.global_step
        return out

    # -- per-iteration rule (subclasses) -------------------------------------------------------------------------
    def select(self, k: int, samples: list[dict], rewards: list[float | None]) -> list[int]:
        raise NotImplementedError

    def run_iteration(self, k: int, samples: list[dict], rewards: list[float | None]) -> dict:
        """Select and fine-tune; returns ``{"selected": indices, ...extra summary fields}``."""
        chosen = self.select(k, samples, self.selectable(samples, rewards))
        selected = [dict(samples[i], index=i, reward=rewards[i]) for i in chosen]
        self.store.write_rows(k, "selection.jsonl", selected)
        out = self.sft_phase(selected, f"iteration_{k}", seed=self.args.seed + 1000 * k)
        return {"selected": chosen, "train_loss": out.training_loss if out else None}
