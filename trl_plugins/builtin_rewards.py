"""Built-in reward functions, registered by name through ``trl_plugins.builtin`` (``register_reward_functions``).

All follow TRL's reward-function signature ``f(prompts, completions, **columns) -> list[float | None]``, so they
work with TRL's own trainers too. Completions may be strings or lists of chat messages.
"""

from __future__ import annotations

import functools

from .formats import completion_text


@functools.lru_cache(maxsize=1)
def vader_analyzer():
    """VADER's analyzer, made once (vaderSentiment, a demo extra)."""
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError as exc:
        raise ImportError("the vader_sentiment reward needs vaderSentiment: pip install vaderSentiment") from exc
    return SentimentIntensityAnalyzer()


def vader_sentiment(prompts, completions, **columns) -> list[float]:
    """VADER compound sentiment of each completion, in [-1, 1] (rule-based, fast, no model)."""
    analyzer = vader_analyzer()
    return [float(analyzer.polarity_scores(completion_text(c))["compound"]) for c in completions]


# --------------------------------------------------------------------------------------------------------------------
# exact match (verifiable tasks: arithmetic, GSM8K-style answers); used by rest-em
# --------------------------------------------------------------------------------------------------------------------
_NUMBER = None


def _normalize(text: str) -> str:
    text = text.strip().strip(".").strip()
    text = text.replace("$", "").replace(",", "") if any(ch.isdigit() for ch in text) else text
    return " ".join(text.lower().split())


def extract_answer(completion: str, numeric: bool) -> str | None:
    """The final answer in a completion: after the last ``####``, else inside the last ``\\boxed{}``, else (for a
    numeric reference) the last number — none when the text stops on an operator (cut off mid-expression) — else the
    whole text."""
    import re

    global _NUMBER
    if _NUMBER is None:
        _NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
    if "####" in completion:
        tail = completion.rsplit("####", 1)[1].strip()
        return tail.splitlines()[0] if tail else ""
    boxed = re.findall(r"\\boxed\{([^{}]*)\}", completion)
    if boxed:
        return boxed[-1]
    if numeric:
        if completion.rstrip().endswith(("+", "-", "*", "/", "=", "×", "÷")):
            return None  # cut off inside an expression: its last number is an operand, not the answer
        numbers = _NUMBER.findall(completion)
        return numbers[-1] if numbers else None
    return completion


def _numbers_equal(a: str, b: str) -> bool:
    try:
        return abs(float(a) - float(b)) < 1e-9
    except ValueError:
        return a == b


def exact_match(prompts, completions, answer=None, **columns) -> list[float | None]:
    """1.0 if the completion's final answer equals the ``answer`` column, else 0.0 (``None`` where there is no
    reference answer). The final answer is the text after the last ``####``, or in the last ``\\boxed{}``, or — for a
    numeric reference — the last number in the completion; comparison ignores case, spaces, ``$``, thousands
    separators and a trailing period."""
    if answer is None:
        raise ValueError("exact_match needs an 'answer' column in the dataset")
    scores: list[float | None] = []
    for completion, reference in zip(completions, answer):
        if reference is None:
            scores.append(None)
            continue
        ref = _normalize(str(reference))
        numeric = bool(ref) and ref.lstrip("-").replace(".", "", 1).isdigit()
        found = extract_answer(completion_text(completion), numeric)
        if found is None:
            scores.append(0.0)
            continue
        got = _normalize(found)
        scores.append(1.0 if (_numbers_equal(got, ref) if numeric else got == ref) else 0.0)
    return scores
