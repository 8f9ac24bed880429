"""Standard errors and paired bootstrap intervals against hand-computed numbers."""

from __future__ import annotations

import math

import pytest

from trl_plugins.evaluation.intervals import mean_se, paired_bootstrap


def test_mean_se_of_a_proportion():
    values = [1.0] * 100 + [0.0] * 100  # p = 0.5, n = 200: se = sqrt(0.25 * 200 / 199 / 200)
    mean, se = mean_se(values)
    assert mean == 0.5
    assert se == pytest.approx(math.sqrt(0.25 / 199), rel=1e-12)
    assert se == pytest.approx(0.0354, abs=1e-4)
    assert mean_se([3.0]) == (3.0, 0.0)


def test_paired_bootstrap_brackets_the_change_and_shrinks_with_agreement():
    before = [0.0, 1.0] * 100
    after_constant = [b + 0.1 for b in before]  # every item moves by exactly 0.1: no noise in the change
    low, high = paired_bootstrap(before, after_constant)
    assert low == pytest.approx(0.1) and high == pytest.approx(0.1)
    after_noisy = [b + (0.5 if i % 2 else -0.3) for i, b in enumerate(before)]  # mean change 0.1
    low, high = paired_bootstrap(before, after_noisy, seed=1)
    assert low < 0.1 < high and high - low < 0.2
    with pytest.raises(ValueError, match="differ in length"):
        paired_bootstrap([1.0], [1.0, 2.0])


def test_mean_interval_is_the_student_t_interval_of_a_few_runs():
    from trl_plugins.evaluation.intervals import mean_interval, t_quantile_975

    low, high = mean_interval([1.0, 2.0, 3.0])  # mean 2, SE 1/sqrt(3), t_{0.975, 2} = 4.303
    assert (low, high) == pytest.approx((2 - 4.303 / math.sqrt(3), 2 + 4.303 / math.sqrt(3)))
    assert t_quantile_975(1) == 12.706 and t_quantile_975(40) == pytest.approx(2.021, abs=0.002)  # tables: 2.021
    assert t_quantile_975(120) == pytest.approx(1.980, abs=0.001)
    assert all(math.isnan(v) for v in mean_interval([0.5]))
