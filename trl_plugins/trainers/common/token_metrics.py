"""The per-step metrics TRL's preference trainers log — means of loss terms and log-probs, entropy, top-1 token
accuracy, token count — under TRL's names and reductions across processes; shared by ORPO, mDPO and kto-weighted."""

from __future__ import annotations


def log_means(trainer, mode: str, values: dict) -> None:
    """Append the mean over all processes of each tensor (a scalar or one value per row) to ``trainer._metrics``."""
    gather = trainer.accelerator.gather_for_metrics
    for key, value in values.items():
        trainer._metrics[mode][key].append(gather(value.detach().reshape(-1)).float().mean().item())


def log_entropy(trainer, mode: str, entropy, mask) -> None:
    """Mean token entropy over ``mask`` (``[rows, seq]``; the last ``seq`` positions of ``entropy``)."""
    gather = trainer.accelerator.gather_for_metrics
    total = gather((entropy[:, -mask.size(1):].detach() * mask).sum()).sum()
    tokens = gather(mask.sum()).sum()
    trainer._metrics[mode]["entropy"].append((total / tokens.clamp(min=1)).item())


def log_num_tokens(trainer, mode: str, attention_mask) -> None:
    """TRL's running ``num_tokens``: every attended token of every training batch, all processes."""
    if mode == "train":
        trainer._total_train_tokens += trainer.accelerator.gather_for_metrics(attention_mask.sum()).sum().item() // (
            trainer._tp_size)
    trainer._metrics[mode]["num_tokens"] = [trainer._total_train_tokens]


def log_token_stats(trainer, mode: str, outputs, mask, attention_mask, blocks: int) -> None:
    """Entropy over ``mask``, top-1 accuracy on the first of ``blocks`` row blocks (the chosen rows), num_tokens.

    ``outputs`` are :func:`~.token_logps.completion_token_logps` outputs (``entropy``/``is_top1`` may be None)."""
    gather = trainer.accelerator.gather_for_metrics
    mask = mask.bool()
    if outputs.entropy is not None:
        log_entropy(trainer, mode, outputs.entropy, mask)
    if outputs.is_top1 is not None:
        chosen_mask = mask.chunk(blocks, dim=0)[0]
        correct = (outputs.is_top1[:, -mask.size(1):].chunk(blocks, dim=0)[0] & chosen_mask).sum()
        trainer._metrics[mode]["mean_token_accuracy"].append(
            (gather(correct).sum() / gather(chosen_mask.sum()).sum().clamp(min=1)).item()
        )
    log_num_tokens(trainer, mode, attention_mask)
