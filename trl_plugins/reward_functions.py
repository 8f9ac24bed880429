"""Built-in reward functions, registered by name through ``trl_plugins.builtin`` (``register_reward_functions``).

All follow TRL's reward-function signature ``f(prompts, completions, **columns) -> list[float | None]``, so they
work with TRL's own trainers too. Completions may be strings or lists of chat messages.
"""

from __future__ import annotations

import functools


def completion_text(completion) -> str:
    """The text of a completion: a string, or the concatenated contents of a list of chat messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        parts = []
        for message in completion:
            content = message.get("content", "") if isinstance(message, dict) else message
            if isinstance(content, list):  # multimodal parts: keep the text ones
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            parts.append(str(content))
        return "\n".join(parts)
    return str(completion)


@functools.lru_cache(maxsize=1)
def _vader():
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError as exc:
        raise ImportError("the vader_sentiment reward needs vaderSentiment: pip install vaderSentiment") from exc
    return SentimentIntensityAnalyzer()


def vader_sentiment(prompts, completions, **columns) -> list[float]:
    """VADER compound sentiment of each completion, in [-1, 1] (rule-based, fast, no model)."""
    analyzer = _vader()
    return [float(analyzer.polarity_scores(completion_text(c))["compound"]) for c in completions]
