"""The compare flow: 1. read the task (``task.py``); 2. for every method, before any model loads: its trainer is a
generator, its recipe (shared + dataset + its own keys + the compare's) parses strictly, its budget share is set
(``budget.py``) and the train flow's checks pass (``flow.prepare_run``: data format, rewards, lengths) — else one line
naming the method, exit 2; 3. each (method, training seed) runs in its own process (``worker.py``) in
OUTPUT_DIR/<method>/ (the task's seed) or OUTPUT_DIR/<method>-seed<S>/ (``--seeds``: each further seed), unless a
finished one left its ``compare_result.json``; an unfinished sampling run is resumed, any other restarted; 4. the
table, plot and JSON (``report.py``). Docs: docs/compare.md.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, DataError, TrlPluginsError, UsageError
from ..sampling.records import TOTAL
from ..sampling.store import read_jsonl, write_json, write_jsonl
from .budget import Share, sampling_share, training_share
from .task import BUDGET_KEYS, Task, load_task, sampling_keys

RESULT = "compare_result.json"


class MethodFailed(TrlPluginsError):
    """A method's run ended with an error (its own lines are above); the compare stops with its exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class MethodPlan:
    name: str
    sampling: bool
    share: Share
    recipe: Path  # the method's whole recipe, as written for its run
    output_dir: Path
    iterations: int | None = None  # sampling methods: num_iterations
    seed: int = 42  # the training seed of this run (the recipe's seed)
    trainer: str | None = None  # the registered trainer, when the method's label is another name (trainer:)
    metric_column: str = TOTAL  # where its held-out files hold the task metric (heldout/<name>: trained on its own)


def training_seeds(task: Task, count: int) -> list[int]:
    """``--seeds N``: the task's seed and the N - 1 after it (``seed``, ``seed + 1``, ...)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise UsageError(f"--seeds must be an integer >= 1, got {count!r}")
    return [task.seed + i for i in range(count)]


def run_name(name: str, task: Task, seed: int) -> str:
    """The run's folder and recipe name: the method's for the task's own seed (as with one seed), else
    ``<method>-seed<S>``."""
    return name if seed == task.seed else f"{name}-seed{seed}"


def _write_yaml(path: Path, data: dict) -> Path:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def method_recipe(task: Task, name: str, out: Path, seed: int | None = None) -> MethodPlan:
    """One method's whole recipe (shared + dataset + its own keys + the compare's) with its budget share, parsed
    strictly and written to OUTPUT_DIR/recipes/<run>.yaml; no data, no model. ``seed``: a training seed other than
    the task's sets the recipe's ``seed`` (the run is ``<method>-seed<S>``)."""
    from ..registry import get_registry
    from ..run.recipe import StrictParser
    from ..sampling.config import SamplingOptions

    registry = get_registry()
    spec = registry.trainer(task.trainers.get(name, name))
    label = name if name in task.trainers else spec.name
    if label != spec.name and label in registry.trainers:
        raise ConfigError(f"{task.path}: methods.{name}: the label of a method run by trainer {spec.name!r} cannot be "
                          f"the name of trainer {label!r}: pick another")
    if spec.model_kind != "causal-lm":
        raise UsageError(f"{spec.name}: cannot be compared: it trains a {spec.model_kind} model, and the compare "
                         "scores text the trained model generates (only causal-lm trainers apply)")
    _, config_cls = spec.load()
    sampling = issubclass(config_cls, SamplingOptions)  # SFT phases (SamplingConfig) or preference phases
    overrides = task.methods.get(name, task.methods.get(spec.name, {}))
    own_reward = "reward_funcs" in overrides
    if own_reward and not sampling:
        raise ConfigError(f"{task.path}: methods.{name}: reward_funcs of its own applies to a sampling method; "
                          f"{spec.name} trains on its data, not on a reward")
    budget_key = BUDGET_KEYS["sampling" if sampling else "training"]
    if budget_key in overrides:
        raise ConfigError(f"{task.path}: methods.{name}: {budget_key!r} is set by the budget (docs/compare.md)")
    moved = [k for k in ("dataset_name", "dataset_config") if sampling and k in overrides]
    if moved:  # a sampling method's held-out prompts are its dataset's test split: they must be the task's
        raise ConfigError(f"{task.path}: methods.{name}: {moved[0]!r} of a sampling method is the task's dataset "
                          "(its held-out prompts come from it): set it under dataset:")
    parser = StrictParser(config_cls)
    parser.check_keys(task.shared, f"{task.path}: shared (for {spec.name})")
    parser.check_keys(overrides, f"{task.path}: methods.{name}")
    seed = task.seed if seed is None else seed
    run = run_name(label, task, seed)
    output_dir = out / run
    recipe = {**task.shared, **task.dataset, **overrides, "output_dir": str(output_dir)}
    if seed != task.seed:
        recipe["seed"] = seed
    metric_column = TOTAL
    if sampling:
        recipe.update(sampling_keys(task.heldout, task.metric, task.monitors, task.seed, task.judge))
    if own_reward:  # its training reward is its own; the metric scores its held-out samples as a monitor
        recipe.update({key: overrides[key] for key in ("reward_funcs", "reward_weights") if key in overrides})
        recipe["heldout_reward_funcs"] = task.metric
        metric_column = _metric_monitor(task, name)
    path = _write_yaml(out / "recipes" / f"{run}.yaml", recipe)
    try:
        (_, args, _, _), _ = parser.parse([], path)
    except TrlPluginsError as exc:
        lines = exc.lines()
        raise ConfigError(f"{label}: {lines[0]}", lines[1:]) from exc
    if sampling:
        share = sampling_share(label, task.budget, args.num_iterations, args.num_generations)
    else:
        share = training_share(label, task.budget, args.per_device_train_batch_size,
                               args.gradient_accumulation_steps)
    recipe.update(share.setting)
    _write_yaml(path, recipe)
    return MethodPlan(label, sampling, share, path, output_dir, args.num_iterations if sampling else None, seed,
                      spec.name if label != spec.name else None, metric_column)


def _metric_monitor(task: Task, name: str) -> str:
    """The held-out column of the task metric in the files of a method trained on its own reward: the metric is its
    ``heldout_reward_funcs``, so ``heldout/<name>`` — one entry, since monitors are not summed."""
    from types import SimpleNamespace

    from ..sampling import reward_sources
    from ..sampling.records import heldout_columns

    if len(task.metric) != 1:
        raise ConfigError(f"{task.path}: methods.{name}: a method with reward_funcs of its own is scored on a metric "
                          f"of one entry (metric has {len(task.metric)})")
    (entry,) = reward_sources.resolve(task.metric, key=f"{task.path}: metric", options=SimpleNamespace(**task.judge))
    return next(column for column, source in heldout_columns([], [entry.name]).items() if source == entry.name)


def plan_method(task: Task, name: str, out: Path) -> MethodPlan:
    """:func:`method_recipe`, then the train flow's checks of that recipe (data format, rewards, lengths: the tokenizer
    only); a method that does not apply to the task's data is refused in one line naming it."""
    from ..registry import get_registry
    from ..run import flow

    plan = method_recipe(task, name, out)
    try:
        run = flow.prepare_run(get_registry().trainer(plan.trainer or plan.name), ["--config", str(plan.recipe)],
                                 check_output=False)
    except TrlPluginsError as exc:
        raise UsageError(f"{plan.name}: does not apply to this task: {exc.lines()[0]}") from exc
    prompts = plan.share.setting.get("prompts_per_iteration", 0)
    if prompts > len(run.train_dataset):
        raise ConfigError(f"{plan.name}: the budget asks for {prompts} prompts per iteration but the training split "
                          f"has {len(run.train_dataset)}; lower --budget")
    return plan


def check_heldout(task: Task) -> None:
    """The task's held-out split: there, with prompts, and with the columns the metric reads (the sampling methods'
    runs check theirs; this is the one the others are scored on)."""
    from types import SimpleNamespace

    from ..checks.sources import load_source
    from ..sampling import reward_sources

    resolved = reward_sources.resolve(task.metric, key=f"{task.path}: metric", options=SimpleNamespace(**task.judge))
    dsd = load_source(task.dataset["dataset_name"], task.dataset.get("dataset_config"))
    split = task.dataset["dataset_test_split"]
    if split not in dsd:
        raise DataError(f"{task.path}: dataset {task.dataset['dataset_name']!r} has no held-out split {split!r} "
                        f"(splits: {', '.join(dsd)})")
    columns = dsd[split].column_names
    for entry, reward in zip(task.metric, resolved):  # the columns its registration declares
        missing = [c for c in ("prompt", *reward.reads_columns) if c not in columns]
        if missing:
            raise DataError(f"{task.path}: held-out split {split!r} lacks column {missing[0]!r} (metric {entry!r})")


def _job(task: Task, plan: MethodPlan) -> dict:
    """What the worker needs; an unfinished run left by a different job in the same folder is restarted, not resumed
    (a finished one is refused: ``check_finished_runs``)."""
    job = {"method": plan.name, "recipe": str(plan.recipe), "recipe_text": plan.recipe.read_text(),
           "output_dir": str(plan.output_dir), "sampling": plan.sampling, "metric": task.metric,
           "heldout": task.heldout, "seed": plan.seed, "heldout_source": task.dataset, "monitors": task.monitors,
           "heldout_seed": task.seed}
    job.update({k: v for k, v in (("trainer", plan.trainer), ("judge", task.judge)) if v})  # only when there are
    return job


def _changed(earlier: dict, job: dict) -> list[str]:
    """The settings that differ between two jobs, by recipe key where the recipes differ."""
    import yaml

    names = [k for k in sorted(set(earlier) | set(job)) if k not in ("recipe_text", "resume") and earlier.get(k) != job.get(k)]
    before, after = (yaml.safe_load(j.get("recipe_text") or "") or {} for j in (earlier, job))
    return names + [k for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k) and k not in names]


def check_finished_runs(runs: list[MethodPlan], task: Task) -> None:
    """A run finished with other settings (another task, another version's defaults) is not replaced unasked: one
    line naming the run, its folder and what changed, exit 2, before any model loads."""
    for plan in runs:
        result = plan.output_dir / RESULT
        if not result.is_file():
            continue
        earlier, job = json.loads(result.read_text()).get("job") or {}, _job(task, plan)
        if earlier != job:
            label = plan.name if plan.seed == task.seed else f"{plan.name} (seed {plan.seed})"
            raise UsageError(f"compare: {label} finished earlier in {plan.output_dir} with other settings "
                             f"({', '.join(_changed(earlier, job)) or 'the job'}); running it again would replace "
                             "its results: delete that folder to run it again, or pass another --output_dir")


def _resumable(plan: MethodPlan) -> bool:
    pattern = "iteration_*" if plan.sampling else "checkpoint-*"
    return any(plan.output_dir.glob(pattern))


def _stop_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def _run_worker(command: list[str], env: dict) -> int:
    """The worker's exit code. A compare stopped by SIGTERM (``kill``, ``timeout``, a job scheduler) or Ctrl-C stops
    its worker before it exits: no run goes on writing into a folder the next compare resumes."""
    main = threading.current_thread() is threading.main_thread()  # only the main thread may set a handler
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm) if main else None
    process = subprocess.Popen(command, env=env)
    try:
        return process.wait()
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if main:
            signal.signal(signal.SIGTERM, previous)


def run_method(task: Task, plan: MethodPlan) -> dict:
    """The method's figures: read from its ``compare_result.json`` when an earlier compare finished it with the same
    job, else run it (resuming or restarting) and write them there."""
    from .report import method_figures

    out, job = plan.output_dir, _job(task, plan)
    label = plan.name if plan.seed == task.seed else f"{plan.name} (seed {plan.seed})"
    result = out / RESULT
    if result.is_file():
        done = json.loads(result.read_text())
        if done.get("job") == job:
            print(f"compare: {label}: finished earlier ({result}); not run again", flush=True)
            return done
    job_file = out / "compare_job.json"
    earlier = json.loads(job_file.read_text()) if job_file.is_file() else None
    resume = earlier is not None and {k: v for k, v in earlier.items() if k != "resume"} == job and _resumable(plan)
    result.unlink(missing_ok=True)
    write_json(job_file, {**job, "resume": resume})
    print(f"compare: {label}: {'resuming' if resume else 'running'} in {out}", flush=True)
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    start = time.perf_counter()
    worker = [sys.executable, "-m", "trl_plugins.compare.worker", str(job_file)]
    code = _run_worker(worker, env)
    attempts = out / "compare_attempts.jsonl"
    history = read_jsonl(attempts) if attempts.is_file() and resume else []
    write_jsonl(attempts, history + [{"seconds": time.perf_counter() - start, "exit_code": code, "resumed": resume}])
    if code != 0:
        raise MethodFailed(f"compare: {label} failed (exit {code}, its output is above); the runs finished "
                           "so far are kept: run the same command again to continue", code)
    figures = method_figures(plan, read_jsonl(attempts))
    figures["job"] = job
    write_json(result, figures)  # written last, atomically: the method is finished
    return figures


def compare(config: str, methods: str | None, budget: int | None, output_dir: str | None, seeds: int = 1) -> int:
    from .report import write_report

    task = load_task(config, budget)
    names = [m.strip() for m in (methods.split(",") if methods else task.methods) if m.strip()]
    if not names:
        raise UsageError(f"no methods: pass --methods a,b or list them under methods: in {task.path}")
    if len(set(names)) != len(names):
        raise UsageError(f"--methods names a method twice: {methods}")
    seed_list = training_seeds(task, seeds)
    out = Path(output_dir or f"outputs/compare-{task.path.stem}")
    check_heldout(task)
    plans = [plan_method(task, name, out) for name in names]  # every check before any model loads
    runs = {seed: plans if seed == task.seed else [method_recipe(task, p.name, out, seed) for p in plans]
            for seed in seed_list}
    check_finished_runs([plan for seed in seed_list for plan in runs[seed]], task)
    print(f"compare: {len(plans)} methods on {task.dataset['dataset_name']} (metric {', '.join(task.metric)}; "
          f"{task.heldout['prompts']} held-out prompts), budget {task.budget} each"
          + (f", training seeds {', '.join(map(str, seed_list))}:" if len(seed_list) > 1 else ":"))
    for plan in plans:
        print(f"  {plan.share.line(task.budget)}")
    results: dict[str, list[dict]] = {plan.name: [] for plan in plans}
    for seed in seed_list:  # every method of one seed before the next seed: a stopped compare has whole seeds
        for plan in runs[seed]:
            results[plan.name].append(run_method(task, plan))
    print(write_report(task, plans, results, out))
    return 0
