"""Runs trainers the way `trl-plugins train` does, in 1 or N processes, and records what the tests compare.

    torchrun --nproc_per_node 2 tests/multiprocess_driver.py JOBS.json      # each job: name, argv, result
    (or in-process: run_jobs(path) for the 1-process reference)

Per job it writes ``result`` (main process): the trainer's log history, and per process the labels of every batch
the loss saw (kto-weighted) and the prompts every process generated for (sampling trainers).
"""

from __future__ import annotations

import json
import sys


def run_job(job: dict) -> dict:
    from accelerate.utils import gather_object

    from trl_plugins.registry import get_registry
    from trl_plugins.run import flow

    run = flow.prepare_run(get_registry().trainer(job["name"]), job["argv"])
    trainer = flow.build_trainer(run)
    rank = trainer.accelerator.process_index
    batches, generated = [], []
    if hasattr(trainer, "_compute_loss") and job["name"] == "kto-weighted":
        compute = trainer._compute_loss

        def record(model, inputs, *args, **kwargs):
            batches.append([bool(x) for x in inputs["label"]])
            return compute(model, inputs, *args, **kwargs)

        trainer._compute_loss = record
    if hasattr(trainer, "backend"):
        generate = trainer.backend.generate

        def record_prompts(prompts, *args, **kwargs):
            generated.append([json.dumps(p) for p in prompts])
            return generate(prompts, *args, **kwargs)

        trainer.backend.generate = record_prompts
    trainer.train()
    per_process = {"rank": rank, "batches": batches, "generated": generated}
    processes = gather_object([per_process]) if trainer.accelerator.num_processes > 1 else [per_process]
    result = {"log_history": trainer.state.log_history, "processes": processes,
              "num_processes": trainer.accelerator.num_processes}
    if trainer.accelerator.is_main_process:
        with open(job["result"], "w") as f:
            json.dump(result, f)
    trainer.accelerator.wait_for_everyone()
    return result


def run_jobs(path: str) -> None:
    with open(path) as f:
        jobs = json.load(f)
    for job in jobs:
        run_job(job)


if __name__ == "__main__":
    run_jobs(sys.argv[1])
