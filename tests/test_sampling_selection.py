"""Selection rules on crafted reward tables, the exact-match reward, and reward-source resolution."""

from __future__ import annotations

import json

import pytest

from trl_plugins.errors import ConfigError
from trl_plugins.sampling import selection as sel
from trl_plugins.sampling.records import IterationSummary, Sample, distinct_n

#            prompt: 0  0    0    1     1     1     2     2
GROUPS = [0, 0, 0, 1, 1, 1, 2, 2]
REWARDS = [0.1, 0.9, 0.9, None, -1.0, 0.5, None, None]


def test_best_of_n_ties_none_and_all_none_prompts():
    # prompt 0: tie 0.9/0.9 -> the earlier sample (1); prompt 1: None skipped -> 5; prompt 2: all None -> nothing
    assert sel.best_of_n(GROUPS, REWARDS) == [1, 5]
    assert sel.best_of_n(GROUPS, REWARDS, n=2) == [1, 2, 4, 5]


def test_best_of_n_all_equal_keeps_first_of_each_prompt():
    assert sel.best_of_n([0, 0, 1, 1], [0.0, 0.0, 0.0, 0.0]) == [0, 2]


def test_top_alpha_rounds_up_over_valid_samples_and_breaks_ties_by_index():
    # 5 valid samples: alpha 0.4 -> 2 kept: 0.9 (1) and 0.9 (2)
    assert sel.top_alpha(REWARDS, 0.4) == [1, 2]
    assert sel.top_alpha(REWARDS, 0.5) == [1, 2, 5]  # ceil(2.5) = 3
    assert sel.top_alpha(REWARDS, 1.0) == [0, 1, 2, 4, 5]
    assert sel.top_alpha([None, None], 0.5) == []
    assert sel.top_alpha([0.3, 0.3, 0.3], 0.01) == [0]  # at least one
    for bad in (0, -0.1, 1.5):
        with pytest.raises(ValueError):
            sel.top_alpha(REWARDS, bad)


def test_threshold_absolute_and_per_prompt_percentile():
    assert sel.threshold(GROUPS, REWARDS, 0.5) == [1, 2, 5]
    # prompt 0 rewards [0.1, 0.9, 0.9]: 0.5-quantile = 0.9 -> 1, 2; prompt 1 [-1, 0.5]: median -0.25 -> 5
    assert sel.threshold(GROUPS, REWARDS, 0.5, "percentile") == [1, 2, 5]
    assert sel.threshold(GROUPS, REWARDS, 0.0, "percentile") == [0, 1, 2, 4, 5]
    # all equal: every sample reaches the quantile
    assert sel.threshold([0, 0, 0], [2.0, 2.0, 2.0], 0.95, "percentile") == [0, 1, 2]
    with pytest.raises(ValueError):
        sel.threshold(GROUPS, REWARDS, 1.5, "percentile")


def test_percentile_matches_linear_interpolation():
    assert sel.percentile([1.0, 2.0, 3.0, 4.0], 0.5) == pytest.approx(2.5)
    assert sel.percentile([1.0, 2.0, 3.0, 4.0], 0.7) == pytest.approx(3.1)  # numpy.percentile(..., 70)
    assert sel.percentile([5.0], 0.9) == 5.0


def test_binary_capped_keeps_correct_only_up_to_the_cap_per_prompt():
    groups = [0, 0, 0, 0, 1, 1, 2]
    rewards = [1.0, 0.0, 1.0, 1.0, 0.0, None, 1.0]
    assert sel.binary_capped(groups, rewards, cap=2) == [0, 2, 6]
    assert sel.binary_capped(groups, rewards, cap=None) == [0, 2, 3, 6]
    assert sel.binary_capped(groups, rewards, cap=1, correct=0.5) == [0, 6]
    with pytest.raises(ValueError):
        sel.binary_capped(groups, rewards, cap=0)


def test_rejection_sampling_export_pairs_by_the_iterative_dpo_rule():
    """One best-vs-worst rule for both users (pairs.best_worst): rejection-sampling's export passes cut-off samples as
    unusable (None), so they are on neither side; prompts without a difference make no pair."""
    from trl_plugins.sampling.pairs import best_worst

    assert best_worst(GROUPS, REWARDS).pairs == [(1, 0), (5, 4)]
    assert best_worst([0, 0], [1.0, 1.0]).pairs == []


def test_summary_row_and_distinct_2():
    assert distinct_n(["a b a b", "a b"]) == pytest.approx(2 / 4)  # bigrams: ab ba ab | ab -> {ab, ba} of 4
    samples = [Sample(0, j, "p", text, tokens, True, j, reward=reward)
               for j, (text, tokens, reward) in enumerate([("a b c", 3, 1.0), ("a b", 2, None), ("x", 1, 3.0)])]
    samples[2].selected = True
    row = IterationSummary.of(1, samples).to_json()
    assert row["dropped"] == 1 and row["kept"] == 1
    assert row["reward_all_mean"] == 2.0 and row["reward_all_median"] == 2.0 and row["reward_all_max"] == 3.0
    assert row["reward_selected_mean"] == 3.0
    assert row["mean_tokens_all"] == 2.0 and row["mean_tokens_selected"] == 1.0
    json.dumps(row)


def test_exact_match_reward():
    from trl_plugins.builtin_rewards import exact_match

    completions = ["3 + 4 = 7.", "The answer is 8", "#### 1,234", r"so \boxed{12}", "seven",
                   [{"role": "assistant", "content": "It is 7"}], "Paris.", "7", "Leo has 1 + 1 + 2 +", "3,"]
    answers = ["7", "7", "1234", "12", "7", "7", "paris", None, "2", "3"]
    assert exact_match(None, completions, answer=answers) == [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, None, 0.0, 1.0]


def test_reward_resolution_errors(tiny_model_dir, tmp_path):
    from trl_plugins.sampling.reward_sources import resolve

    specs = resolve(["vader_sentiment", "sampling_rewards:good_words"], [1.0, 0.5])
    assert [(s.kind, s.name, s.weight) for s in specs] == [("function", "vader_sentiment", 1.0),
                                                           ("function", "good_words", 0.5)]
    with pytest.raises(ConfigError, match="unknown reward function 'vader_sentimnt'; did you mean 'vader_sentiment'"):
        resolve(["vader_sentimnt"])
    with pytest.raises(ConfigError, match="cannot import 'no_such_module:f'"):
        resolve(["no_such_module:f"])
    with pytest.raises(ConfigError, match="not a sequence-classification reward model.*LlamaForCausalLM"):
        resolve([tiny_model_dir])
    with pytest.raises(ConfigError, match="reward_weights has 1 values"):
        resolve(["vader_sentiment", "exact_match"], [1.0])
    with pytest.raises(ConfigError, match="at least one reward"):
        resolve([])
    with pytest.raises(ConfigError, match="^heldout_reward_funcs: unknown reward function"):
        resolve(["vader_sentimnt"], key="heldout_reward_funcs")


def test_reward_model_ids_are_checked_before_loading(tmp_path, monkeypatch):
    """``outputs/margin-rm-demo`` before that run exists is a missing path, not a hub id; offline, a hub id must
    be in the Hugging Face cache."""
    from trl_plugins.sampling.reward_sources import resolve

    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()
    with pytest.raises(ConfigError, match=r"reward model path 'outputs/margin-rm-demo' does not exist"):
        resolve(["outputs/margin-rm-demo"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ConfigError, match=r"'someone/some-rm' is not a local folder and not in the Hugging Face cache"):
        resolve(["someone/some-rm"])
