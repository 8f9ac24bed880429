"""Every loss of trl-plugins as a pure tensor function: no model, no trainer, easy to test on known numbers.

Each function takes per-sequence (or per-batch) quantities the trainer computed and returns ``(loss, metrics)``,
where ``metrics`` maps names to detached scalar tensors the trainer logs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_LN_HALF = -math.log(2.0)


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(x))`` for ``x < 0``, numerically stable (Mächler 2012: branch at ``-ln 2``)."""
    return torch.where(x < _LN_HALF, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def _check_pair(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.dim() != 1 or a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must be 1-D tensors of the same shape [B], got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")


# --------------------------------------------------------------------------------------------------------------------
# ORPO (Hong et al. 2024, arXiv:2403.07691, Eq. 4-7)
# --------------------------------------------------------------------------------------------------------------------
def orpo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    chosen_nll: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """ORPO: ``L = NLL(chosen) - beta * mean(log σ(log_odds))``.

    Args:
        chosen_logps, rejected_logps: ``[B]`` length-averaged log-probabilities of the completions,
            ``log P(y|x) / |y|`` (so ``P = exp(logp)`` is the geometric-mean token probability, as in the paper).
        chosen_nll: scalar negative log-likelihood of the chosen sequences (the SFT term).
        beta: the weight of the odds-ratio term, λ in the paper (0.1 to 0.25 there).

    ``odds(y|x) = P / (1 - P)``, so ``log_odds = (lc - lr) - (log(1 - e^lc) - log(1 - e^lr))``, computed with
    :func:`log1mexp`. Log-probs are clamped just below 0 so that a completion the model is certain of gives a
    finite (huge) odds instead of ``inf - inf``.
    """
    _check_pair("chosen_logps", chosen_logps, "rejected_logps", rejected_logps)
    if chosen_nll.dim() != 0:
        raise ValueError(f"chosen_nll must be a scalar, got shape {tuple(chosen_nll.shape)}")
    lc = chosen_logps.float().clamp(max=-1e-7)
    lr = rejected_logps.float().clamp(max=-1e-7)
    log_odds = (lc - lr) - (log1mexp(lc) - log1mexp(lr))
    log_sigmoid_odds = F.logsigmoid(log_odds)
    ratio_term = log_sigmoid_odds.mean()
    loss = chosen_nll - beta * ratio_term
    metrics = {
        "nll_loss": chosen_nll.detach(),
        "or_loss": (-beta * ratio_term).detach(),
        "log_odds_ratio": ratio_term.detach(),
        "log_odds_chosen": log_odds.mean().detach(),
        "rewards/chosen": (beta * lc).mean().detach(),
        "rewards/rejected": (beta * lr).mean().detach(),
        "rewards/accuracies": (lc > lr).float().mean().detach(),
        "rewards/margins": (beta * (lc - lr)).mean().detach(),
    }
    return loss, metrics


# --------------------------------------------------------------------------------------------------------------------
# Margin-loss reward model (Touvron et al. 2023, Llama 2, arXiv:2307.09288, §3.2.2 Eq. 2)
# --------------------------------------------------------------------------------------------------------------------
def _as_vector(name: str, x: torch.Tensor) -> torch.Tensor:
    """``[B]`` or ``[B, 1]`` -> ``[B]``; anything else is an error (never let ``[B,1] - [B]`` broadcast to ``[B,B]``)."""
    if x.dim() == 2 and x.size(1) == 1:
        return x[:, 0]
    if x.dim() != 1:
        raise ValueError(f"{name} must have shape [B] or [B, 1], got {tuple(x.shape)}")
    return x


def margin_reward_loss(
    rewards_chosen: torch.Tensor,
    rewards_rejected: torch.Tensor,
    margin: torch.Tensor | None = None,
    center_coefficient: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Llama 2's binary ranking loss with a margin: ``L = -mean(log σ(r_c - r_r - m)) [+ c · mean((r_c + r_r)²)]``.

    Args:
        rewards_chosen, rewards_rejected: scalar rewards of the chosen / rejected sequences, ``[B]`` or ``[B, 1]``.
        margin: ``m(r)``, the preference-strength margin per pair (``[B]`` or ``[B, 1]``), or ``None`` for no margin.
        center_coefficient: ``c`` of the reward-centering term (``None`` or 0: off; ~0.01 in common use).

    Every input is reduced to ``[B]`` first and shapes must agree, so ``[B, 1]`` against ``[B]`` is never
    broadcast to ``[B, B]``. Computed in float32. With ``margin=None`` and no centering it is TRL's RewardTrainer loss.
    """
    rc = _as_vector("rewards_chosen", rewards_chosen).float()
    rr = _as_vector("rewards_rejected", rewards_rejected).float()
    _check_pair("rewards_chosen", rc, "rewards_rejected", rr)
    gap = rc - rr
    logits = gap
    if margin is not None:
        m = _as_vector("margin", margin).to(rc)
        if m.shape != rc.shape:
            raise ValueError(f"margin must have one value per pair ({rc.shape[0]}), got shape {tuple(margin.shape)}")
        logits = gap - m
    loss = -F.logsigmoid(logits).mean()
    metrics = {"ranking_loss": loss.detach()}
    if center_coefficient:
        center = center_coefficient * torch.mean((rc + rr) ** 2)
        loss = loss + center
        metrics["center_loss"] = center.detach()
    metrics.update(
        {
            "accuracy": (gap > 0).float().mean().detach(),
            "reward_gap": gap.mean().detach(),
        }
    )
    if margin is not None:
        metrics["margin_target"] = m.mean().detach()
        metrics["gap_above_margin"] = (logits > 0).float().mean().detach()
    return loss, metrics
