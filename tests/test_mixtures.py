"""Dataset mixtures in a recipe (trl_plugins/checks/mixtures.py): TRL's ``datasets:`` loads exactly as
``trl.get_dataset`` loads it (embedded names and bare local files added); alignment-handbook's ``dataset_mixture:``
follows the handbook's rules; a bad mixture is one line, exit 2, before any model loads.

    python -m pytest tests/test_mixtures.py -q
"""

from __future__ import annotations

import pytest
import yaml

from trl_plugins.checks.data import load_datasets
from trl_plugins.checks.mixtures import handbook_mixture_problems
from trl_plugins.errors import DataError

from helpers import CPU_RUN, write_jsonl
from tiny import preference_rows


def _rows(n: int, tag: str) -> list[dict]:
    return [{**row, "prompt": f"{row['prompt']} {tag}{i}"} for i, row in enumerate(preference_rows(n))]


def _trl_args(datasets: list[dict], **kwargs):
    from trl import DatasetMixtureConfig

    return DatasetMixtureConfig(datasets=[dict(d) for d in datasets], **kwargs)


def _script_args(**kwargs):
    from trl import ScriptArguments

    args = ScriptArguments(**{k: v for k, v in kwargs.items() if k != "dataset_mixture"})
    args.dataset_mixture = kwargs.get("dataset_mixture")
    return args


def test_a_datasets_mixture_is_what_trl_get_dataset_gives(tmp_path):
    """Local files TRL itself reads (``path: json`` + ``data_files``), with fractions and column selection: the same
    rows in the same order as ``trl.get_dataset`` returns."""
    from trl import get_dataset

    a = write_jsonl(tmp_path / "a.jsonl", _rows(12, "a"))
    b = write_jsonl(tmp_path / "b.jsonl", _rows(6, "b"))
    entries = [{"path": "json", "data_files": a, "fraction": 0.75, "columns": ["prompt", "chosen", "rejected"]},
               {"path": "json", "data_files": b, "fraction": 0.25, "columns": ["prompt", "chosen", "rejected"]}]
    ours = load_datasets(_script_args(), _trl_args(entries))
    theirs = get_dataset(_trl_args(entries))
    assert list(ours) == list(theirs) == ["train"]
    assert ours["train"].to_list() == theirs["train"].to_list()
    assert len(ours["train"]) == 16  # 12 rows of a are 3/4 of the mixture: 16 rows, 4 of b (TRL's no-oversampling)
    assert ours.source_name == "mixture of json, json"


def test_embedded_names_and_bare_local_files_in_a_datasets_mixture(tmp_path):
    """``path: embedded:NAME`` (options in ``name``) and ``path: some.jsonl`` load as TRL would load the same rows
    written out for ``path: json`` + ``data_files``."""
    from trl import get_dataset

    from trl_plugins.embedded import load_embedded_dataset

    options = "conversational=false,n_train=20,n_test=5,max_words=20"
    embedded = load_embedded_dataset("imdb-preference", options)["train"]
    as_file = write_jsonl(tmp_path / "embedded.jsonl", embedded.to_list())
    local = write_jsonl(tmp_path / "local.jsonl", _rows(10, "l"))
    folder = write_jsonl(tmp_path / "folder" / "train.jsonl", _rows(4, "f"))
    ours = load_datasets(_script_args(), _trl_args(
        [{"path": "embedded:imdb-preference", "name": options, "columns": ["prompt", "chosen", "rejected"]},
         {"path": local, "split": "train[:6]"}, {"path": str(tmp_path / "folder")}], test_split_size=None))
    theirs = get_dataset(_trl_args([{"path": "json", "data_files": as_file, "columns": ["prompt", "chosen", "rejected"]},
                                    {"path": "json", "data_files": local, "split": "train[:6]"},
                                    {"path": "json", "data_files": folder}]))
    assert ours["train"].to_list() == theirs["train"].to_list() and len(ours["train"]) == 30
    import datasets

    assert datasets.load_dataset.__name__ == "load_dataset"  # restored


def test_a_handbook_mixture_follows_the_handbook(tmp_path):
    """weight: the share of each dataset kept after a shuffle with the seed (1.0 by default); the parts concatenated
    and shuffled with the seed; test_split_size rows split off with the seed."""
    import datasets

    a = write_jsonl(tmp_path / "a.jsonl", _rows(10, "a"))
    b = write_jsonl(tmp_path / "b.jsonl", _rows(20, "b"))
    mixture = {"datasets": [{"id": a, "weight": 0.5, "columns": ["prompt", "chosen"]},
                            {"id": b, "columns": ["prompt", "chosen"]}], "seed": 3, "test_split_size": 5}
    dsd = load_datasets(_script_args(dataset_mixture=mixture))
    assert len(dsd["train"]) == 20 and len(dsd["test"]) == 5 and dsd["train"].column_names == ["prompt", "chosen"]
    kept = {r["prompt"] for r in dsd["train"]} | {r["prompt"] for r in dsd["test"]}
    a_kept = datasets.load_dataset("json", data_files=a, split="train").shuffle(seed=3).select(range(5))
    assert kept == set(a_kept["prompt"]) | {r["prompt"] for r in _rows(20, "b")}
    again = load_datasets(_script_args(dataset_mixture=mixture))
    assert again["train"]["prompt"] == dsd["train"]["prompt"]  # seeded
    other = load_datasets(_script_args(dataset_mixture={**mixture, "seed": 4}))
    assert other["train"]["prompt"] != dsd["train"]["prompt"]


def test_handbook_mixture_problems_are_listed():
    problems = handbook_mixture_problems({"datasets": [{"id": "a", "wieght": 1.0, "columns": ["x"]},
                                                       {"config": "c", "weight": -1, "columns": ["y"]}], "sed": 1})
    assert problems == [
        "dataset_mixture: unknown key 'sed' (keys: datasets, seed, test_split_size)",
        "dataset_mixture.datasets[0]: unknown key 'wieght' (keys: id, config, split, columns, weight)",
        "dataset_mixture.datasets[1]: 'id' (the dataset) is required",
        "dataset_mixture.datasets[1]: 'weight' must be a number >= 0 (the share of that dataset kept), got -1",
        "dataset_mixture: every dataset must keep the same columns, got ['x'], ['y']",
    ]
    assert handbook_mixture_problems({"datasets": "a"})[0].startswith("dataset_mixture must be a mapping")


def _recipe(tmp_path, model_dir, keys: dict) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({**CPU_RUN, "model_name_or_path": model_dir, "output_dir": str(tmp_path / "out"),
                                    "max_length": 64, **keys}))
    return str(path)


def test_check_data_reads_both_mixtures_from_a_recipe(tmp_path, tiny_model_dir, run_cli, no_model_loading):
    a = write_jsonl(tmp_path / "a.jsonl", _rows(8, "a"))
    b = write_jsonl(tmp_path / "b.jsonl", _rows(8, "b"))
    trl_form = _recipe(tmp_path, tiny_model_dir, {"datasets": [{"path": a}, {"path": "json", "data_files": b}]})
    code, out, err = run_cli("check-data", "orpo", "--config", trl_form)
    assert code == 0, err
    assert f"mixture of {a}, json — train: 16 rows" in out
    handbook = _recipe(tmp_path, tiny_model_dir, {"dataset_mixture": {"datasets": [{"id": a, "weight": 0.5},
                                                                                   {"id": b}]}})
    code, out, err = run_cli("check-data", "orpo", "--config", handbook)
    assert code == 0, err
    assert f"mixture of {a}, {b} — train: 12 rows" in out


@pytest.mark.parametrize(("keys", "expected"), [
    ({"datasets": [{"path": "missing.jsonl"}]}, "cannot read the `datasets:` mixture"),
    ({"datasets": [{"path": "embedded:rt-preference", "split": "validation"}]},
     "dataset 'embedded:rt-preference': no split 'validation' (splits: train, test)"),
    ({"datasets": [{"path": "embedded:rt-preference", "fraction": 0.5}, {"path": "embedded:rt-preference"}]},
     "`fraction` must be set for either all datasets in the mixture or none of them"),
    ({"dataset_mixture": {"datasets": [{"id": "embedded:rt-preference", "wieght": 1}]}},
     "dataset_mixture.datasets[0]: unknown key 'wieght'"),
    ({"dataset_mixture": {"datasets": [{"id": "embedded:rt-preference"}]},
      "datasets": [{"path": "embedded:rt-preference"}]}, "keep one"),
])
def test_a_bad_mixture_is_one_line_before_any_model(tmp_path, tiny_model_dir, run_cli, no_model_loading, keys,
                                                    expected):
    code, _, err = run_cli("check-data", "orpo", "--config", _recipe(tmp_path, tiny_model_dir, keys))
    lines = [line for line in err.splitlines() if line.startswith("error")]
    assert code == 2 and len(lines) == 1 and expected in lines[0], err


def test_a_mixture_entry_error_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no split 'dev'"):
        load_datasets(_script_args(), _trl_args([{"path": "embedded:rt-preference", "split": "dev"}]))
