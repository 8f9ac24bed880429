"""The ``loglik:MODEL`` reward source (a fluency monitor): resolved before any model loads, scores equal to an
independent computation of the mean token log-likelihood, and on the real model fluent text scores higher."""

from __future__ import annotations

import pytest
import torch

from trl_plugins.errors import ConfigError
from trl_plugins.sampling import reward_sources


def test_resolves_without_loading(tiny_model_dir, no_model_loading):
    (entry,) = reward_sources.resolve([f"loglik:{tiny_model_dir}"], key="heldout_reward_funcs")
    assert (entry.kind, entry.target, entry.name) == ("loglik", tiny_model_dir, "loglik")


@pytest.mark.parametrize("entry, message", [
    ("loglik:", "names no model"),
    ("loglik:./nowhere", "no local checkpoint, hub id or embedded model"),
    ("loglik:embedded:nope", "unknown embedded model 'nope'"),
])
def test_bad_entries_are_one_line(entry, message):
    with pytest.raises(ConfigError, match=message):
        reward_sources.resolve([entry], key="heldout_reward_funcs")


def test_scores_are_the_mean_token_loglikelihood(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    (source,) = reward_sources.build(reward_sources.resolve([f"loglik:{tiny_model_dir}"]), batch_size=2)
    prompts = ["write a review of the movie .", "how was the story ?", "what was the film like ?"]
    completions = [" a great movie", " the worst plot , very dull", " fun"]
    scores = source(prompts, completions, {})
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    for prompt, completion, score in zip(prompts, completions, scores):
        start = len(tokenizer(prompt)["input_ids"])
        ids = tokenizer(prompt + completion + tokenizer.eos_token)["input_ids"]
        with torch.no_grad():
            logps = model(torch.tensor([ids])).logits[0, :-1].log_softmax(-1)
        expected = torch.stack([logps[t - 1, ids[t]] for t in range(start, len(ids))]).mean().item()
        assert score == pytest.approx(expected, abs=1e-5)


@pytest.mark.real
def test_fluent_text_scores_higher_on_the_real_model():
    (source,) = reward_sources.build(reward_sources.resolve(["loglik:embedded:smollm2-135m-instruct"]))
    prompt = "Continue this movie review: The film"
    fluent, scrambled = " was a delight from start to finish.", " finish delight a to start was from the."
    a, b = source([prompt, prompt], [fluent, scrambled], {})
    assert a > b + 0.5
