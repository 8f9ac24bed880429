"""ORPO loss against the paper's formula on hand-computed numbers (Hong et al. 2024, Eq. 4-7)."""

from __future__ import annotations

import math

import pytest
import torch

from trl_plugins.losses import log1mexp, orpo_loss


def test_orpo_loss_on_hand_numbers():
    # P(chosen) = 0.5, P(rejected) = 0.25 (length-averaged, i.e. geometric-mean token probabilities)
    # odds: 0.5/0.5 = 1 and 0.25/0.75 = 1/3 -> log odds ratio = ln 3; log sigmoid(ln 3) = ln(3/4)
    lc, lr = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    loss, metrics = orpo_loss(lc, lr, torch.tensor(2.0), beta=0.1)
    assert metrics["log_odds_chosen"].item() == pytest.approx(math.log(3.0), abs=1e-6)
    assert metrics["log_odds_ratio"].item() == pytest.approx(math.log(0.75), abs=1e-6)
    assert loss.item() == pytest.approx(2.0 - 0.1 * math.log(0.75), abs=1e-6)  # 2.028768
    assert loss.item() == pytest.approx(2.028768, abs=1e-6)
    assert metrics["rewards/accuracies"].item() == 1.0
    assert metrics["rewards/margins"].item() == pytest.approx(0.1 * math.log(2.0), abs=1e-6)


def test_orpo_loss_averages_over_the_batch():
    probs_c, probs_r = [0.5, 0.2, 0.9], [0.25, 0.4, 0.1]
    lc, lr = torch.tensor(probs_c).log(), torch.tensor(probs_r).log()
    expected_terms = []
    for pc, pr in zip(probs_c, probs_r):
        log_odds = math.log(pc / (1 - pc)) - math.log(pr / (1 - pr))
        expected_terms.append(-math.log1p(math.exp(-log_odds)))  # log sigmoid
    expected = 1.5 - 0.25 * sum(expected_terms) / 3
    loss, metrics = orpo_loss(lc, lr, torch.tensor(1.5), beta=0.25)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert metrics["rewards/accuracies"].item() == pytest.approx(2 / 3)


def test_orpo_ratio_term_pushes_chosen_up_and_rejected_down():
    lc = torch.tensor([math.log(0.3)], requires_grad=True)
    lr = torch.tensor([math.log(0.3)], requires_grad=True)
    loss, _ = orpo_loss(lc, lr, torch.tensor(0.0), beta=1.0)
    loss.backward()
    assert lc.grad.item() < 0 < lr.grad.item()


def test_log1mexp_is_stable_at_both_ends():
    x = torch.tensor([-1e-10, -1e-3, -math.log(2), -1.0, -50.0], dtype=torch.float64)
    expected = torch.log(1 - torch.exp(x))
    assert torch.allclose(log1mexp(x[1:]), expected[1:], rtol=1e-9)
    assert log1mexp(x[:1]).item() == pytest.approx(math.log(1e-10), rel=1e-6)  # naive 1 - exp(x) loses digits
    assert torch.isfinite(log1mexp(torch.tensor([-1e-30, -200.0]))).all()


def test_orpo_loss_is_finite_for_extreme_log_probs():
    lc = torch.tensor([0.0, -1e-9, -80.0], requires_grad=True)  # certain, almost certain, hopeless
    lr = torch.tensor([-80.0, 0.0, -1e-9], requires_grad=True)
    loss, metrics = orpo_loss(lc, lr, torch.tensor(1.0), beta=0.1)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(lc.grad).all() and torch.isfinite(lr.grad).all()
    assert all(torch.isfinite(v) for v in metrics.values())


def test_orpo_loss_rejects_shapes_that_would_broadcast():
    with pytest.raises(ValueError, match="same shape"):
        orpo_loss(torch.zeros(4, 1) - 1, torch.zeros(4) - 1, torch.tensor(1.0), beta=0.1)
    with pytest.raises(ValueError, match="scalar"):
        orpo_loss(torch.zeros(4) - 1, torch.zeros(4) - 1, torch.ones(4), beta=0.1)
