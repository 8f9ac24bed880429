"""The ``trl-plugins`` command: exit codes, and every bad input stopped with one line before any model loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import write_jsonl
from tiny import preference_rows


def _one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


# -- exit code 0 ---------------------------------------------------------------------------------------------------
def test_list_json_has_the_documented_keys(run_cli):
    code, out, _ = run_cli("list", "--json")
    assert code == 0
    rows = json.loads(out)
    orpo = next(r for r in rows if r["name"] == "orpo")
    assert {"name", "distribution", "version", "summary", "columns"} <= set(orpo)
    assert orpo["distribution"] == "trl-plugins"
    assert orpo["columns"]["required"] == ["chosen", "rejected"]


def test_list_table_and_rewards(run_cli):
    code, out, _ = run_cli("list")
    assert code == 0 and "orpo" in out and "trl-plugins" in out
    code, out, _ = run_cli("list", "--rewards")
    assert code == 0 and "vader_sentiment" in out


def test_info_shows_fields_format_and_recipes(run_cli):
    code, out, _ = run_cli("info", "orpo")
    assert code == 0
    for expected in ("beta", "nll_on_prompt", "prompt", "demo/orpo", "qwen2.5-1.5b-instruct/orpo/config_qlora"):
        assert expected in out
    code, out, _ = run_cli("info", "orpo", "--json")
    data = json.loads(out)
    beta = next(f for f in data["config_fields"] if f["name"] == "beta")
    assert beta["default"] == 0.1 and beta["help"]
    assert "DPOTrainer" in data["trainer_bases"]


def test_list_shows_each_accepted_format_of_kto_weighted(run_cli):
    """kto-weighted takes unpaired or paired rows: each format's columns, no empty required list."""
    code, out, _ = run_cli("list")
    line = next(line for line in out.splitlines() if line.startswith("kto-weighted"))
    assert "prompt, completion, label | chosen, rejected [prompt]" in line
    code, out, _ = run_cli("info", "kto-weighted")
    assert "dataset format: unpaired_preference or preference" in out


def test_info_help_column_ends_cut_text_with_an_ellipsis(run_cli):
    from trl_plugins.cli.info import short_help

    assert short_help("Short help. More words.") == "Short help."
    long = "word " * 40
    cut = short_help(long)
    assert len(cut) <= 100 and cut.endswith("…") and not cut[:-1].endswith(" ")
    code, out, _ = run_cli("info", "kto-weighted")
    rows = out.split("HELP", 1)[1].splitlines()[1:]
    assert rows and all(len(r.split("  ")[-1].strip()) <= 100 for r in rows)
    assert any(r.endswith("…") for r in rows)


@pytest.mark.parametrize("command", ["train", "check-data"])
def test_help_without_a_trainer_name(run_cli, command):
    code, out, err = run_cli(command, "--help")
    assert code == 0 and err == ""
    assert out.startswith(f"usage: trl-plugins {command} NAME --config RECIPE") and "orpo" in out


def test_recipes_and_docs_commands(run_cli, tmp_path):
    code, out, _ = run_cli("recipes", "orpo")
    assert code == 0 and "demo/orpo" in out and "qwen2.5-1.5b-instruct/orpo/config_qlora" in out
    code, out, _ = run_cli("recipes", "--path", "accelerate_configs/multi_cpu")
    assert code == 0 and out.strip().endswith("multi_cpu.yaml")
    code, out, err = run_cli("recipes", "--copy", "demo/raft", "--to", tmp_path)
    assert code == 0 and (tmp_path / "raft.yaml").read_text().startswith("#")
    (tmp_path / "raft.yaml").write_text("mine")
    code, out, err = run_cli("recipes", "--copy", "demo/raft", "--to", tmp_path)
    assert code == 2 and "not overwritten" in err and (tmp_path / "raft.yaml").read_text() == "mine"
    code, out, err = run_cli("recipes", "--path", "demo/orpoo")
    assert code == 2 and "did you mean 'demo/orpo'" in err
    code, out, _ = run_cli("docs", "memory")
    assert code == 0 and out.startswith("#")
    code, out, err = run_cli("docs", "nope")
    assert code == 2 and "no doc page 'nope'" in err
    code, out, _ = run_cli("docs", "--example", "--to", tmp_path)
    assert code == 0 and (tmp_path / "trl-plugins-example" / "pyproject.toml").is_file()
    assert not (tmp_path / "trl-plugins-example" / "build").exists()


def test_check_data_summarises_without_loading_a_model(run_cli, tiny_recipe, no_model_loading):
    code, out, err = run_cli("check-data", "orpo", "--config", tiny_recipe())
    assert code == 0, err
    assert "train: 16 rows; columns prompt, chosen, rejected; standard preference" in out
    assert "orpo: 16 standard pairs; tokens p50/p95/max:" in out


def test_train_runs_saves_and_writes_a_model_card(run_cli, tiny_recipe, tmp_path):
    code, out, err = run_cli("train", "orpo", "--config", tiny_recipe(), "--max_steps", "2")
    assert code == 0, err
    saved = tmp_path / "out"
    assert (saved / "model.safetensors").is_file() and (saved / "README.md").is_file()
    assert "ORPO" in (saved / "README.md").read_text()


def test_cli_flags_override_the_yaml(run_cli, tiny_recipe, tmp_path):
    from trl_plugins import get_trainer
    from trl_plugins.run.recipe import StrictParser

    _, config_cls = get_trainer("orpo")
    parsed, _ = StrictParser(config_cls).parse(["--beta", "0.3"], Path(tiny_recipe({"beta": 0.2})))
    training_args = parsed[1]
    assert training_args.beta == 0.3 and training_args.max_steps == 2  # CLI beats YAML; YAML beats defaults


# -- exit code 1: a bug, not bad input -----------------------------------------------------------------------------
def test_unexpected_failure_exits_1_with_traceback(run_cli, tiny_recipe, monkeypatch):
    import trl_plugins.run.flow as flow

    def boom(run):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(flow, "train", boom)
    code, _, err = run_cli("train", "orpo", "--config", tiny_recipe())
    assert code == 1 and "Traceback" in err and "simulated bug" in err


# -- exit code 2: bad input, one line, no model loaded -------------------------------------------------------------
def test_unknown_trainer(run_cli):
    code, _, err = run_cli("train", "orpoo", "--config", "x.yaml")
    assert code == 2
    line = _one_error_line(err)
    assert "orpoo" in line and "orpo" in line.replace("orpoo", "")  # names it and suggests the real one


def test_unknown_command(run_cli):
    code, _, err = run_cli("trian")
    assert code == 2 and "trian" in _one_error_line(err)


@pytest.mark.parametrize(
    "extra,expected",
    [
        ({"betta": 0.1}, ["unknown key 'betta'", "beta"]),
        ({"learning_rate": "fast"}, ["learning_rate", "fast"]),
        ({"lr_scheduler_type": "linearr"}, ["lr_scheduler_type", "linearr"]),
        ({"peft_preset": "qlora-20gb"}, ["qlora-20gb", "qlora-24gb"]),
        ({"loss_type": ["ipo"]}, ["loss_type"]),
    ],
)
def test_bad_recipe_values(run_cli, tiny_recipe, no_model_loading, extra, expected):
    recipe = tiny_recipe(extra)
    code, _, err = run_cli("train", "orpo", "--config", recipe)
    assert code == 2
    line = _one_error_line(err)
    for text in expected:
        assert text in line


def test_unknown_cli_flag(run_cli, tiny_recipe, no_model_loading):
    code, _, err = run_cli("train", "orpo", "--config", tiny_recipe(), "--max_stpes", "3")
    assert code == 2 and "--max_steps" in _one_error_line(err)


def test_missing_recipe_and_invalid_yaml(run_cli, tmp_path, no_model_loading):
    code, _, err = run_cli("train", "orpo", "--config", str(tmp_path / "nope.yaml"))
    assert code == 2 and "nope.yaml" in _one_error_line(err)
    bad = tmp_path / "bad.yaml"
    bad.write_text("beta: [0.1\n")
    code, _, err = run_cli("train", "orpo", "--config", str(bad))
    assert code == 2 and "bad.yaml" in _one_error_line(err)


def _data_recipe(tiny_recipe, tmp_path, rows=None, filename="data.jsonl", text=None):
    path = tmp_path / filename
    if text is not None:
        path.write_text(text)
    else:
        write_jsonl(path, rows)
    return tiny_recipe({"dataset_name": str(path)})


def test_misnamed_column(run_cli, tiny_recipe, tmp_path, no_model_loading):
    rows = [{"prompt": r["prompt"], "choosen": r["chosen"], "rejected": r["rejected"]} for r in preference_rows(4)]
    code, _, err = run_cli("check-data", "orpo", "--config", _data_recipe(tiny_recipe, tmp_path, rows))
    line = _one_error_line(err)
    assert code == 2 and "'chosen'" in line and "choosen" in line and "data.jsonl" in line


def test_empty_dataset(run_cli, tiny_recipe, tmp_path, no_model_loading):
    recipe = _data_recipe(tiny_recipe, tmp_path, filename="empty.csv", text="prompt,chosen,rejected\n")
    code, _, err = run_cli("train", "orpo", "--config", recipe)
    assert code == 2 and "empty" in _one_error_line(err)


@pytest.mark.parametrize("column,value,expected", [("chosen", "", "empty"), ("rejected", 5, "int"),
                                                   ("prompt", None, "missing value")])
def test_non_string_or_empty_values(run_cli, tiny_recipe, tmp_path, no_model_loading, column, value, expected):
    rows = preference_rows(6)
    rows[3][column] = value
    code, _, err = run_cli("train", "orpo", "--config", _data_recipe(tiny_recipe, tmp_path, rows))
    line = _one_error_line(err)
    assert code == 2 and column in line and expected in line and "row 3" in line


def test_chosen_equals_rejected_everywhere(run_cli, tiny_recipe, tmp_path, no_model_loading):
    rows = [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["chosen"]} for r in preference_rows(5)]
    code, _, err = run_cli("train", "orpo", "--config", _data_recipe(tiny_recipe, tmp_path, rows))
    assert code == 2 and "chosen == rejected" in _one_error_line(err)


def test_unreadable_and_missing_data_files(run_cli, tiny_recipe, tmp_path, no_model_loading):
    recipe = _data_recipe(tiny_recipe, tmp_path, filename="broken.jsonl", text='{"prompt": "a", "chosen": \n')
    code, _, err = run_cli("train", "orpo", "--config", recipe)
    assert code == 2 and "broken.jsonl" in _one_error_line(err)
    code, _, err = run_cli("train", "orpo", "--config", tiny_recipe({"dataset_name": str(tmp_path / "nope.jsonl")}))
    assert code == 2 and "nope.jsonl" in _one_error_line(err)


def test_output_dir_with_a_previous_run_is_refused_then_overwritten_on_request(run_cli, tiny_recipe, tmp_path,
                                                                             no_model_loading, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.safetensors").write_text("a previous run")
    code, _, err = run_cli("train", "orpo", "--config", tiny_recipe())
    line = _one_error_line(err)
    assert code == 2 and str(out) in line and "--overwrite_output_dir" in line
    assert (out / "model.safetensors").read_text() == "a previous run"  # nothing lost
    monkeypatch.undo()  # allow model loading again
    code, _, err = run_cli("train", "orpo", "--config", tiny_recipe(), "--overwrite_output_dir", "--max_steps", "1")
    assert code == 0, err
    assert (out / "model.safetensors").read_bytes() != b"a previous run"


def test_model_source_that_does_not_exist(run_cli, tiny_recipe, tmp_path, no_model_loading):
    code, _, err = run_cli("train", "orpo", "--config", tiny_recipe({"model_name_or_path": str(tmp_path / "nomodel")}))
    assert code == 2 and "nomodel" in _one_error_line(err)
    code, _, err = run_cli("train", "orpo", "--config", tiny_recipe({"model_name_or_path": "embedded:gpt-9"}))
    assert code == 2 and "gpt-9" in _one_error_line(err)


# -- launching under accelerate ------------------------------------------------------------------------------------
def _env():
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


@pytest.mark.distributed
def test_accelerate_launch_module(tiny_recipe, tmp_path):
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--cpu", "--num_processes", "1", "--num_machines", "1", "--mixed_precision",
           "no", "--dynamo_backend", "no", "-m", "trl_plugins", "train", "orpo", "--config", tiny_recipe(),
           "--max_steps", "1"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "out" / "model.safetensors").is_file()


@pytest.mark.distributed
def test_accelerate_config_relaunch_with_a_shipped_config(tiny_recipe, tmp_path):
    cmd = [sys.executable, "-m", "trl_plugins", "train", "orpo", "--config", tiny_recipe(), "--max_steps", "1",
           "--accelerate_config", "cpu"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "out" / "model.safetensors").is_file()
    bad = subprocess.run(cmd[:-1] + ["nonesuch"], capture_output=True, text=True, env=_env(), timeout=600)
    assert bad.returncode == 2 and "nonesuch" in _one_error_line(bad.stderr)


def test_plan_command_is_wired(run_cli):
    code, out, _ = run_cli("plan", "orpo", "--config", "qwen2.5-1.5b-instruct/orpo/config_qlora", "--gpu", "12GB")
    assert code == 0 and "GiB" in out
    code, _, err = run_cli("plan", "orpo", "--config", "qwen2.5-1.5b-instruct/orpo/config_qlora", "--gpu", "24 gigs")
    assert code == 2 and len(err.strip().splitlines()) == 1
