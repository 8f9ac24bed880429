"""The pair rules fed by a judge or by the data (``sampling/pairs.py``): ``judge_pairwise`` keeps a comparison only
when both orders agree (RLAIF's position-bias control) and ``spin`` pairs the row's reference completion against the
policy's sample — pure functions on known tables; the same inputs give the same pairs (a resumed iteration rebuilds
exactly the pairs of the killed one).

    python -m pytest tests/test_judge_pairs.py -q
"""

from __future__ import annotations

import random

import pytest

from trl_plugins.sampling.pairs import comparison_candidates, judge_pairwise, spin, spin_data_problem

# prompt a: samples 0, 1, 2; prompt b: 3, 4 (their orders disagree); prompt c: 5 alone
GROUPS = ["a", "a", "a", "b", "b", "c"]
COMPARISONS = {
    (0, 1): (0.8, 0.3),  # 0 wins both orders: order-averaged preference for 0 = (0.8 + 0.7) / 2 = 0.75
    (0, 2): (0.7, 0.6),  # whoever is shown first wins: position bias, no pair
    (1, 2): (0.2, 0.9),  # 2 wins both: preference for 2 = (0.8 + 0.9) / 2 = 0.85
    (3, 4): (0.9, 0.8),
}


def test_candidates_are_every_two_usable_samples_of_a_prompt():
    assert comparison_candidates(GROUPS) == [(0, 1), (0, 2), (1, 2), (3, 4)]
    assert comparison_candidates(GROUPS, usable=[True, False, True, True, True, True]) == [(0, 2), (3, 4)]


def test_only_comparisons_whose_orders_agree_make_pairs():
    out = judge_pairwise(GROUPS, COMPARISONS)
    assert out.pairs == [(2, 1)]  # the strongest agreeing pair of prompt a
    assert (out.disagreements, out.ties, out.too_few) == (2, 1, 1)  # b: no agreeing comparison; c: one sample


def test_pairs_per_prompt_never_uses_a_sample_twice():
    out = judge_pairwise(GROUPS, COMPARISONS, pairs_per_prompt=2)
    assert out.pairs == [(2, 1)]  # (0, 1) would reuse sample 1
    assert judge_pairwise(GROUPS, {**COMPARISONS, (0, 2): (0.6, 0.45)}, pairs_per_prompt=2).pairs == [(2, 1)]
    four = ["a"] * 4
    table = {(0, 1): (0.9, 0.2), (2, 3): (0.3, 0.6), (0, 2): (0.55, 0.4)}
    assert judge_pairwise(four, table, pairs_per_prompt=2).pairs == [(0, 1), (3, 2)]


def test_margin_and_choosable():
    assert judge_pairwise(GROUPS, COMPARISONS, min_margin=0.3).pairs == [(2, 1)]  # 0.85 - 0.5 >= 0.3 > 0.25
    assert judge_pairwise(GROUPS, COMPARISONS, min_margin=0.4).pairs == []
    blocked = [True, True, False, True, True, True]  # sample 2 cut off: never the chosen side
    assert judge_pairwise(GROUPS, COMPARISONS, choosable=blocked).pairs == [(0, 1)]
    with pytest.raises(ValueError, match="min_margin"):
        judge_pairwise(GROUPS, COMPARISONS, min_margin=0.5)


def test_an_indifferent_order_is_no_agreement():
    out = judge_pairwise(["a", "a"], {(0, 1): (0.5, 0.2)})
    assert out.pairs == [] and out.disagreements == 1


def test_comparisons_across_prompts_are_refused():
    with pytest.raises(ValueError, match="different prompts"):
        judge_pairwise(GROUPS, {(2, 3): (0.9, 0.1)})


def test_same_inputs_same_pairs_in_any_order():
    """Resume: the comparisons read back from a file (in any order) rebuild the same pairs."""
    items = list(COMPARISONS.items()) + [((6, 7), (0.6, 0.3)), ((6, 8), (0.4, 0.7)), ((7, 8), (0.45, 0.4))]
    groups = GROUPS + ["d"] * 3
    first = judge_pairwise(groups, dict(items), pairs_per_prompt=2)
    for seed in range(5):
        random.Random(seed).shuffle(items)
        again = judge_pairwise(groups, dict(items), pairs_per_prompt=2)
        assert (again.pairs, again.ties, again.too_few, again.disagreements) == (
            first.pairs, first.ties, first.too_few, first.disagreements)


# -- SPIN ---------------------------------------------------------------------------------------------------------
def test_spin_pairs_the_reference_against_the_first_usable_sample():
    rows = [0, 0, 1, 1, 2, 3]
    usable = [False, True, True, True, False, True]
    same = [False, False, True, False, False, False]  # row 1's first usable sample equals its reference
    out = spin(rows, usable, same)
    assert out.pairs == [(0, 1), (3, 5)]
    assert (out.matched, out.missing) == (1, 1)
    assert spin(rows).pairs == [(0, 0), (1, 2), (2, 4), (3, 5)]
    assert spin(list(reversed(rows))).pairs == [(0, 4), (1, 2), (2, 1), (3, 0)]  # sorted by row
    with pytest.raises(ValueError, match="differ in length"):
        spin(rows, usable[:2])


@pytest.mark.parametrize("columns, row, message", [
    (["prompt"], {"prompt": "q"}, "needs the columns prompt and completion (the reference answer); missing completion"),
    (["question", "completion"], {}, "missing prompt"),
    (["prompt", "completion"], {"prompt": [{"role": "user", "content": "q"}], "completion": "a"}, "of one kind"),
])
def test_spin_data_problems_are_one_line(columns, row, message):
    problem = spin_data_problem(columns, row, "train split")
    assert problem.startswith("train split: pair_rule spin") and message in problem and "\n" not in problem


def test_spin_data_that_fits():
    assert spin_data_problem(["prompt", "completion", "id"], {"prompt": "q", "completion": "a"}, "train") is None
    chat = {"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": "a"}]}
    assert spin_data_problem(["prompt", "completion"], chat, "train") is None
