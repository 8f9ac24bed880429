"""``embedded:arithmetic``: generated word problems with an ``answer`` column, for exact-match rewards (ReST-EM), and
a reference ``completion`` (the answer as the instruction asks for it: just the number), for SPIN.

Each problem applies ``steps`` (1 or 2) additions or subtractions to operands in ``min_operand..max_operand``, left
to right, never going below zero ("Tom has 23 apples, gets 41 more and then gives away 17. ..."); the wording comes
from a few templates, names and things.

Held out by facts, not by wording. A *fact* is the unordered pair of numbers that one step combines, whatever the
operation: "23 + 41 - 17" has the facts {23, 41} and {64, 17}. The ``test`` split is drawn first (distinct problems);
no training problem contains any fact of any test problem, so a test answer cannot be recalled from training
(neither "41 + 23" nor "41 - 23" nor "23 + 41 + 5" is in train when "23 + 41" is tested). Training questions are
distinct strings; the same sum may recur there under another wording, which is no leak.

Options (``dataset_config: "steps=2,max_operand=99"``): ``n_test`` (100), ``n_train`` (1000), ``steps`` (1),
``min_operand`` (0), ``max_operand`` (20), ``operations`` (``+``, ``-`` or ``+-``; default ``+-``), ``seed``,
``conversational`` (chat messages), ``instruction`` (appended to the question). The defaults are sized for
SmolLM2-135M-Instruct (greedy base accuracy well above zero, well below the ceiling); two steps or operands up to 99
suit larger models. Measured base accuracies: ``docs/methods/rest.md``.
"""

from __future__ import annotations

import random

from ..errors import ConfigError

NAMES = ["Tom", "Anna", "Sam", "Lily", "Ben", "Mia", "Leo", "Zoe", "Max", "Eva"]
THINGS = ["apples", "books", "marbles", "pencils", "cookies", "stickers", "shells", "coins", "cards", "balloons"]
# templates by the operations of their steps
TEMPLATES = {
    "+": [
        "{name} has {a} {thing} and gets {b} more. How many {thing} does {name} have now?",
        "{name} had {a} {thing}. A friend gave {name} {b} more {thing}. How many {thing} does {name} have?",
        "There are {a} {thing} in a box and {b} {thing} on the table. How many {thing} are there in total?",
        "What is {a} plus {b}?",
    ],
    "-": [
        "{name} has {a} {thing} and gives away {b}. How many {thing} are left?",
        "What is {a} minus {b}?",
    ],
    "++": [
        "{name} has {a} {thing}, gets {b} more and then {c} more. How many {thing} does {name} have now?",
        "There are {a} {thing} in a box. {name} puts in {b} more, then {c} more. How many {thing} are in the box now?",
        "What is {a} plus {b} plus {c}?",
    ],
    "+-": [
        "{name} has {a} {thing}, gets {b} more and then gives away {c}. How many {thing} does {name} have now?",
        "There are {a} {thing} in a box. {name} puts in {b} more and takes out {c}. "
        "How many {thing} are in the box now?",
        "What is {a} plus {b} minus {c}?",
    ],
    "-+": [
        "{name} has {a} {thing}, gives away {b} and then gets {c} more. How many {thing} does {name} have now?",
        "There are {a} {thing} in a box. {name} takes out {b} and puts in {c}. How many {thing} are in the box now?",
        "What is {a} minus {b} plus {c}?",
    ],
    "--": [
        "{name} has {a} {thing}, gives away {b} and then {c} more. How many {thing} are left?",
        "There are {a} {thing} in a box. {name} takes out {b}, then {c} more. How many {thing} are in the box now?",
        "What is {a} minus {b} minus {c}?",
    ],
}


def solve(operands, ops) -> tuple[int, list[tuple[int, int]]]:
    """``(answer, facts)`` of ``operands[0] ops[0] operands[1] ...`` worked left to right; a fact is the sorted
    pair of numbers one step combines. Raises ValueError if a step goes below zero."""
    result, facts = operands[0], []
    for op, x in zip(ops, operands[1:]):
        facts.append((min(result, x), max(result, x)))
        result = result + x if op == "+" else result - x
        if result < 0:
            raise ValueError("negative intermediate result")
    return result, facts


def _draw(rng, steps: int, operations: str, low: int, high: int):
    """One random problem: ``(ops, operands, answer, facts)``, every intermediate result >= 0."""
    while True:
        ops = "".join(rng.choice(operations) for _ in range(steps))
        operands = [rng.randint(low, high) for _ in range(steps + 1)]
        if ops[0] == "-" and operands[1] > operands[0]:
            operands[0], operands[1] = operands[1], operands[0]
        try:
            answer, facts = solve(operands, ops)
        except ValueError:
            continue
        return ops, operands, answer, facts


def arithmetic(
    n_test: int = 100,
    n_train: int = 1000,
    max_operand: int = 20,
    operations: str = "+-",
    steps: int = 1,
    min_operand: int = 0,
    seed: int = 0,
    conversational: bool = True,
    instruction: str = "Answer with just the number.",
):
    """Word problems held out by facts (module docstring); ``answer`` is a string, ``completion`` the reference answer
    (an assistant message, or the number after a space for plain-text prompts)."""
    from datasets import Dataset, DatasetDict

    if not operations or set(operations) - {"+", "-"}:
        raise ConfigError(f"dataset_config: arithmetic operations must be '+', '-' or '+-', got {operations!r}")
    if steps not in (1, 2):
        raise ConfigError(f"dataset_config: arithmetic steps must be 1 or 2, got {steps!r}")
    if not 0 <= min_operand <= max_operand:
        raise ConfigError(f"dataset_config: arithmetic needs 0 <= min_operand <= max_operand, got "
                          f"{min_operand}..{max_operand}")
    if n_test < 1 or n_train < 1:
        raise ConfigError(f"dataset_config: arithmetic n_test and n_train must be >= 1, got {n_test}, {n_train}")
    rng = random.Random(seed)
    operations = "".join(sorted(set(operations)))

    def row(ops, operands, answer):
        template = rng.choice(TEMPLATES[ops])
        question = template.format(name=rng.choice(NAMES), thing=rng.choice(THINGS),
                                   **dict(zip("abc", operands)))
        text = f"{question} {instruction}"
        if conversational:
            return {"prompt": [{"role": "user", "content": text}], "answer": str(answer),
                    "completion": [{"role": "assistant", "content": str(answer)}]}
        return {"prompt": text, "answer": str(answer), "completion": f" {answer}"}

    def fill(n, accept, what):
        rows, tries = [], 0
        while len(rows) < n:
            tries += 1
            if tries > 200 * n + 10_000:
                raise ConfigError(
                    f"dataset_config: arithmetic found only {len(rows)} of {n} distinct {what} problems with "
                    f"steps={steps}, operands {min_operand}..{max_operand}, operations {operations!r}: raise "
                    f"max_operand or steps, or lower n_test / n_train")
            problem = _draw(rng, steps, operations, min_operand, max_operand)
            made = accept(*problem)
            if made is not None:
                rows.append(made)
        return rows

    test_keys, test_facts = set(), set()

    def accept_test(ops, operands, answer, facts):
        key = (ops, tuple(facts))  # "23 + 41" and "41 + 23" are one problem
        if key in test_keys:
            return None
        test_keys.add(key)
        test_facts.update(facts)
        return row(ops, operands, answer)

    test = fill(n_test, accept_test, "test")
    questions = set()

    def accept_train(ops, operands, answer, facts):
        if test_facts.intersection(facts):
            return None
        made = row(ops, operands, answer)
        question = str(made["prompt"])
        if question in questions:
            return None
        questions.add(question)
        return made

    train = fill(n_train, accept_train, "training")
    return DatasetDict(train=Dataset.from_list(train), test=Dataset.from_list(test))
