"""Prompt-only datasets for the sampling trainers (rejection sampling, RAFT, ReST, ReST-EM).

- ``imdb-openings``: an instruction plus the first words of an IMDB review (positive and negative alike); the
  model continues the review. Reward: VADER sentiment. Held-out ``test`` split.
- ``arithmetic``: generated word problems with small numbers and an ``answer`` column (exact-match reward);
  single-digit addition by default, so a 135M model gets some right. Held-out ``test`` split.
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


_NAMES = ["Tom", "Anna", "Sam", "Lily", "Ben", "Mia", "Leo", "Zoe", "Max", "Eva"]
_THINGS = ["apples", "books", "marbles", "pencils", "cookies", "stickers", "shells", "coins", "cards", "balloons"]
_ADD = [
    "{name} has {a} {thing} and gets {b} more. How many {thing} does {name} have now?",
    "{name} had {a} {thing}. A friend gave {name} {b} more {thing}. How many {thing} does {name} have?",
    "There are {a} {thing} in a box and {b} {thing} on the table. How many {thing} are there in total?",
    "What is {a} plus {b}?",
]
_SUB = [
    "{name} has {a} {thing} and gives away {b}. How many {thing} are left?",
    "What is {a} minus {b}?",
]


def arithmetic(
    n_test: int = 100,
    n_train: int = 1000,
    max_operand: int = 9,
    operations: str = "+",
    seed: int = 0,
    conversational: bool = True,
    instruction: str = "Answer with just the number.",
):
    """Word problems over operands 0..``max_operand`` (``operations``: ``+``, ``-`` or ``+-``); ``answer`` is a string.

    Test and train problems are drawn from one seeded stream; the held-out split shares no (template, a, b) triple
    with the training split."""
    from datasets import Dataset, DatasetDict

    rng = random.Random(seed)
    templates = [("+", t) for t in _ADD if "+" in operations] + [("-", t) for t in _SUB if "-" in operations]
    if not templates:
        raise ValueError("operations must contain '+' and/or '-'")
    seen, rows = set(), []
    limit = (n_test + n_train) * 20
    while len(rows) < n_test + n_train and limit:
        limit -= 1
        op, template = rng.choice(templates)
        a, b = rng.randint(0, max_operand), rng.randint(0, max_operand)
        if op == "-" and b > a:
            a, b = b, a
        name, thing = rng.choice(_NAMES), rng.choice(_THINGS)
        question = template.format(name=name, a=a, b=b, thing=thing)
        key = (question,)
        if key in seen and len(seen) < (max_operand + 1) ** 2 * len(templates):
            continue
        seen.add(key)
        answer = a + b if op == "+" else a - b
        rows.append({"prompt": _prompt(f"{question} {instruction}", conversational), "answer": str(answer)})
    test, train = rows[:n_test], rows[n_test : n_test + n_train]
    test_questions = {str(r["prompt"]) for r in test}
    train = [r for r in train if str(r["prompt"]) not in test_questions]
    return DatasetDict(train=Dataset.from_list(train), test=Dataset.from_list(test))
