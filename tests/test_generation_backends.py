"""The ``register_generation_backends`` hook end to end: a third-party backend (tests/plugins/backend, installed with pip)
is listed, picked by ``generation_backend``, trains a run whose files are the engine's, and resumes it; the built-in
``transformers`` backend comes through the same hook; an unknown name is one line before any model loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import PROMPTS, kill_in_iteration, read_jsonl, trainable, write_jsonl, write_recipe
from helpers import build_trainer as build


@pytest.fixture
def recipe(tmp_path, tiny_model_dir):
    data = tmp_path / "splits"
    write_jsonl(data / "train.jsonl", [{"prompt": p} for p in PROMPTS])
    write_jsonl(data / "test.jsonl", [{"prompt": p} for p in PROMPTS[:3]])

    def make(name: str, extra: dict | None = None) -> str:
        config = {"model_name_or_path": tiny_model_dir, "dataset_name": str(data), "dataset_test_split": "test",
                  "output_dir": str(tmp_path / name), "reward_funcs": ["sampling_rewards:good_words"],
                  "generation_backend": "plain-generate", "heldout_prompts": 3, "num_iterations": 2,
                  "num_generations": 2, "max_new_tokens": 5, "temperature": 1.0, "per_device_train_batch_size": 4,
                  "max_steps": 1, "max_length": 64, "learning_rate": 1e-2, "seed": 3, "keep_unfinished": True}
        return write_recipe(tmp_path / f"{name}.yaml", config, extra)

    return make


def test_builtin_backend_registers_through_the_hook(run_cli):
    from trl_plugins.registry import get_registry

    spec = get_registry(reload=True).generation_backend("transformers")
    assert (spec.distribution, spec.source.plugin) == ("trl-plugins", "builtin")
    assert spec.load().__name__ == "TransformersBackend"
    code, out, _ = run_cli("list", "--backends", "--json")
    assert code == 0 and [b["name"] for b in json.loads(out)] == ["transformers"]


@pytest.mark.slow
def test_plugin_backend_trains_a_run_and_resumes_it(with_plugins, recipe, run_cli, tmp_path):
    registry = with_plugins("backend")
    assert registry.generation_backend("plain-generate").distribution == "trl-plugins-backend"
    code, out, _ = run_cli("list", "--backends")
    assert code == 0 and "plain-generate" in out and "trl-plugins-backend 0.0.1" in out

    full = build("raft", recipe("full"))
    assert type(full.backend).__name__ == "PlainGenerateBackend"
    before = trainable(full.model)
    full.train()
    assert any(not (before[n] == p).all() for n, p in trainable(full.model).items())
    # every generate stage went through the plugin: the baseline, and per iteration the samples and the held-out
    assert full.backend.calls == 1 + 2 * 2
    out = Path(full.args.output_dir)
    for k in (1, 2):
        generations = read_jsonl(out / f"iteration_{k}" / "generations.jsonl")
        assert sorted((g["row"], g["sample"]) for g in generations) == [(r, j) for r in range(6) for j in range(2)]
        assert len(read_jsonl(out / f"iteration_{k}" / "rewards.jsonl")) == 12
        summary = json.loads((out / f"iteration_{k}" / "summary.json").read_text())
        assert summary["generation_tokens"] == sum(g["num_tokens"] for g in generations) > 0
        assert summary["heldout_reward_mean"] is not None and summary["kept"] == 6
    assert json.loads((out / "heldout_baseline.json").read_text())["heldout_reward_mean"] is not None

    killed = build("raft", recipe("killed"))
    kill_in_iteration(killed, 2)
    resumed = build("raft", recipe("killed"), "--resume_from_checkpoint", "true")
    resumed.train(resume_from_checkpoint=True)
    assert resumed.backend.calls == 1  # iteration 2's samples were on disk: only its held-out evaluation generated
    for k in (1, 2):
        assert read_jsonl(tmp_path / "killed" / f"iteration_{k}" / "selection.jsonl") == read_jsonl(
            out / f"iteration_{k}" / "selection.jsonl")


def test_unknown_backend_is_one_line_exit_2_before_model_load(recipe, run_cli, no_model_loading):
    code, _, err = run_cli("train", "raft", "--config", recipe("x", {"generation_backend": "vlm"}))
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "unknown generation backend 'vlm'" in lines[0] and "available: transformers" in lines[0]
