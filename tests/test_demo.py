"""The ORPO demo's VADER metric is held out: none of its prompts is a prompt of the data it trains on."""

from __future__ import annotations

from trl_plugins.demo import HELDOUT_REVIEW_PROMPTS


def _text(prompt) -> str:
    return prompt[0]["content"] if isinstance(prompt, list) else prompt.strip()


def test_orpo_demo_vader_prompts_are_never_training_prompts():
    from trl_plugins.embedded import load_embedded_dataset

    data = load_embedded_dataset("rt-preference")
    training_prompts = {_text(p) for p in data["train"]["prompt"]}
    assert training_prompts == {"Write a one-sentence movie review."}  # what makes a training-prompt metric tempting
    assert len(set(HELDOUT_REVIEW_PROMPTS)) == len(HELDOUT_REVIEW_PROMPTS) >= 8
    assert not training_prompts & set(HELDOUT_REVIEW_PROMPTS)
    assert not {_text(p) for p in data["test"]["prompt"]} & set(HELDOUT_REVIEW_PROMPTS)
