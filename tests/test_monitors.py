"""The held-out monitors (trl_plugins/evaluation/monitors.py): the k1/k3 KL estimators against Schulman's formulas on
known numbers and against the exact KL of two known distributions; the batched per-token log-probabilities against a
plain unbatched forward pass; and the monitors of a tiny LoRA model (π₀ = the adapter switched off) against the same
figures computed by hand.

    python -m pytest tests/test_monitors.py -q
"""

from __future__ import annotations

import math

import pytest
import torch

from trl_plugins.evaluation.monitors import (
    DEFAULT_MONITORS,
    MONITORS,
    direction,
    distinct_n,
    heldout_monitors,
    kl_estimates,
    per_prompt_distinct2,
    per_prompt_means,
)
from trl_plugins.sampling.records import HeldoutScores

from tiny import tiny_causal_lm, tiny_tokenizer


# -- the estimators on known numbers ----------------------------------------------------------------------------------
def test_k1_and_k3_are_schulmans_formulas_per_token_mean_and_sum():
    policy, reference = [-1.0, -2.0, -0.5], [-1.5, -1.0, -0.5]
    got = kl_estimates(torch.tensor(policy), torch.tensor(reference))
    k1 = [p - q for p, q in zip(policy, reference)]  # log pi - log pi0
    r = [math.exp(q - p) for p, q in zip(policy, reference)]  # pi0 / pi
    k3 = [(x - 1) - math.log(x) for x in r]
    assert k3[0] == pytest.approx(math.exp(-0.5) - 1 + 0.5) and k3[2] == 0.0
    assert got["monitor/kl_token_k1"] == pytest.approx(sum(k1) / 3) and got["monitor/kl_seq_k1"] == pytest.approx(-0.5)
    assert got["monitor/kl_token"] == pytest.approx(sum(k3) / 3) and got["monitor/kl_seq"] == pytest.approx(sum(k3))
    assert all(v >= 0 for v in k3) and got["monitor/kl_token_k1"] < 0 < got["monitor/kl_token"]  # k1 can be < 0
    empty = kl_estimates(torch.zeros(0), torch.zeros(0))
    assert empty["monitor/kl_token"] is None and empty["monitor/kl_seq"] == 0.0


def test_k1_and_k3_average_to_the_exact_kl_of_two_known_distributions():
    p, q = torch.tensor([0.5, 0.3, 0.15, 0.05]), torch.tensor([0.2, 0.3, 0.2, 0.3])
    exact = (p * (p / q).log()).sum().item()  # KL(p || q) = 0.4113...
    generator = torch.Generator().manual_seed(0)
    tokens = torch.multinomial(p, 200_000, replacement=True, generator=generator)  # samples of the policy
    got = kl_estimates(p.log()[tokens], q.log()[tokens])
    assert got["monitor/kl_token_k1"] == pytest.approx(exact, abs=0.01)
    assert got["monitor/kl_token"] == pytest.approx(exact, abs=0.01)
    k1 = p.log()[tokens] - q.log()[tokens]
    k3 = (q / p)[tokens] - 1 - (q / p)[tokens].log()
    assert k3.var() < k1.var()  # why k3 is the default: lower variance, same mean


def test_per_prompt_means_group_consecutive_samples_and_skip_unscored():
    assert per_prompt_means([1.0, 3.0, None, 5.0, None], [2, 2, 1]) == [2.0, 5.0, None]
    with pytest.raises(ValueError, match="add up to 4 samples, got 5"):
        per_prompt_means([1.0] * 5, [2, 2])
    texts = ["a b a b", "a b c", "x", "y"]
    # each sample's own distinct-2, averaged per prompt ("a b a b": 2 of 3 bigrams unique; "a b c": 2 of 2); one-word
    # samples have no bigram
    assert per_prompt_distinct2(texts, [2, 2]) == [pytest.approx((2 / 3 + 1) / 2), None]
    assert per_prompt_distinct2(["a b", "a b"], [2]) == [1.0]  # two samples alike do not repeat themselves
    scores = HeldoutScores().add({"monitor/length": [2.0, 4.0, None]})  # how the engine adds them to its columns
    assert scores.means["monitor/length"] == 3.0 and scores.se["monitor/length"] == pytest.approx(1.0)
    assert scores.to_json()["heldout_per_prompt"] == {"monitor/length": [2.0, 4.0, None]}
    assert scores.to_json()["monitor/length_se"] == pytest.approx(1.0)


def test_directions_say_which_way_is_worse():
    assert direction("monitor/loglik") == direction("monitor/distinct2") == +1
    assert direction("monitor/kl_token") == direction("monitor/length") == 0  # kl: max_kl; length: shown only
    assert direction("heldout/other_reward") == +1  # an independent check falling is worse
    assert set(DEFAULT_MONITORS) == set(MONITORS)


# -- the forward passes -----------------------------------------------------------------------------------------------
PROMPTS = ["write a review of the movie .", "how was the story ?", "what was the film like ?"]
COMPLETIONS = [" a great movie", " the worst plot , very dull dull", " fun"]


def _by_hand(model, tokenizer, prompt, completion, temperature=1.0):
    """The completion tokens' log-probabilities from one unbatched forward pass, no padding."""
    start = len(tokenizer(prompt)["input_ids"])
    ids = tokenizer(prompt + completion + tokenizer.eos_token)["input_ids"]
    with torch.no_grad():
        logps = (model(torch.tensor([ids])).logits[0, :-1] / temperature).log_softmax(-1)
    return torch.stack([logps[t - 1, ids[t]] for t in range(start, len(ids))])


@pytest.mark.parametrize("conversational", [False, True])
def test_batched_token_logps_equal_an_unbatched_forward_pass(conversational):
    from trl_plugins.evaluation.heldout import completion_logps, completion_token_logps

    tokenizer, model = tiny_tokenizer(), tiny_causal_lm().eval()
    if conversational:
        prompts = [[{"role": "user", "content": p}] for p in PROMPTS]
        completions = [[{"role": "assistant", "content": c.strip()}] for c in COMPLETIONS]
    else:
        prompts, completions = PROMPTS, COMPLETIONS
    at_1, at_07 = completion_token_logps(model, tokenizer, prompts, completions, batch_size=2,
                                         temperatures=(1.0, 0.7))
    for i in range(len(prompts)):
        if conversational:
            from trl_plugins.evaluation.heldout import encode_pair

            ids, start = encode_pair(tokenizer, prompts[i], completions[i])
            with torch.no_grad():
                logits = model(torch.tensor([ids])).logits[0, :-1]
            expected = {t: torch.stack([(logits[j - 1] / t).log_softmax(-1)[ids[j]] for j in range(start, len(ids))])
                        for t in (1.0, 0.7)}
        else:
            expected = {t: _by_hand(model, tokenizer, PROMPTS[i], COMPLETIONS[i], t) for t in (1.0, 0.7)}
        assert len(at_1[i]) == len(expected[1.0]) > 1
        torch.testing.assert_close(at_1[i], expected[1.0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(at_07[i], expected[0.7], atol=1e-5, rtol=1e-5)
    averages = completion_logps(model, tokenizer, prompts, completions, batch_size=2)
    torch.testing.assert_close(averages, torch.stack([t.mean() for t in at_1]))


def _lora(model):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear"))


def test_monitors_of_a_lora_model_use_the_adapter_switched_off_as_the_start():
    tokenizer = tiny_tokenizer()
    base = tiny_causal_lm(tokenizer).eval()  # the same weights as the model under the adapter (seed 0)
    policy = _lora(tiny_causal_lm(tokenizer)).eval()
    prompts = [PROMPTS[0], PROMPTS[0], PROMPTS[1], PROMPTS[1], PROMPTS[2], PROMPTS[2]]
    completions = [COMPLETIONS[0], COMPLETIONS[1], COMPLETIONS[1], COMPLETIONS[1], COMPLETIONS[2], COMPLETIONS[0]]
    groups = [2, 2, 2]

    fresh = heldout_monitors(policy, tokenizer, prompts, completions, groups, batch_size=4).per_prompt
    assert fresh["monitor/kl_token"] == fresh["monitor/kl_seq_k1"] == [0.0] * 3  # a new adapter changes nothing

    with torch.no_grad():  # train the adapter by hand: it moves the policy away from the base
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn_like(param) * 0.5)
    got = heldout_monitors(policy, tokenizer, prompts, completions, groups, temperature=0.7, batch_size=4,
                           lengths=[3, 5, 5, 5, 1, 3])
    per_prompt = got.per_prompt
    k3_tokens, k1_seqs, logliks = [], [], []
    for prompt, completion in zip(prompts, completions):
        pi = _by_hand(policy, tokenizer, prompt, completion, 0.7)
        pi0 = _by_hand(base, tokenizer, prompt, completion, 0.7)
        ratio = (pi0 - pi).double().exp()
        k3_tokens.append(((ratio - 1) - ratio.log()).mean().item())
        k1_seqs.append((pi - pi0).sum().item())
        logliks.append(_by_hand(base, tokenizer, prompt, completion).mean().item())  # at T = 1, the base as it is
    pairs = lambda values: [(values[i] + values[i + 1]) / 2 for i in (0, 2, 4)]  # noqa: E731
    assert per_prompt["monitor/kl_token"] == pytest.approx(pairs(k3_tokens), abs=1e-5)
    assert per_prompt["monitor/kl_seq_k1"] == pytest.approx(pairs(k1_seqs), abs=1e-4)
    assert per_prompt["monitor/loglik"] == pytest.approx(pairs(logliks), abs=1e-5)
    # loglik is the base at T = 1 whatever the sampling temperature (the fresh run above: T = 1, one pass for both)
    assert fresh["monitor/loglik"] == pytest.approx(pairs(logliks), abs=1e-5)
    assert min(per_prompt["monitor/kl_token"]) > 0
    assert per_prompt["monitor/length"] == [4.0, 5.0, 2.0]
    own = [distinct_n([c]) for c in completions]  # each sample's own; " fun" has no bigram and is left out
    assert per_prompt["monitor/distinct2"] == pytest.approx([(own[0] + own[1]) / 2, (own[2] + own[3]) / 2, own[5]])
    assert got.seconds > 0
    assert "lora" in "".join(n for n, _ in policy.named_modules())  # the adapter is back on afterwards ...
    assert _by_hand(policy, tokenizer, PROMPTS[0], COMPLETIONS[0]).ne(_by_hand(base, tokenizer, PROMPTS[0],
                                                                              COMPLETIONS[0])).any()  # ... and active


def test_a_model_without_adapter_needs_a_reference_model_and_cheap_monitors_need_none():
    tokenizer = tiny_tokenizer()
    policy, start = tiny_causal_lm(tokenizer, seed=1).eval(), tiny_causal_lm(tokenizer, seed=0).eval()
    with pytest.raises(ValueError, match="need the starting policy"):
        heldout_monitors(policy, tokenizer, PROMPTS, COMPLETIONS, [1, 1, 1])
    got = heldout_monitors(policy, tokenizer, PROMPTS, COMPLETIONS, [1, 1, 1], reference_model=start,
                           monitors=["kl"])
    expected = [kl_estimates(_by_hand(policy, tokenizer, p, c), _by_hand(start, tokenizer, p, c))["monitor/kl_token"]
                for p, c in zip(PROMPTS, COMPLETIONS)]
    assert got.per_prompt["monitor/kl_token"] == pytest.approx(expected, abs=1e-5)
    assert set(got.per_prompt) == set(MONITORS["kl"].keys)  # no loglik, distinct-2 or length asked for
    cheap = heldout_monitors(policy, tokenizer, PROMPTS, COMPLETIONS, [1, 1, 1], monitors=["distinct2", "length"])
    assert set(cheap.per_prompt) == {"monitor/distinct2", "monitor/length"}
    with pytest.raises(ValueError, match="unknown monitor 'entropy'"):
        heldout_monitors(policy, tokenizer, PROMPTS, COMPLETIONS, [1, 1, 1], monitors=["entropy"])


def test_each_sample_is_scored_on_the_prompt_its_row_rendered():
    """Rows with their own tools / chat_template_kwargs: the forward passes see the prompt as the generation rendered
    it (the row's template arguments), not the bare messages."""
    from trl_plugins.evaluation.heldout import encode_pair

    from helpers import TOOLS_TEMPLATE

    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = TOOLS_TEMPLATE
    policy, start = tiny_causal_lm(tokenizer, seed=1).eval(), tiny_causal_lm(tokenizer, seed=0).eval()
    prompts = [[{"role": "user", "content": p}] for p in PROMPTS[:2]]
    completions = [[{"role": "assistant", "content": c.strip()}] for c in COMPLETIONS[:2]]
    kwargs = [{"mood": "happy"}, None]
    got = heldout_monitors(policy, tokenizer, prompts, completions, [1, 1], reference_model=start, monitors=["loglik"],
                           chat_kwargs=kwargs).per_prompt["monitor/loglik"]
    bare = heldout_monitors(policy, tokenizer, prompts, completions, [1, 1], reference_model=start,
                            monitors=["loglik"]).per_prompt["monitor/loglik"]
    for i in range(2):
        ids, begin = encode_pair(tokenizer, prompts[i], completions[i], kwargs[i])
        with torch.no_grad():
            logps = start(torch.tensor([ids])).logits[0, :-1].log_softmax(-1)
        assert got[i] == pytest.approx(torch.stack([logps[j - 1, ids[j]] for j in range(begin, len(ids))]).mean().item(),
                                       abs=1e-5)
    assert got[0] != pytest.approx(bare[0], abs=1e-6) and got[1] == bare[1]  # the system line changed the first only


def test_relevance_is_the_base_loglik_after_its_own_prompt_minus_after_the_next_prompts():
    """relevance = mean log π₀(y|x) − mean log π₀(y|x') per token, x' the next prompt's (the last prompt's: the
    first's), averaged per prompt; one prompt alone has no other prompt and no figure."""
    from trl_plugins.evaluation.monitors import other_prompt_indices

    assert other_prompt_indices([2, 1, 3]) == [2, 2, 3, 0, 0, 0]
    assert other_prompt_indices([2, 0, 1]) == [2, 2, 0]  # a prompt without samples is skipped
    assert other_prompt_indices([4]) is None and other_prompt_indices([0, 2]) is None
    tokenizer = tiny_tokenizer()
    policy, start = tiny_causal_lm(tokenizer, seed=1).eval(), tiny_causal_lm(tokenizer, seed=0).eval()
    prompts = [PROMPTS[0], PROMPTS[0], PROMPTS[1], PROMPTS[2]]
    completions = [COMPLETIONS[0], COMPLETIONS[1], COMPLETIONS[1], COMPLETIONS[2]]
    got = heldout_monitors(policy, tokenizer, prompts, completions, [2, 1, 1], reference_model=start,
                           monitors=["relevance"], batch_size=3).per_prompt
    assert set(got) == {"monitor/relevance"}
    others = [PROMPTS[1], PROMPTS[1], PROMPTS[2], PROMPTS[0]]
    each = [(_by_hand(start, tokenizer, p, c).mean() - _by_hand(start, tokenizer, o, c).mean()).item()
            for p, o, c in zip(prompts, others, completions)]
    assert got["monitor/relevance"] == pytest.approx([(each[0] + each[1]) / 2, each[2], each[3]], abs=1e-5)
    assert len(set(each)) == 4 and all(v != 0 for v in each)  # the prompt changes the figure
    alone = heldout_monitors(policy, tokenizer, PROMPTS[:1] * 2, COMPLETIONS[:2], [2], reference_model=start,
                             monitors=["relevance"]).per_prompt
    assert alone["monitor/relevance"] == [None]
    assert direction("monitor/relevance") == +1
