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


# --------------------------------------------------------------------------------------------------------------------
# KTO with class-imbalance weighting (Ethayarajh et al. 2024, arXiv:2402.01306, Eq. 7-8)
# --------------------------------------------------------------------------------------------------------------------
KTO_TARGET_RATIO_RANGE = (1.0, 4.0 / 3.0)


def kto_weights(n_desirable: int, n_undesirable: int, target_ratio: float = 1.0) -> tuple[float, float]:
    """Class weights ``(λ_D, λ_U)`` for KTO so that ``λ_D·n_D / (λ_U·n_U) = target_ratio`` (paper Eq. 8).

    Only the rarer class is up-weighted; the other keeps weight 1 and no weight is ever below 1:

    - desirable rarer, or a tie: ``λ_U = 1``, ``λ_D = target_ratio · n_U / n_D``;
    - undesirable rarer by at least ``target_ratio``: ``λ_D = 1``, ``λ_U = n_D / (target_ratio · n_U)``;
    - undesirable rarer by less than ``target_ratio`` (``1 < n_D/n_U < target_ratio``): both 1. Reaching the target
      would mean up-weighting the majority or down-weighting the minority; the ratio ``n_D/n_U`` already lies in the
      paper's range ``[1, 4/3]``.

    ``target_ratio`` must lie in ``[1, 4/3]`` (the paper's range); both counts must be positive.
    """
    low, high = KTO_TARGET_RATIO_RANGE
    if not (low <= target_ratio <= high + 1e-12):
        raise ValueError(f"target_ratio must be in [1, 4/3] (paper Eq. 8), got {target_ratio}")
    for name, n in (("n_desirable", n_desirable), ("n_undesirable", n_undesirable)):
        if isinstance(n, bool) or int(n) != n or n < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {n!r}")
    if n_desirable == 0 or n_undesirable == 0:
        raise ValueError(
            f"KTO class weights need both classes: got {n_desirable} desirable and {n_undesirable} undesirable examples"
        )
    if n_desirable <= n_undesirable:
        return target_ratio * n_undesirable / n_desirable, 1.0
    if n_desirable >= target_ratio * n_undesirable:
        return 1.0, n_desirable / (target_ratio * n_undesirable)
    return 1.0, 1.0


def kto_weight_ratio(desirable_weight: float, undesirable_weight: float, n_desirable: int, n_undesirable: int) -> float:
    """``λ_D·n_D / (λ_U·n_U)``, the quantity paper Eq. 8 asks to keep in ``[1, 4/3]``."""
    return desirable_weight * n_desirable / (undesirable_weight * n_undesirable)


def kto_weighted_loss(
    policy_logps: torch.Tensor,
    reference_logps: torch.Tensor,
    labels: torch.Tensor,
    kl: torch.Tensor | float,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
    example_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """KTO: ``L = mean_i[ w_i · λ(y_i) · (1 - v_i) ]`` (paper Eq. 7, TRL's ``loss_type="kto"``).

    Args:
        policy_logps, reference_logps: ``[B]`` summed log-probabilities ``log π(y|x)`` of the completions under the
            policy and the reference model; ``r_i = policy - reference`` is the log-ratio.
        labels: ``[B]`` booleans, ``True`` = desirable.
        kl: the reference point ``z_0``: a detached, non-negative estimate of ``KL(π‖π_ref)`` (TRL's ``kl``, from
            mismatched pairs). ``0`` gives TRL's ``apo_zero_unpaired`` loss.
        beta: β. The value is ``v = σ(β(r - z_0))`` for desirable and ``σ(β(z_0 - r))`` for undesirable rows.
        desirable_weight, undesirable_weight: λ_D, λ_U.
        example_weights: optional ``[B]`` non-negative per-example weights multiplying λ(y).

    The mean runs over the whole batch (both classes), ignoring NaNs, as TRL's ``losses.nanmean()``. Metrics:
    ``z_ref = β·z_0`` (the reference point in reward units), the mean implicit reward ``β·r`` and the mean
    effective weight of each class (NaN when the class is absent from the batch).
    """
    _check_pair("policy_logps", policy_logps, "reference_logps", reference_logps)
    if labels.shape != policy_logps.shape:
        raise ValueError(f"labels must have shape {tuple(policy_logps.shape)}, got {tuple(labels.shape)}")
    if example_weights is not None and example_weights.shape != policy_logps.shape:
        raise ValueError(
            f"example_weights must have shape {tuple(policy_logps.shape)}, got {tuple(example_weights.shape)}"
        )
    labels = labels.to(device=policy_logps.device, dtype=torch.bool)
    logratios = policy_logps - reference_logps
    kl = torch.as_tensor(kl, dtype=logratios.dtype, device=logratios.device).detach()
    value = torch.where(labels, torch.sigmoid(beta * (logratios - kl)), torch.sigmoid(beta * (kl - logratios)))
    weights = torch.where(
        labels,
        torch.as_tensor(desirable_weight, dtype=logratios.dtype, device=logratios.device),
        torch.as_tensor(undesirable_weight, dtype=logratios.dtype, device=logratios.device),
    )
    if example_weights is not None:
        weights = weights * example_weights.to(device=logratios.device, dtype=logratios.dtype)
    losses = weights * (1 - value)
    loss = losses.nanmean()
    rewards = beta * logratios.detach()
    nan = torch.tensor(float("nan"), device=logratios.device)

    def mean_where(x, mask):
        return x[mask].mean() if mask.any() else nan

    metrics = {
        "z_ref": beta * kl,
        "rewards/chosen": mean_where(rewards, labels),
        "rewards/rejected": mean_where(rewards, ~labels),
        "weights/desirable": mean_where(weights.detach(), labels),
        "weights/undesirable": mean_where(weights.detach(), ~labels),
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
