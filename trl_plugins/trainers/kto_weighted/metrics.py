"""kto-weighted's per-step metrics: TRL's KTOTrainer metrics under TRL's names and cross-process reductions (its
``_compute_loss`` logs them inline, so the weighted loss has to log them itself), plus z_ref, class counts and
effective weights."""

from __future__ import annotations

import torch

from ..common.token_metrics import log_entropy, log_num_tokens


def log_kto_metrics(trainer, mode, batch, outputs, labels, policy_logps, ref_logps, kl, seq_len) -> None:
    """``kl``, ``entropy``, ``num_tokens``, ``logits/*``, ``rewards/*``, ``logps/*``, ``rewards/margins`` as TRL."""
    gather = trainer.accelerator.gather_for_metrics
    metrics = trainer._metrics[mode]
    metrics["kl"].append(kl.item())
    mask = batch["completion_mask"][:, 1:]
    if getattr(outputs, "entropy", None) is not None:
        log_entropy(trainer, mode, outputs.entropy[:, -seq_len:], mask)
    log_num_tokens(trainer, mode, batch["attention_mask"])
    mean_logits = getattr(outputs, "mean_logits", None)
    rewards = trainer.beta * (policy_logps - ref_logps).detach()
    means = {}
    for name, rows in (("chosen", labels), ("rejected", ~labels)):
        if mean_logits is not None:
            row_mask = mask[rows].bool()
            total = gather(mean_logits[:, -seq_len:][rows][row_mask].sum()).sum().item()
            count = gather(row_mask.sum()).sum().item()
            if count > 0:
                metrics[f"logits/{name}"].append(total / count)
        n = gather(rows.sum()).sum().item()
        if n > 0:
            means[name] = gather(rewards[rows].nansum()).nansum().item() / n
            metrics[f"rewards/{name}"].append(means[name])
            metrics[f"logps/{name}"].append(gather(policy_logps.detach()[rows].nansum()).nansum().item() / n)
    if len(means) == 2:
        metrics["rewards/margins"].append(means["chosen"] - means["rejected"])


def log_weighting(trainer, mode, labels, z_ref, example_weights) -> None:
    """z_ref, per-class row counts and effective weights of this batch (all processes)."""
    gather = trainer.accelerator.gather_for_metrics
    device = trainer.accelerator.device
    labels = torch.as_tensor(labels, dtype=torch.bool, device=device)
    metrics = trainer._metrics[mode]
    metrics["z_ref"].append(float(z_ref))
    for name, rows, weight in (
        ("desirable", labels, trainer.desirable_weight),
        ("undesirable", ~labels, trainer.undesirable_weight),
    ):
        count = gather(rows.sum()).sum().item()
        metrics[f"count/{name}"].append(count)
        if example_weights is None:
            metrics[f"weights/{name}"].append(float(weight))
        elif count > 0:
            total = gather(example_weights.to(device)[rows].sum()).sum().item()
            metrics[f"weights/{name}"].append(float(weight) * total / count)
