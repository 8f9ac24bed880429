"""IMDB reward-model pairs with a visible margin source: ``embedded:imdb-rm-pairs``.

chosen = a positive IMDB review, rejected = a negative one (random pairs, seeded), under one shared prompt, with a
held-out ``test`` split. The *preference* is IMDB's own star-based sentiment label; the *strength* of the preference
is a stand-in for Llama 2's annotator ratings, derived from VADER (rule-based sentiment, compound score in [-1, 1]):

    d = vader(chosen) - vader(rejected)                     (in [-2, 2])
    d >= 1.5          -> "significantly better"
    1.0 <= d < 1.5    -> "better"
    0.5 <= d < 1.0    -> "slightly better"
    d < 0.5           -> "negligibly better or unsure"     (includes pairs VADER gets backwards, d < 0)

Columns: ``prompt``, ``chosen``, ``rejected``, ``rating`` (the label above), ``chosen_score`` / ``rejected_score``
(the VADER compound scores, for ``margin_source: scores``) and ``vader_gap`` (d, for inspection). There is no
``margin`` column: the recipe chooses how margins come from ``rating`` or the scores.

Options (``dataset_config: "n_test=200,max_words=64"``): ``n_test``, ``n_train``, ``seed``, ``max_words`` (reviews are
cut to their opening sentences, about ``max_words`` words, so CPU training stays fast), ``conversational``, ``prompt``,
``chosen_by``, ``style``:

- ``chosen_by=label`` (default): chosen is the review IMDB labels positive, as above.
- ``chosen_by=vader``: chosen is the text of the pair VADER scores higher (pairs VADER ties are left out, so ``d > 0``
  always): a proxy reward model trained to imitate a "gold" judge, as in Gao et al. 2023 (reward-model
  overoptimization), with that judge then usable as the held-out check of what the proxy's optimization did.

- ``style=reviews`` (default): the shared prompt is ``prompt``; chosen/rejected are whole review openings.
- ``style=continuations``: the reward model for the sampling demos on ``embedded:imdb-openings``. The prompt is that
  dataset's: ``Continue this movie review in one or two sentences: "<first n_words words>`` of one review of the
  pair (the positive one for half the pairs, the negative one for the other half, so that continuing the quoted
  review is no cue), chosen/rejected are the two reviews' next words (about ``max_words``); VADER scores and ratings
  are those of the continuations. A reward model trained on it scores policy samples in the form it was trained on.
"""

from __future__ import annotations

import random

from .reviews import chat_message, clean_review, labelled_reviews, reviews, text_key, unique

# (lower bound on d, label), checked in order
VADER_RATING_THRESHOLDS = (
    (1.5, "significantly better"),
    (1.0, "better"),
    (0.5, "slightly better"),
)
UNSURE_LABEL = "negligibly better or unsure"


def rating_from_gap(gap: float) -> str:
    """The Llama 2 rating label for a VADER score difference ``d`` (thresholds in the module docstring)."""
    for bound, label in VADER_RATING_THRESHOLDS:
        if gap >= bound:
            return label
    return UNSURE_LABEL


def imdb_rm_pairs(
    n_test: int = 200,
    n_train: int | None = None,
    seed: int = 0,
    max_words: int | None = 64,
    conversational: bool = True,
    prompt: str = "Write a short movie review.",
    style: str = "reviews",
    n_words: int = 8,
    chosen_by: str = "label",
):
    """IMDB (positive, negative) review pairs with VADER-derived rating labels and scores; up to 12,500 pairs."""
    from datasets import Dataset, DatasetDict

    from ..builtin_rewards import vader_analyzer

    if style not in ("reviews", "continuations"):
        raise ValueError(f"imdb-rm-pairs: style must be reviews or continuations, got {style!r}")
    if chosen_by not in ("label", "vader"):
        raise ValueError(f"imdb-rm-pairs: chosen_by must be label or vader, got {chosen_by!r}")
    rng = random.Random(seed)
    if style == "continuations":
        from .prompts import OPENINGS_INSTRUCTION

        # (label, opening, continuation of about max_words words), each (opening, continuation) once across labels
        cut = []
        for text, label in labelled_reviews("imdb"):
            words = text.split()
            if len(words) >= n_words + 4:
                cut.append((label, " ".join(words[:n_words]), clean_review(" ".join(words[n_words:]), max_words)))
        cut = unique(cut, key=lambda row: text_key(f"{row[1]} {row[2]}"))
        positives = [(opening, rest) for label, opening, rest in cut if label == 1]
        negatives = [(opening, rest) for label, opening, rest in cut if label == 0]
    else:
        positives = [(None, text) for text in reviews("imdb", 1, max_words)]
        negatives = [(None, text) for text in reviews("imdb", 0, max_words)]
    rng.shuffle(positives)
    rng.shuffle(negatives)
    pairs = list(zip(positives, negatives))
    analyzer = vader_analyzer()

    def rows(selected, limit):
        """Up to ``limit`` rows from ``selected`` and how many pairs were read for them."""
        out, read = [], 0
        for (chosen_opening, chosen), (rejected_opening, rejected) in selected:
            if limit is not None and len(out) >= limit:
                break
            read += 1
            sc = float(analyzer.polarity_scores(chosen)["compound"])
            sr = float(analyzer.polarity_scores(rejected)["compound"])
            if chosen_by == "vader":
                if sc == sr:
                    continue
                if sc < sr:
                    chosen_opening, chosen, sc, rejected_opening, rejected, sr = (
                        rejected_opening, rejected, sr, chosen_opening, chosen, sc)
            text = prompt
            if style == "continuations":
                text = f'{OPENINGS_INSTRUCTION} "{chosen_opening if rng.random() < 0.5 else rejected_opening}'
            if conversational:
                row = {
                    "prompt": chat_message("user", text),
                    "chosen": chat_message("assistant", chosen),
                    "rejected": chat_message("assistant", rejected),
                }
            else:
                row = {"prompt": text + ("\n" if style == "reviews" else " "), "chosen": chosen, "rejected": rejected}
            row.update(rating=rating_from_gap(sc - sr), chosen_score=sc, rejected_score=sr, vader_gap=sc - sr)
            out.append(row)
        return out, read

    # test = the first n_test pairs kept, train = pairs after every pair test read; train's rows are drawn first (the
    # prompt's opening draws from rng: the order keeps the datasets of earlier versions)
    state = rng.getstate()
    _, read = rows(pairs, n_test)
    rng.setstate(state)
    train_rows, _ = rows(pairs[read:], n_train)
    test_rows, _ = rows(pairs[:read], None)
    return DatasetDict(train=Dataset.from_list(train_rows), test=Dataset.from_list(test_rows))
