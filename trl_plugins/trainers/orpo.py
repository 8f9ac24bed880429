"""ORPO — Monolithic Preference Optimization without Reference Model (Hong, Lee & Thorne 2024, arXiv:2403.07691).

The algorithm: one loss, no reference model. For a prompt x with a chosen y_w and a rejected y_l,

    L = NLL(y_w | x)  -  λ · log σ( log odds(y_w|x) - log odds(y_l|x) ),   odds(y|x) = P / (1 - P),

where P = exp(mean token log-prob of y). The NLL keeps the model a good generator of chosen answers (SFT), the
odds-ratio term pushes the chosen answer's odds above the rejected one's. λ is ``beta`` (0.1 Mistral, 0.2 Llama-2,
0.25 Phi-2 in the paper; TRL's default 0.1). The loss itself is :func:`trl_plugins.losses.orpo_loss`.

How this departs from the paper's code and TRL's experimental ``ORPOTrainer``:
- It subclasses TRL's stable ``DPOTrainer``, so it takes the same datasets (standard or conversational
  prompt/chosen/rejected, implicit prompts, tool calls), the same config fields and the same arguments
  (``peft_config``, ``quantization_config``, ``processing_class``, callbacks, ``report_to``, hub pushing).
  Log-probs come from DPOTrainer's fused LM head, which never materialises the ``[batch, seq, vocab]`` logits —
  the paper's code and TRL's experimental trainer build them in full (several GB for a 128k vocabulary).
- No reference model is loaded, copied or evaluated, ever: not for full fine-tuning, not for PEFT (TRL's
  DPOTrainer would load one, or copy a pre-trained adapter into a "ref" adapter).
- ``nll_on_prompt`` chooses the SFT term over prompt+completion (``True``, the paper's code and TRL's experimental
  trainer) or over the completion only (``False``, LLaMA-Factory and the paper's ``--disable_prompt_loss``).

Run it::

    trl-plugins train orpo --config recipes/demo/orpo.yaml                      # CPU, embedded model and data
    accelerate launch --config_file recipes/accelerate_configs/single_gpu.yaml -m trl_plugins \\
        train orpo --config recipes/qwen2.5-1.5b-instruct/orpo/config_qlora.yaml
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

import torch
from transformers import PretrainedConfig
from trl import DPOConfig, DPOTrainer

from ..losses import orpo_loss
from .config_checks import refuse_unsupported
from .fused_head import completion_token_logps, use_fused_lm_head

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
class ORPOConfig(DPOConfig):
    r"""Configuration for :class:`ORPOTrainer`: every :class:`trl.DPOConfig` field, plus the ORPO knobs.

    Parameters:
        beta (`float`, defaults to `0.1`): λ, the weight of the odds-ratio term (the paper's λ, xfactlab's `alpha`).
        nll_on_prompt (`bool`, defaults to `True`): compute the NLL term over prompt + completion (paper code, TRL)
            or over the completion only (`False`).
        learning_rate (`float`, defaults to `1e-6`): as TRL's experimental ORPOConfig; LoRA wants ~1e-4 to 5e-4.

    DPO's reference-model and loss-type fields (`precompute_ref_log_probs`, `sync_ref_model`, `loss_type`, ...)
    do not apply: setting them is an error.
    """

    _unsupported_fields = tuple(_UNSUPPORTED)

    learning_rate: float = field(default=1e-6, metadata={"help": "The initial learning rate for AdamW."})
    beta: float = field(
        default=0.1,
        metadata={"help": "λ in the ORPO paper: weight of the odds-ratio term (0.1 Mistral, 0.2 Llama-2, 0.25 Phi-2)."},
    )
    fused_lm_head: bool | None = field(
        default=None,
        metadata={
            "help": "Score tokens with TRL's fused LM head (never materialises the [batch, seq, vocab] logits) instead "
            "of full logits. Default: fused where its Triton kernel runs (CUDA/XPU), full logits elsewhere (on a CPU "
            "the fused head's fallback is about 2.5x slower than full logits)."
        },
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


class _NoReferenceModel(torch.nn.Module):
    """Stands where DPOTrainer expects a reference model so that it never loads one. Holds no weights but a single
    anchor scalar (so distributed wrappers have a parameter to place); calling it is a bug."""

    def __init__(self):
        super().__init__()
        self.config = PretrainedConfig()
        self.anchor = torch.nn.Parameter(torch.zeros(1), requires_grad=False)

    def forward(self, *args, **kwargs):
        raise RuntimeError("ORPO is reference-free: the reference model must never be called")


class ORPOTrainer(DPOTrainer):
    """ORPO trainer: a :class:`trl.DPOTrainer` with the ORPO loss and no reference model.

    Constructed exactly like TRL's trainers::

        trainer = ORPOTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", args=ORPOConfig(output_dir="out", beta=0.1),
                              train_dataset=dataset, peft_config=LoraConfig(...))
        trainer.train()
    """

    _tag_names = ["trl", "orpo", "trl-plugins"]
    _name = "ORPO"
    _paper = {
        "title": "ORPO: Monolithic Preference Optimization without Reference Model",
        "id": "2403.07691",
        "citation": textwrap.dedent("""\
            @article{hong2024orpo,
                title        = {{ORPO: Monolithic Preference Optimization without Reference Model}},
                author       = {Jiwoo Hong and Noah Lee and James Thorne},
                year         = 2024,
                eprint       = {arXiv:2403.07691}
            }"""),
    }

    def __init__(
        self,
        model,
        args: ORPOConfig | None = None,
        data_collator=None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        compute_metrics=None,
        callbacks=None,
        optimizers=(None, None),
        quantization_config=None,
        peft_config=None,
        ref_model=None,
    ):
        if ref_model is not None:
            raise ValueError("ORPO is reference-free: do not pass `ref_model`")
        if args is None:
            name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "model")
            args = ORPOConfig(f"{str(name).rstrip('/').split('/')[-1]}-ORPO")
        elif not isinstance(args, ORPOConfig):
            raise TypeError(f"`args` must be an ORPOConfig, got {type(args).__name__}")
        super().__init__(
            model=model,
            ref_model=_NoReferenceModel(),
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            compute_metrics=compute_metrics,
            callbacks=callbacks,
            optimizers=optimizers,
            quantization_config=quantization_config,
            peft_config=peft_config,
        )
        self.ref_model = None  # drop the placeholder: nothing below ever needs a reference

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
        chosen_nll = -(per_token_logps[:batch_size] * nll_tokens).sum() / nll_tokens.sum().clamp(min=1)

        loss, metrics = orpo_loss(chosen_logps, rejected_logps, chosen_nll, self.beta)
        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss
            metrics["aux_loss"] = outputs.aux_loss.detach()
        self._log_orpo_metrics(mode, metrics, chosen_logps, rejected_logps, outputs, completion_mask, attention_mask)

        if return_outputs:
            with torch.no_grad():
                outputs = model(**{k: v for k, v in model_kwargs.items() if k != "output_router_logits"})
            return loss, outputs
        return loss

    def _use_fused_lm_head(self) -> bool:
        return use_fused_lm_head(self.args.fused_lm_head, self.accelerator.device)

    def _per_token_logps(self, model, model_kwargs, labels):
        return completion_token_logps(model, model_kwargs, labels, self._use_fused_lm_head())

    def _log_orpo_metrics(self, mode, metrics, chosen_logps, rejected_logps, outputs, completion_mask, attention_mask):
        gather = self.accelerator.gather_for_metrics
        for key, value in metrics.items():
            self._metrics[mode][key].append(gather(value.reshape(1)).float().mean().item())
        self._metrics[mode]["logps/chosen"].append(gather(chosen_logps.detach()).mean().item())
        self._metrics[mode]["logps/rejected"].append(gather(rejected_logps.detach()).mean().item())
        mask = completion_mask[:, 1:].bool()
        seq_len = mask.size(1)
        if outputs.entropy is not None:
            entropy = (outputs.entropy[:, -seq_len:].detach() * mask).sum()
            tokens = gather(mask.sum()).sum()
            self._metrics[mode]["entropy"].append((gather(entropy).sum() / tokens.clamp(min=1)).item())
        if outputs.is_top1 is not None:
            chosen_mask = mask.chunk(2, dim=0)[0]
            correct = (outputs.is_top1[:, -seq_len:].chunk(2, dim=0)[0] & chosen_mask).sum()
            self._metrics[mode]["mean_token_accuracy"].append(
                (gather(correct).sum() / gather(chosen_mask.sum()).sum().clamp(min=1)).item()
            )
        if mode == "train":
            self._total_train_tokens += gather(attention_mask.sum()).sum().item() // self._tp_size
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
