"""One method's run inside ``trl-plugins compare``: ``python -m trl_plugins.compare.worker JOB.json``.

The ``train`` flow of ``run/flow.py`` (same checks, same trainer) with one callback added to the trainer, which records
per fine-tuning phase the tokens trained (the Trainer's own ``num_input_tokens_seen``, non-padding) in
``compare_phases.jsonl`` and, for a method that is not a sampling trainer, scores the held-out prompts before and
after training into ``heldout_baseline.json`` / ``heldout_final.json`` with the sampling engine's own held-out
evaluation (``sampling.engine.evaluate_heldout``, its monitors included), at the settings the compare gives the
sampling methods, and the reward-hacking guard's verdict on the trained model (``reward_hacking``). The compare
(``run.py``) writes the job file and reads these files back. Docs: docs/compare.md.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from transformers import TrainerCallback

from ..sampling.records import VERDICT, HeldoutScores
from ..sampling.store import read_jsonl, write_json, write_jsonl
from .task import sampling_keys

PHASES = "compare_phases.jsonl"


class CompareRecorder(TrainerCallback):
    """Tokens trained per phase; held-out scores before/after for a non-sampling method (``rows`` given)."""

    def __init__(self, out_dir: Path, job: dict, rows: list[dict] | None):
        self.out, self.job, self.rows = out_dir, job, rows
        self.trainer = None  # set once built: a sampling phase's iteration is len(trainer.summaries) + 1
        self.phases = read_jsonl(out_dir / PHASES) if (out_dir / PHASES).is_file() else []
        baseline = out_dir / "heldout_baseline.json"  # a resumed run keeps the score of the base, not its own
        self.baseline = (HeldoutScores.from_json(json.loads(baseline.read_text()))
                         if job["resume"] and baseline.is_file() else None)
        self._start = time.perf_counter()

    def options(self):
        """The sampling options a sampling method of the same compare runs with (the knobs it does not set at their
        defaults), with this run's training seed."""
        from ..sampling.config import sampling_options

        job = self.job
        return sampling_options(**sampling_keys(job["heldout"], job["metric"], job.get("monitors"),
                                                job.get("heldout_seed"), job.get("judge")), seed=job["seed"])

    def evaluate(self, model, tokenizer) -> HeldoutScores:
        """The held-out scores and monitors of ``model``, as a sampling method of the same compare gets its own: the
        engine's :func:`~trl_plugins.sampling.engine.evaluate_heldout` with the settings the compare writes into the
        sampling methods' recipes and the task's held-out seed; π₀ of the monitors as the engine's rule says
        (``MonitorSettings.of``: with LoRA the adapter switched off)."""
        from ..evaluation.monitors import MonitorSettings
        from ..sampling import reward_sources
        from ..sampling.engine import HeldoutSettings, evaluate_heldout
        from ..sampling.generation import make_backend

        options = self.options()
        entries = reward_sources.resolve(options.reward_funcs, options.reward_weights, key="metric", options=options)
        sources = reward_sources.build(entries, next(model.parameters()).device, options.reward_batch_size)
        backend = make_backend(options.generation_backend, model, tokenizer)
        watch, note = MonitorSettings.of(options.heldout_monitors, model, tokenizer,
                                         batch_size=options.reward_batch_size)
        if note and self.baseline is None:
            print(note, flush=True)
        evaluation = evaluate_heldout(backend, self.rows, sources, [], HeldoutSettings.of(options), watch=watch)
        evaluation.scores.extra["generated_tokens"] = evaluation.generated_tokens
        return evaluation.scores

    def judge(self, final: HeldoutScores) -> dict | None:
        """The reward-hacking guard's verdict on the trained model against the base (one step: iteration 1), as a
        sampling run's guard judges its iterations; None with ``reward_hacking: off``."""
        from ..evaluation import guard
        from ..evaluation.monitors import KL_TOKEN

        options = self.options()
        if options.reward_hacking == "off":
            return None
        verdict, _ = guard.judge(guard.start(*guard.inputs(self.baseline.per_prompt)), 1,
                                 *guard.inputs(final.per_prompt), kl_per_token=final.means.get(KL_TOKEN),
                                 max_kl=options.max_kl, reward_name=" + ".join(self.job["metric"]),
                                 seed=self.job["seed"])
        if verdict["tripped"]:
            print(verdict["message"], flush=True)
        return verdict

    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        self._start = time.perf_counter()
        if self.rows is not None and self.baseline is None and state.is_world_process_zero:
            self.baseline = self.evaluate(model, processing_class)
            write_json(self.out / "heldout_baseline.json", self.baseline.to_json())

    def on_train_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if not state.is_world_process_zero:
            return
        iteration = len(self.trainer.summaries) + 1 if hasattr(self.trainer, "summaries") else None
        self.phases.append({"iteration": iteration, "trained_tokens": state.num_input_tokens_seen,
                            "steps": state.global_step, "seconds": time.perf_counter() - self._start})
        write_jsonl(self.out / PHASES, self.phases)
        if self.rows is not None:
            final = self.evaluate(model, processing_class).compared_with(self.baseline, seed=self.job["seed"])
            final.extra["global_step"] = state.global_step
            if (verdict := self.judge(final)) is not None:
                final.extra[VERDICT] = verdict
            write_json(self.out / "heldout_final.json", final.to_json())


def heldout_rows(job: dict) -> list[dict]:
    """The task's held-out rows, chosen as a sampling method's run chooses its own (``heldout_split``)."""
    from ..checks.sources import load_source
    from ..sampling.method import heldout_split

    source = job["heldout_source"]
    datasets = load_source(source["dataset_name"], source.get("dataset_config"))
    return heldout_split(datasets, source["dataset_test_split"], job["heldout"]["prompts"]).to_list()


def _forget_unfinished(out: Path, resume: bool, sampling: bool) -> None:
    """A fresh run forgets the compare's files of an earlier one; a resumed sampling run keeps the phase records of
    its finished iterations only (the unfinished one is run again)."""
    if not resume:
        for name in (PHASES, "heldout_final.json", "heldout_baseline.json"):
            (out / name).unlink(missing_ok=True)
        return
    if sampling and (out / PHASES).is_file():
        from ..sampling.store import RunStore

        done = len(RunStore(out).finished_iterations())
        write_jsonl(out / PHASES, [p for p in read_jsonl(out / PHASES) if (p["iteration"] or 0) <= done])


def run_job(job: dict) -> None:
    from ..registry import get_registry
    from ..run import flow

    spec = get_registry().trainer(job.get("trainer", job["method"]))
    out = Path(job["output_dir"])
    argv = ["--config", job["recipe"]]
    argv += ["--resume_from_checkpoint", "true"] if job["resume"] else ["--overwrite_output_dir", "true"]
    run = flow.prepare_run(spec, argv)
    run.training_args.include_num_input_tokens_seen = "non_padding"  # the parser reads this str | bool field as a bool
    _forget_unfinished(out, job["resume"], job["sampling"])
    recorder = CompareRecorder(out, job, None if job["sampling"] else heldout_rows(job))
    build = run.method.build

    def build_with_recorder(r):
        trainer = build(r)
        trainer.add_callback(recorder)
        recorder.trainer = trainer
        return trainer

    run.method.build = build_with_recorder
    flow.train(run)


def main(argv: list[str] | None = None) -> int:
    from ..errors import TrlPluginsError

    argv = sys.argv[1:] if argv is None else argv
    try:
        run_job(json.loads(Path(argv[0]).read_text()))
    except TrlPluginsError as exc:
        for line in exc.lines():
            print(f"error: {line}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
