"""Two nodes without a shared disk: ``torchrun --nnodes 2 --nproc_per_node 1`` on 127.0.0.1, each node started from
its own working directory with its own copy of the model and data and its own ``output_dir``. A fresh RAFT run
finishes on both; resumed with ``--resume_from_checkpoint true`` (and one more iteration) both nodes resume after
the iteration that only node 0's disk holds, because the main process decides and sends (sampling/store.py).
Docs: docs/distributed.md ("Several machines")."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from test_distributed import PROMPTS, _env

from helpers import CPU_RUN, write_jsonl
from tiny import save_tiny_causal_lm

pytestmark = pytest.mark.distributed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(nodes: list[Path], *extra: str) -> list[str]:
    """Both nodes of one run (node 0 first), each in its own directory; returns their outputs."""
    port = _free_port()
    launches = []
    for rank, node in enumerate(nodes):
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
                   "--node_rank", str(rank), "--master_addr", "127.0.0.1", "--master_port", str(port),
                   "-m", "trl_plugins", "train", "raft", "--config", "recipe.yaml", *extra]
        launches.append(subprocess.Popen(command, cwd=node, env=_env(), stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True, start_new_session=True))
    logs = []
    try:
        for launch in launches:
            logs.append(launch.communicate(timeout=240)[0])
    finally:
        for launch in launches:  # never leave a hung process group behind
            if launch.poll() is None:
                os.killpg(launch.pid, 9)
    for rank, (launch, log) in enumerate(zip(launches, logs)):
        assert launch.returncode == 0, f"node {rank}:\n{log[-4000:]}"
    return logs


def test_two_nodes_with_separate_disks_run_fresh_then_resume(tmp_path):
    import yaml

    nodes = [tmp_path / "node0", tmp_path / "node1"]
    save_tiny_causal_lm(tmp_path / "lm")
    for node in nodes:  # every node its own copy of the inputs, relative paths: nothing shared
        shutil.copytree(tmp_path / "lm", node / "lm")
        write_jsonl(node / "prompts.jsonl", [{"prompt": p} for p in PROMPTS])
        (node / "recipe.yaml").write_text(yaml.safe_dump({
            **CPU_RUN, "model_name_or_path": "lm", "dataset_name": "prompts.jsonl", "output_dir": "run",
            "reward_funcs": ["sampling_rewards:good_words"], "num_iterations": 1, "num_generations": 4,
            "max_new_tokens": 6, "generation_batch_size": 8, "per_device_train_batch_size": 2, "max_steps": 2,
            "max_length": 64, "learning_rate": 1e-2, "seed": 5, "keep_unfinished": True}))

    _launch(nodes)
    main, other = nodes[0] / "run", nodes[1] / "run"
    assert (main / "iteration_1" / "summary.json").is_file()
    assert not (other / "iteration_1").exists()  # the sampling files live on the main node's disk only

    logs = _launch(nodes, "--resume_from_checkpoint", "true", "--num_iterations", "2")
    for log in logs:  # node 1's disk holds no finished iteration: it resumes on node 0's word
        assert "resuming the sampling run after iteration 1 of 2" in log, log[-3000:]
    summaries = [json.loads(line) for line in (main / "sampling_summary.jsonl").read_text().splitlines()]
    assert [(s["iteration"], s["processes"]) for s in summaries] == [(1, 2), (2, 2)]
    rows = [json.loads(line) for line in (main / "iteration_2" / "generations.jsonl").read_text().splitlines()]
    assert sorted((r["row"], r["sample"]) for r in rows) == [(i, j) for i in range(len(PROMPTS)) for j in range(4)]
    assert not (other / "iteration_2").exists()
