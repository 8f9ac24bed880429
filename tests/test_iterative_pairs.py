"""The pair rules of iterative-dpo / iterative-orpo (trl_plugins/sampling/pairs.py) on hand-made reward tables."""

from __future__ import annotations

import pytest

from trl_plugins.sampling.pairs import PairSet, all_pairs, best_worst, correct_incorrect, make_pairs

# prompt a: rewards 0.2 0.9 0.1 0.9 -> best 1 (earlier of the two 0.9), worst 2
# prompt b: all 0.5 -> a tie; prompt c: one usable sample (the other None) -> too few; prompt d: 0.0 1.0
GROUPS = ["a", "a", "a", "a", "b", "b", "c", "c", "d", "d"]
REWARDS = [0.2, 0.9, 0.1, 0.9, 0.5, 0.5, 0.7, None, 0.0, 1.0]


def test_best_worst_pairs_best_with_worst_and_counts_ties_and_too_few():
    made = best_worst(GROUPS, REWARDS)
    assert made == PairSet(pairs=[(1, 2), (9, 8)], ties=1, too_few=1)


def test_best_worst_min_reward_gap_turns_small_gaps_into_ties():
    assert best_worst(GROUPS, REWARDS, min_reward_gap=0.8) == PairSet(pairs=[(1, 2), (9, 8)], ties=1, too_few=1)
    assert best_worst(GROUPS, REWARDS, min_reward_gap=0.85) == PairSet(pairs=[(9, 8)], ties=2, too_few=1)


def test_all_pairs_takes_every_separated_pair_of_a_prompt():
    made = all_pairs(GROUPS, REWARDS)
    # a: 0.9>0.2 (1,0) (3,0); 0.2>0.1 (0,2); 0.9>0.1 (1,2) (3,2); the two 0.9 tie -> no pair; d: (9,8)
    assert made.pairs == [(0, 2), (1, 0), (1, 2), (3, 0), (3, 2), (9, 8)]
    assert (made.ties, made.too_few) == (1, 1)
    assert all(REWARDS[c] > REWARDS[r] for c, r in made.pairs)


def test_all_pairs_with_a_gap_keeps_only_wide_pairs():
    made = all_pairs(GROUPS, REWARDS, min_reward_gap=0.75)
    assert made.pairs == [(1, 2), (3, 2), (9, 8)]


def test_correct_incorrect_pairs_right_with_wrong_answers():
    groups = ["p"] * 5 + ["q"] * 3 + ["r"] * 2 + ["s"] * 2
    rewards = [0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, None]
    made = correct_incorrect(groups, rewards)
    assert made == PairSet(pairs=[(1, 0)], ties=2, too_few=1)  # q all right, r all wrong: ties; s one usable
    two = correct_incorrect(groups, rewards, pairs_per_prompt=2)
    assert two.pairs == [(1, 0), (2, 3)]  # the i-th correct with the i-th incorrect, no sample twice
    assert correct_incorrect(groups, rewards, pairs_per_prompt=5).pairs == [(1, 0), (2, 3)]


def test_correct_threshold_decides_what_counts_as_correct():
    made = correct_incorrect(["p"] * 3, [0.4, 0.6, 0.9], correct=0.5)
    assert made.pairs == [(1, 0)]


def test_cut_off_samples_are_never_chosen_but_may_be_rejected():
    """The trainer marks samples cut off at max_new_tokens not choosable (unless keep_unfinished): a cut-off sample
    with the best reward is passed over for the chosen side, and can still be the rejected one."""
    rewards, cut = [0.9, 0.5, 0.1], [False, True, True]  # sample 0 is cut off
    assert best_worst(["p"] * 3, rewards, choosable=cut).pairs == [(1, 2)]
    assert best_worst(["p"] * 3, [0.1, 0.5, 0.9], choosable=cut).pairs == [(2, 0)]  # rejected: the cut-off one
    assert all_pairs(["p"] * 3, rewards, choosable=cut).pairs == [(1, 2)]
    assert correct_incorrect(["p"] * 3, [1.0, 1.0, 0.0], choosable=cut).pairs == [(1, 2)]
    only_cut = correct_incorrect(["p"] * 2, [1.0, 0.0], choosable=[False, True])
    assert only_cut == PairSet(pairs=[], ties=1, too_few=0)  # no choosable correct answer
    assert best_worst(["p"] * 3, [None, None, 0.1]) == PairSet(pairs=[], ties=0, too_few=1)


@pytest.mark.parametrize("call, message", [
    (lambda: best_worst(["a"], [1.0], min_reward_gap=-1), "min_reward_gap"),
    (lambda: correct_incorrect(["a"], [1.0], pairs_per_prompt=0), "pairs_per_prompt"),
    (lambda: make_pairs("best_of_n", ["a"], [1.0]), "pair_rule"),
    (lambda: best_worst(["a", "b"], [1.0]), "differ in length"),
    (lambda: all_pairs(["a", "a"], [1.0, 0.0], choosable=[True]), "differ in length"),
])
def test_bad_arguments_name_what_is_wrong(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_make_pairs_dispatches_to_each_rule():
    assert make_pairs("best_worst", GROUPS, REWARDS) == best_worst(GROUPS, REWARDS)
    assert make_pairs("all_pairs", GROUPS, REWARDS, min_reward_gap=0.5) == all_pairs(GROUPS, REWARDS, 0.5)
    assert make_pairs("correct_incorrect", GROUPS, REWARDS, correct=0.8) == correct_incorrect(GROUPS, REWARDS, 0.8)
