"""Per-token log-probs of completion tokens — with TRL's fused LM head or from full logits — and the rule for when to
fuse; shared by the DPOTrainer-based trainers (ORPO, mDPO). The measured CPU cost of each: docs/methods/orpo.md."""

from __future__ import annotations


def use_fused_lm_head(setting: bool | None, device) -> bool:
    """``setting`` if the user chose; otherwise fused only where its Triton kernel runs (CUDA/XPU)."""
    if setting is not None:
        return setting
    try:
        from trl.kernels.chunked_logprob import _use_triton
    except ImportError:  # private helper moved: fall back to its rule
        return device.type in ("cuda", "xpu")
    return _use_triton(device)


def completion_token_logps(model, model_kwargs: dict, labels, fused: bool, stats: bool = True):
    """Log-prob of every next token whose label is not -100 (0 elsewhere), shape ``[rows, seq - 1]``.

    Returns ``(per_token_logps, outputs)``. ``fused``: TRL's fused LM head computes them without materializing the
    logits (its ``outputs`` carry ``entropy``/``is_top1``); otherwise from full logits, freed right after, with
    ``outputs.is_top1`` (the label is the argmax) when ``stats``."""
    from trl.trainer.utils import selective_log_softmax

    seq_len = labels.size(1) - 1
    if fused:
        outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
        return outputs.log_probs[:, -seq_len:], outputs  # prompt-learning PEFT prepends virtual tokens
    outputs = model(**model_kwargs)
    logits = outputs.logits[:, -seq_len - 1 : -1]
    shift_labels = labels[:, 1:]
    mask = shift_labels != -100
    logps = selective_log_softmax(logits, shift_labels.clamp(min=0)) * mask
    outputs.log_probs, outputs.entropy = logps, None
    outputs.is_top1 = (logits.detach().argmax(-1) == shift_labels) & mask if stats else None
    outputs.logits = None  # free the full logits early
    return logps, outputs


class CompletionScoring:
    """Mixin of the DPOTrainer-based trainers: ``_per_token_logps`` with the ``fused_lm_head`` rule of their config."""

    def _per_token_logps(self, model, model_kwargs: dict, labels, stats: bool = True):
        fused = use_fused_lm_head(self.args.fused_lm_head, self.accelerator.device)
        return completion_token_logps(model, model_kwargs, labels, fused, stats)
