"""Prompt-only datasets for the sampling trainers (rejection sampling, RAFT, ReST, ReST-EM).

- ``imdb-openings``: an instruction plus the first words of an IMDB review (positive and negative alike); the
  model continues the review. Reward: VADER sentiment. Held-out ``test`` split.

The arithmetic word problems for exact-match rewards (ReST-EM) are in :mod:`.arithmetic`.
"""

from __future__ import annotations

import random

from .reviews import labelled_reviews, text_key, unique

OPENINGS_INSTRUCTION = "Continue this movie review in one or two sentences:"


def _prompt(text: str, conversational: bool):
    return [{"role": "user", "content": text}] if conversational else text


def imdb_openings(
    n_test: int = 100,
    n_train: int | None = 2000,
    n_words: int = 8,
    seed: int = 0,
    conversational: bool = True,
    instruction: str = OPENINGS_INSTRUCTION,
):
    """Prompts = ``instruction`` + the first ``n_words`` words of IMDB reviews (quoted), shuffled with ``seed``. Each
    opening occurs once (many reviews start alike), so no held-out opening is also a training prompt."""
    from datasets import Dataset, DatasetDict

    openings = []
    for text, label in labelled_reviews("imdb"):
        words = text.split()
        if len(words) >= n_words + 4:
            openings.append((" ".join(words[:n_words]), label))
    openings = unique(openings, key=lambda row: text_key(row[0]))
    random.Random(seed).shuffle(openings)
    rows = [
        {"prompt": _prompt(f'{instruction} "{opening}', conversational) if conversational else f"{opening}",
         "opening": opening, "label": label}
        for opening, label in openings
    ]
    test, train = rows[:n_test], rows[n_test:]
    if n_train is not None:
        train = train[:n_train]
    return DatasetDict(train=Dataset.from_list(train), test=Dataset.from_list(test))
