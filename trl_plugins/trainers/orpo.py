"""ORPO (Hong et al. 2024): SFT plus an odds-ratio preference term, no reference model — a TRL ``DPOTrainer``.

What it adds over ``DPOTrainer``: the ORPO loss (:func:`trl_plugins.losses.orpo_loss`) in ``_compute_loss``; no
reference model is ever loaded, copied or evaluated (not even for PEFT); ``nll_on_prompt`` chooses the SFT term's
tokens. Docs: docs/methods/orpo.md.

    trl-plugins train orpo --config demo/orpo
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from trl import DPOTrainer

from ..checks.data import check_preference_pairs
from ..checks.lengths import dpo_rule
from ..losses import orpo_loss
from ..method import Method
from ..planning.memory_plan import MemoryProfile
from .common.configs import FusedHeadDPOConfig, refuse_unsupported, resolve_config
from .common.no_reference import NoReferenceModel
from .common.papers import ORPO
from .common.token_logps import CompletionScoring
from .common.token_metrics import log_means, log_token_stats

# DPOConfig fields that only make sense with a reference model or a DPO loss: ORPO refuses non-default values.
_UNSUPPORTED = {
    "precompute_ref_log_probs": False,
    "precompute_ref_batch_size": None,
    "loss_type": ["sigmoid"],
    "loss_weights": None,
    "ld_alpha": None,
    "f_divergence_type": "reverse_kl",
    "f_alpha_divergence_coef": 0.5,
    "label_smoothing": 0.0,
    "use_weighting": False,
    "discopop_tau": 0.05,
    "sync_ref_model": False,
    "ref_model_mixup_alpha": 0.6,
    "ref_model_sync_steps": 512,
}


@dataclass
class ORPOConfig(FusedHeadDPOConfig):
    """Every :class:`trl.DPOConfig` field plus the ORPO knobs; DPO's reference-model and loss-type fields are refused."""

    _unsupported_fields = tuple(_UNSUPPORTED)

    learning_rate: float = field(
        default=1e-6, metadata={"help": "The initial learning rate for AdamW (as TRL's experimental ORPOConfig; LoRA "
                                "wants ~1e-4 to 5e-4)."})
    beta: float = field(
        default=0.1,
        metadata={"help": "λ in the ORPO paper: weight of the odds-ratio term (0.1 Mistral, 0.2 Llama-2, 0.25 Phi-2)."},
    )
    nll_on_prompt: bool = field(
        default=True,
        metadata={
            "help": "Compute the NLL (SFT) term over prompt + completion tokens (the paper's code, TRL) instead of "
            "over the completion tokens only (LLaMA-Factory)."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        refuse_unsupported(self, _UNSUPPORTED, "ORPO has no reference model and no DPO loss")
        if self.beta < 0:
            raise ValueError(f"`beta` (λ) must be >= 0, got {self.beta}")


class ORPOTrainer(CompletionScoring, DPOTrainer):
    """ORPO trainer: a :class:`trl.DPOTrainer` with the ORPO loss and no reference model.

    Constructed exactly like TRL's trainers::

        trainer = ORPOTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", args=ORPOConfig(output_dir="out", beta=0.1),
                              train_dataset=dataset, peft_config=LoraConfig(...))
        trainer.train()
    """

    _tag_names = ["trl", "orpo", "trl-plugins"]
    _name = "ORPO"
    _paper = ORPO

    def __init__(self, model, args: ORPOConfig | None = None, *pos, ref_model=None, **kwargs):
        """As TRL's trainers, without ``ref_model``: ``args`` second, then DPOTrainer's arguments after its ``args``
        (``data_collator``, ``train_dataset``, ..., ``peft_config``), by position or by name."""
        if ref_model is not None:
            raise ValueError("ORPO is reference-free: do not pass `ref_model`")
        args = resolve_config(args, ORPOConfig, model, "ORPO")
        super().__init__(model, NoReferenceModel(), args, *pos, **kwargs)
        self.ref_model = None  # drop the placeholder: nothing below ever needs a reference

    def _nll_token_count(self, nll_tokens):
        """The NLL term's denominator: this batch's tokens, or under N processes the tokens of all N device batches
        divided by N — so that averaging the N devices' gradients and losses gives the token mean of the whole
        global batch, exactly what one process computes on it (not the mean of per-device token means)."""
        tokens = nll_tokens.sum()
        processes = self.accelerator.num_processes
        if processes > 1:
            tokens = self.accelerator.gather(tokens.detach().reshape(1)).sum() / processes
        return tokens.clamp(min=1)

    # DPOTrainer's reference paths must never run for ORPO.
    def compute_ref_log_probs(self, model, inputs):
        raise RuntimeError("ORPO is reference-free: reference log-probs are never computed")

    def _precompute_ref_logps(self, dataset, name, batch_size):
        raise RuntimeError("ORPO is reference-free: reference log-probs are never precomputed")

    def _compute_loss(self, model, inputs, return_outputs):
        mode = "train" if self.model.training else "eval"
        model_kwargs = {k: v for k, v in inputs.items() if k not in {"completion_mask"}}
        model_kwargs["use_cache"] = False
        if self.aux_loss_enabled:
            model_kwargs["output_router_logits"] = True
        input_ids, attention_mask = inputs["input_ids"], inputs["attention_mask"]
        completion_mask = inputs["completion_mask"]
        batch_size = input_ids.size(0) // 2  # rows are [chosen..., rejected...]

        # Score the completion tokens of every row, plus the prompt tokens of the chosen rows for the NLL term.
        scored = completion_mask.clone()
        if self.args.nll_on_prompt:
            scored[:batch_size] = attention_mask[:batch_size]
        labels = input_ids.masked_fill(scored == 0, -100)
        per_token_logps, outputs = self._per_token_logps(model, model_kwargs, labels)

        shift_completion = completion_mask[:, 1:].to(per_token_logps.dtype)
        completion_logps = (per_token_logps * shift_completion).sum(1) / shift_completion.sum(1).clamp(min=1)
        chosen_logps, rejected_logps = completion_logps.chunk(2, dim=0)
        nll_tokens = scored[:batch_size, 1:].to(per_token_logps.dtype)
        chosen_nll = -(per_token_logps[:batch_size] * nll_tokens).sum() / self._nll_token_count(nll_tokens)

        loss, metrics = orpo_loss(chosen_logps, rejected_logps, chosen_nll, self.beta)
        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss
            metrics["aux_loss"] = outputs.aux_loss.detach()
        log_means(self, mode, {**metrics, "logps/chosen": chosen_logps, "logps/rejected": rejected_logps})
        log_token_stats(self, mode, outputs, completion_mask[:, 1:], attention_mask, blocks=2)

        if return_outputs:
            with torch.no_grad():
                outputs = model(**{k: v for k, v in model_kwargs.items() if k != "output_router_logits"})
            return loss, outputs
        return loss


class ORPOMethod(Method):
    """ORPO's run hooks: pairwise data must hold some pair whose chosen differs from its rejected."""


    memory_profile = MemoryProfile(sequences_per_example=2, lm_head="fused")

    def length_rule(self, config):
        return dpo_rule(config)

    def check_data(self, dataset, split, config, role):
        return check_preference_pairs(dataset, split, config)
