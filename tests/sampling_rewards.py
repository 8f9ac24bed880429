"""Reward callables with TRL's signature for the sampling-trainer tests (imported as ``sampling_rewards:NAME``)."""


def _text(completion):
    return completion if isinstance(completion, str) else " ".join(m["content"] for m in completion)


def good_words(prompts, completions, **columns):
    """Fraction of words that are 'good', 'great' or 'best' (plus a tiny length term so ties are rare)."""
    out = []
    for c in completions:
        words = _text(c).split()
        hits = sum(w in ("good", "great", "best") for w in words)
        out.append(hits / max(1, len(words)) + 0.001 * len(words))
    return out


def even_length(prompts, completions, **columns):
    """1.0 when the completion has an even number of words, else 0.0 (a binary reward)."""
    return [float(len(_text(c).split()) % 2 == 0) for c in completions]


def none_for_short(prompts, completions, **columns):
    """None (unscorable) for completions under 3 words, else the word count."""
    return [None if len(_text(c).split()) < 3 else float(len(_text(c).split())) for c in completions]


def negated_vader(prompts, completions, **columns):
    """Minus VADER's compound score: a reward that always disagrees with the check."""
    from trl_plugins.builtin_rewards import vader_sentiment

    return [-v for v in vader_sentiment(prompts, completions)]


def text_fingerprint(prompts, completions, **columns):
    """A number in [0, 1) fixed by the completion's exact text: two evaluations agree only if every sample does."""
    import hashlib

    return [int(hashlib.sha256(_text(c).encode()).hexdigest()[:8], 16) / 2**32 for c in completions]
