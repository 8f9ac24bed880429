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
# mDPO (Wang et al. 2024, arXiv:2406.11839, Eq. 3-5): DPO + conditional (image) preference + anchored preference
# --------------------------------------------------------------------------------------------------------------------
def mdpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    policy_chosen_corrupted: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    ref_chosen_corrupted: torch.Tensor,
    beta: float = 0.1,
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
    anchor: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """mDPO: ``L = w_dpo·L_DPO + w_cond·L_CoPO + w_anc·L_AncPO``, each a ``-log σ(·)`` averaged over the batch.

    Args:
        policy_*, ref_*: ``[B]`` summed completion log-probs under the policy / reference model of the chosen response
            (given the image), the rejected response (given the image) and the chosen response given the CORRUPTED
            image (``c'``).
        beta: the shared β of the three terms.
        weights: ``(w_dpo, w_cond, w_anc)``; ``(1, 0, 0)`` is exactly TRL's ``loss_type="sigmoid"`` DPO loss.
        anchor: δ of the anchored term, in reward units (the paper's δ, 0 by default).

    Terms (``r(y|m) = β·(log π(y|m) - log π_ref(y|m))``):
        - DPO:         ``-log σ(β·[(π_c - π_r) - (ref_c - ref_r)])``;
        - conditional: ``-log σ(β·[(π_c - π_c') - (ref_c - ref_c')])``: the chosen answer must become more likely
          with the real image than with the corrupted one;
        - anchored:    ``-log σ(β·(π_c - ref_c) - δ)``: the chosen reward must stay above δ (stops both
          likelihoods from falling together).
    """
    tensors = {
        "policy_rejected": policy_rejected,
        "policy_chosen_corrupted": policy_chosen_corrupted,
        "ref_chosen": ref_chosen,
        "ref_rejected": ref_rejected,
        "ref_chosen_corrupted": ref_chosen_corrupted,
    }
    for name, tensor in tensors.items():
        _check_pair("policy_chosen", policy_chosen, name, tensor)
    if len(weights) != 3:
        raise ValueError(f"weights must be (w_dpo, w_conditional, w_anchor), got {weights!r}")
    chosen_logratios = policy_chosen - ref_chosen
    rejected_logratios = policy_rejected - ref_rejected
    corrupted_logratios = policy_chosen_corrupted - ref_chosen_corrupted
    dpo_logits = chosen_logratios - rejected_logratios
    conditional_logits = chosen_logratios - corrupted_logratios
    dpo_losses = -F.logsigmoid(beta * dpo_logits)
    conditional_losses = -F.logsigmoid(beta * conditional_logits)
    anchor_losses = -F.logsigmoid(beta * chosen_logratios - anchor)
    w_dpo, w_cond, w_anc = weights
    loss = dpo_losses.mean() * w_dpo
    if w_cond:
        loss = loss + w_cond * conditional_losses.mean()
    if w_anc:
        loss = loss + w_anc * anchor_losses.mean()
    chosen_rewards = beta * chosen_logratios.detach()
    rejected_rewards = beta * rejected_logratios.detach()
    corrupted_rewards = beta * corrupted_logratios.detach()
    metrics = {
        "loss/dpo": dpo_losses.mean().detach(),
        "loss/conditional": conditional_losses.mean().detach(),
        "loss/anchor": anchor_losses.mean().detach(),
        "rewards/chosen": chosen_rewards.mean(),
        "rewards/rejected": rejected_rewards.mean(),
        "rewards/corrupted": corrupted_rewards.mean(),
        "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean(),
        "rewards/margins": (chosen_rewards - rejected_rewards).mean(),
        "rewards/conditional_accuracies": (chosen_rewards > corrupted_rewards).float().mean(),
        "rewards/conditional_margins": (chosen_rewards - corrupted_rewards).mean(),
        "logps/image_conditional_margin": (policy_chosen - policy_chosen_corrupted).detach().mean(),
    }
    return loss, metrics
