"""Dataset loading (embedded, local files of every kind, saved datasets) and the format checks."""

from __future__ import annotations

import pytest
from datasets import Dataset, DatasetDict

from trl_plugins.checks.data import check_datasets
from trl_plugins.checks.sources import load_source
from trl_plugins.embedded import load_embedded_dataset, parse_options
from trl_plugins.errors import ConfigError, DataError, UsageError
from trl_plugins.registry import get_registry

from helpers import write_jsonl
from tiny import preference_rows


def test_rt_preference_is_held_out_and_disjoint():
    dsd = load_embedded_dataset("rt-preference", "n_test=50,n_train=100")
    assert set(dsd) == {"train", "test"} and len(dsd["test"]) == 50 and len(dsd["train"]) == 100
    row = dsd["train"][0]
    assert row["prompt"][0]["role"] == "user" and row["chosen"][0]["role"] == "assistant"  # conversational
    train_texts = {r["chosen"][0]["content"] for r in dsd["train"]}
    assert not train_texts & {r["chosen"][0]["content"] for r in dsd["test"]}
    again = load_embedded_dataset("rt-preference", "n_test=50,n_train=100")
    assert again["test"][0] == dsd["test"][0]  # seeded


def test_imdb_preference_standard_format():
    dsd = load_embedded_dataset("imdb-preference", "conversational=false,n_test=10,n_train=20,max_words=40")
    row = dsd["train"][0]
    assert all(isinstance(row[c], str) and row[c] for c in ("prompt", "chosen", "rejected"))
    assert len(row["chosen"].split()) <= 41


def test_imdb_rm_pairs_continuations_match_the_openings_prompts():
    """style=continuations: the prompt is imdb-openings' instruction + the opening of one review of the pair (the
    chosen one about half the time), chosen/rejected are the two reviews' next words, scores are VADER's of them."""
    from trl_plugins.builtin_rewards import vader_sentiment
    from trl_plugins.embedded.prompts import OPENINGS_INSTRUCTION
    from trl_plugins.embedded.reviews import clean_review, load_reviews

    dsd = load_embedded_dataset("imdb-rm-pairs", "style=continuations,n_test=20,n_train=200,max_words=24")
    full = {" ".join(clean_review(text).split()) for text, _, source in load_reviews() if source == "imdb"}
    chosen_opening = 0
    for row in dsd["train"]:
        (prompt,), (chosen,), (rejected,) = row["prompt"], row["chosen"], row["rejected"]
        assert prompt["role"] == "user" and chosen["role"] == rejected["role"] == "assistant"
        assert prompt["content"].startswith(OPENINGS_INSTRUCTION + ' "')
        opening = prompt["content"][len(OPENINGS_INSTRUCTION) + 2:]
        assert len(opening.split()) == 8
        chosen_opening += any(t.startswith(f"{opening} {chosen['content']}") for t in full)
        assert row["chosen_score"] == pytest.approx(vader_sentiment(None, [chosen["content"]])[0])
    assert 70 <= chosen_opening <= 130  # the opening is the chosen review's about half the time: no cue
    with pytest.raises(ValueError, match="style must be reviews or continuations"):
        load_embedded_dataset("imdb-rm-pairs", "style=stories")


def test_imdb_rm_pairs_chosen_by_vader():
    """chosen_by=vader: the chosen text is always the one VADER scores higher (ties left out, sizes kept), the texts
    are those of the label-ordered pairs, and no test text is in train."""
    options = "style=continuations,n_test=30,n_train=120,max_words=24"
    by_label = load_embedded_dataset("imdb-rm-pairs", options)
    by_vader = load_embedded_dataset("imdb-rm-pairs", options + ",chosen_by=vader")
    assert len(by_vader["train"]) == 120 and len(by_vader["test"]) == 30
    for split in ("train", "test"):
        assert all(row["vader_gap"] > 0 and row["chosen_score"] > row["rejected_score"] for row in by_vader[split])
    assert any(row["vader_gap"] < 0 for row in by_label["train"])  # IMDB's label and VADER disagree on some pairs
    texts = {frozenset((r["chosen"][0]["content"], r["rejected"][0]["content"])) for r in by_label["train"]}
    kept = [frozenset((r["chosen"][0]["content"], r["rejected"][0]["content"])) for r in by_vader["train"]]
    assert sum(pair in texts for pair in kept) >= 100  # the same pairs, reordered (a few more read past the ties)
    test_texts = {r[c][0]["content"] for r in by_vader["test"] for c in ("chosen", "rejected")}
    assert not test_texts & {r[c][0]["content"] for r in by_vader["train"] for c in ("chosen", "rejected")}
    with pytest.raises(ValueError, match="chosen_by must be label or vader"):
        load_embedded_dataset("imdb-rm-pairs", "chosen_by=stars")


def test_embedded_dataset_errors():
    with pytest.raises(UsageError, match="rt-preference"):
        load_embedded_dataset("rt-preferences")
    with pytest.raises(ConfigError, match="no option 'n_tset'"):
        load_embedded_dataset("rt-preference", "n_tset=3")
    with pytest.raises(ConfigError, match="key=value"):
        parse_options("conversational")
    assert parse_options("a=1,b=false,c=text") == {"a": 1, "b": False, "c": "text"}


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_local_files_of_every_kind(tmp_path, suffix):
    data = Dataset.from_list(preference_rows(6))
    path = tmp_path / f"pairs{suffix}"
    {".jsonl": data.to_json, ".json": data.to_json, ".csv": data.to_csv, ".parquet": data.to_parquet}[suffix](str(path))
    dsd = load_source(str(path))
    assert len(dsd["train"]) == 6 and set(dsd["train"].column_names) == {"prompt", "chosen", "rejected"}


def test_saved_dataset_folder(tmp_path):
    DatasetDict(train=Dataset.from_list(preference_rows(4)), test=Dataset.from_list(preference_rows(2))).save_to_disk(
        str(tmp_path / "saved")
    )
    dsd = load_source(str(tmp_path / "saved"))
    assert len(dsd["train"]) == 4 and len(dsd["test"]) == 2


def test_unsupported_suffix_and_missing_file(tmp_path):
    (tmp_path / "pairs.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported type '.txt'"):
        load_source(str(tmp_path / "pairs.txt"))
    with pytest.raises(DataError, match="does not exist"):
        load_source(str(tmp_path / "gone.jsonl"))


class _Args:
    dataset_name = "test-data"
    dataset_train_split = "train"
    dataset_test_split = "test"


class _Config:
    eval_strategy = "no"


def _check(rows, config=_Config()):
    dsd = DatasetDict(train=Dataset.from_list(rows)) if isinstance(rows, list) else rows
    return check_datasets(get_registry().trainer("orpo"), dsd, _Args(), config)


def test_problems_are_grouped_by_column_and_kind():
    rows = preference_rows(30)
    for i in range(0, 30, 3):
        rows[i]["chosen"] = ""
    with pytest.raises(DataError) as info:
        _check(rows)
    lines = info.value.lines()
    assert len(lines) == 1 and "rows 0, 3" in lines[0] and "5 more" in lines[0]  # one line, not ten


def test_eval_split_is_required_when_evaluating():
    class Evaluating:
        eval_strategy = "steps"

    with pytest.raises(DataError, match="no such split 'test'|no such split for evaluation"):
        _check(preference_rows(4), Evaluating())


def test_summary_of_good_data(tmp_path):
    summary = _check(preference_rows(12, conversational=True))
    line = summary.line()
    assert line.startswith("ok:") and "12" in line and "conversational" in line


def test_max_train_samples(run_cli, tiny_recipe, tmp_path, no_model_loading):
    path = write_jsonl(tmp_path / "many.jsonl", preference_rows(40))
    code, out, _ = run_cli("check-data", "orpo", "--config", tiny_recipe({"dataset_name": path}),
                           "--max_train_samples", "7")
    assert code == 0 and "train: 7 rows;" in out and "orpo: 7 standard pairs;" in out  # of the file's 40
