"""mDPO — Conditional Preference Optimization for Multimodal LLMs (Wang et al. 2024, arXiv:2406.11839).

The algorithm: DPO on (image m, prompt x, chosen y_w, rejected y_l) plus two terms that make a vision-language model
actually look at the image. With ``r(y|m) = β·log π(y|m,x)/π_ref(y|m,x)`` and ``m'`` a CORRUPTED copy of the image
(``RandomResizedCrop`` back to the original size keeping 1-20% of the area),

    L = -log σ(r(y_w|m) - r(y_l|m))        standard DPO: prefer the chosen answer
        -log σ(r(y_w|m) - r(y_w|m'))       conditional preference: prefer the real image for the chosen answer
        -log σ(r(y_w|m) - δ)               anchored preference: keep the chosen reward above δ (0)

The loss is :func:`trl_plugins.losses.mdpo_loss`; the corruption is :func:`corrupt_image`.

How this departs from the paper's code (luka-group/mDPO, pinned to trl 0.7.2, Bunny/LLaVA-specific forwards):
- It subclasses TRL 1.16's ``DPOTrainer`` on its vision path (any ``AutoModelForImageTextToText`` with a processor;
  ``image`` or ``images`` column; standard or conversational prompts) and only replaces the collator and
  ``_compute_loss``. The collator :class:`DataCollatorForMDPO` emits rows ``[chosen | rejected | chosen with the
  corrupted image]`` so the policy and the reference each score the three sequences in ONE forward of ``3·B`` rows
  (the paper's code runs separate passes).
- Corruptions are seeded (``corruption_seed``, per batch and dataloader worker) and selectable: ``crop`` (the paper),
  ``blank`` (a black image), ``noise`` (uniform random pixels).
- The vision tower is frozen by default (``freeze_vision_tower``): excluded from LoRA targets, or ``requires_grad``
  off under full fine-tuning. Under LoRA/QLoRA the reference is the adapter-disabled base (TRL's behaviour).
- Weights of the three terms are knobs (``mdpo_weights``); ``(1, 0, 0)`` is exactly TRL's sigmoid DPO.

Run it::

    trl-plugins train mdpo --config recipes/demo/mdpo.yaml           # CPU: embedded tiny LLaVA + shapes images
    accelerate launch --config_file recipes/accelerate_configs/single_gpu.yaml -m trl_plugins \\
        train mdpo --config recipes/qwen2.5-vl-3b-instruct/mdpo/config_qlora.yaml
"""

from __future__ import annotations

import contextlib
import copy
import textwrap
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from accelerate.utils import is_peft_model
from PIL import Image
from trl import DPOConfig, DPOTrainer
from trl.data_utils import apply_chat_template, is_conversational, prepare_multimodal_messages
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.dpo_trainer import DataCollatorForVisionPreference
from trl.trainer.utils import flush_left, pad, selective_log_softmax, use_adapter

from ..losses import mdpo_loss
from .config_checks import refuse_unsupported
from .fused_head import completion_token_logps, use_fused_lm_head
from ..vision import CORRUPTIONS, VISION_MODULES, corrupt_image, open_image


# DPOConfig fields that do not fit mDPO's loss or its on-the-fly vision data: non-default values are refused.
_UNSUPPORTED = {
    "precompute_ref_log_probs": False,
    "loss_type": ["sigmoid"],
    "loss_weights": None,
    "ld_alpha": None,
    "f_divergence_type": "reverse_kl",
    "label_smoothing": 0.0,
    "use_weighting": False,
}


# --------------------------------------------------------------------------------------------------------------------
# collator
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class DataCollatorForMDPO(DataCollatorForVisionPreference):
    """TRL's vision preference collator with a third block: rows are ``[chosen | rejected | chosen-corrupted]``, each
    of ``B`` rows; the third block repeats the chosen text with every image corrupted by :func:`corrupt_image`.

    Corruptions are drawn from ``numpy.random.default_rng([seed, worker_id, batch_index])``: a run with the same
    seed and data order sees the same corrupted images, and dataloader workers never repeat each other's."""

    corruption: str = "crop"
    crop_scale: tuple[float, float] = (0.01, 0.2)
    seed: int = 0
    _calls: int = 0

    def corrupt(self, images: list[Image.Image], rng: np.random.Generator) -> list[Image.Image]:
        return [corrupt_image(image, self.corruption, rng, tuple(self.crop_scale)) for image in images]

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        if self.pad_to_multiple_of is not None:
            raise NotImplementedError("pad_to_multiple_of is not supported for vision-language data")
        worker = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, worker.id if worker else 0, self._calls])
        self._calls += 1
        examples = [dict(example) for example in examples]
        for example in examples:
            if "image" in example:
                example["images"] = [example.pop("image")]
            example["images"] = [open_image(image) for image in example["images"] or []]
        originals = [example["images"] for example in examples]
        corrupted = [self.corrupt(images, rng) for images in originals]
        images = originals * 2 + corrupted
        if all(not image_list for image_list in images):
            images = None
        if is_conversational(examples[0]):
            for example in examples:
                example["prompt"] = prepare_multimodal_messages(example["prompt"], images=example["images"])
                example["chosen"] = prepare_multimodal_messages(example["chosen"])
                example["rejected"] = prepare_multimodal_messages(example["rejected"])
            examples = [apply_chat_template(example, self.processor) for example in examples]

        prompts = [example["prompt"] for example in examples] * 3
        chosens = [example["chosen"] for example in examples]
        rejecteds = [example["rejected"] for example in examples]
        text_kwargs = dict(padding=True, padding_side="right", return_tensors=self.return_tensors,
                           add_special_tokens=False)
        processed_prompts = self.processor(images=images, text=prompts, padding=True, padding_side="left",
                                           return_tensors=self.return_tensors, add_special_tokens=False)
        processed_chosens = self.processor(text=chosens, **text_kwargs)
        processed_rejecteds = self.processor(text=rejecteds, **text_kwargs)

        prompt_ids, prompt_mask = processed_prompts["input_ids"], processed_prompts["attention_mask"]
        chosen_ids, chosen_mask = processed_chosens["input_ids"], processed_chosens["attention_mask"]
        rejected_ids, rejected_mask = processed_rejecteds["input_ids"], processed_rejecteds["attention_mask"]
        pad_token_id = self.processor.tokenizer.pad_token_id or self.processor.tokenizer.eos_token_id
        completion_ids = torch.cat(tuple(pad([chosen_ids, rejected_ids, chosen_ids], padding_value=pad_token_id)))
        completion_mask = torch.cat(tuple(pad([chosen_mask, rejected_mask, chosen_mask], padding_value=0)))
        input_ids = torch.cat((prompt_ids, completion_ids), dim=1)
        attention_mask = torch.cat((prompt_mask, completion_mask), dim=1)
        completion_mask = torch.cat((torch.zeros_like(prompt_mask), completion_mask), dim=1)
        extra = {}
        if "token_type_ids" in processed_prompts:  # Gemma
            types = [processed_chosens["token_type_ids"], processed_rejecteds["token_type_ids"],
                     processed_chosens["token_type_ids"]]
            extra["token_type_ids"] = torch.cat(
                (processed_prompts["token_type_ids"], torch.cat(tuple(pad(types, padding_value=0)))), dim=1
            )
        if "mm_token_type_ids" in processed_prompts:  # Qwen2.5-VL
            extra["mm_token_type_ids"] = torch.cat(
                (processed_prompts["mm_token_type_ids"], torch.zeros_like(completion_ids)), dim=1
            )
        names = list(extra)
        flushed = flush_left(attention_mask, input_ids, completion_mask, *extra.values())
        attention_mask, input_ids, completion_mask = flushed[:3]
        extra = dict(zip(names, flushed[3:]))
        if self.max_length is not None:
            input_ids, attention_mask, completion_mask = (
                t[:, : self.max_length] for t in (input_ids, attention_mask, completion_mask)
            )
            extra = {k: v[:, : self.max_length] for k, v in extra.items()}
        output = processed_prompts  # holds pixel_values (and image_grid_thw, ...) of all 3·B rows
        output.update(input_ids=input_ids, attention_mask=attention_mask, completion_mask=completion_mask, **extra)
        return output


# --------------------------------------------------------------------------------------------------------------------
# config and trainer
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class MDPOConfig(DPOConfig):
    r"""Configuration for :class:`MDPOTrainer`: every :class:`trl.DPOConfig` field, plus the mDPO knobs.

    Parameters:
        beta (`float`, defaults to `0.1`): the shared β of the three terms.
        mdpo_weights (`list[float]`, defaults to `[1.0, 1.0, 1.0]`): weights of the DPO, conditional and anchored
            terms; `[1, 0, 0]` is plain DPO.
        anchor (`float`, defaults to `0.0`): δ of the anchored term (reward units).
        corruption (`str`, defaults to `"crop"`): `crop` (RandomResizedCrop, the paper), `blank` or `noise`.
        crop_scale (`list[float]`, defaults to `[0.01, 0.2]`): area fraction kept by the `crop` corruption.
        corruption_seed (`int`, *optional*): seed of the corruptions; defaults to `seed`.
        freeze_vision_tower (`bool`, defaults to `True`): keep the vision encoder frozen (not a LoRA target; no
            gradients under full fine-tuning).
    """

    _unsupported_fields = tuple(_UNSUPPORTED)

    learning_rate: float = field(default=1e-6, metadata={"help": "The initial learning rate for AdamW (LoRA: ~1e-5 "
                                                         "to 2e-4; the paper uses 1e-5 with LoRA r 64)."})
    mdpo_weights: list[float] = field(
        default_factory=lambda: [1.0, 1.0, 1.0],
        metadata={"help": "Weights of the DPO, conditional (image) and anchored terms; [1, 0, 0] is plain DPO."},
    )
    anchor: float = field(default=0.0, metadata={"help": "δ of the anchored term: the chosen reward is pushed above it."})
    corruption: str = field(
        default="crop",
        metadata={"help": "How the image of the conditional term is corrupted: crop (paper), blank or noise.",
                  "choices": list(CORRUPTIONS)},
    )
    crop_scale: list[float] = field(
        default_factory=lambda: [0.01, 0.2],
        metadata={"help": "Range of the image area fraction the crop corruption keeps (resized back)."},
    )
    corruption_seed: int | None = field(default=None, metadata={"help": "Seed of the corruptions (default: seed)."})
    freeze_vision_tower: bool = field(
        default=True, metadata={"help": "Keep the vision encoder frozen (excluded from LoRA; no gradients otherwise)."}
    )
    fused_lm_head: bool | None = field(
        default=None,
        metadata={
            "help": "Score tokens with TRL's fused LM head (never materialises the [batch, seq, vocab] logits) instead "
            "of full logits. Default: fused where its Triton kernel runs (CUDA/XPU), full logits elsewhere (as ORPO; "
            "on a CPU the two measured within noise of each other for the demo model)."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        refuse_unsupported(self, _UNSUPPORTED, "mDPO")
        self.mdpo_weights = [float(w) for w in self.mdpo_weights]
        if len(self.mdpo_weights) != 3 or any(w < 0 for w in self.mdpo_weights):
            raise ValueError(f"`mdpo_weights` must be 3 non-negative numbers, got {self.mdpo_weights}")
        self.crop_scale = [float(s) for s in self.crop_scale]
        if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError(f"`crop_scale` must be [low, high] with 0 < low <= high <= 1, got {self.crop_scale}")
        if self.corruption not in CORRUPTIONS:
            raise ValueError(f"`corruption` must be one of {', '.join(CORRUPTIONS)}, got {self.corruption!r}")


def vision_module_names(model) -> list[str]:
    """Qualified names of the vision encoder(s) of a vision-language model."""
    return [name for name, _ in model.named_modules() if name.split(".")[-1] in VISION_MODULES]


class MDPOTrainer(DPOTrainer):
    """mDPO trainer: a :class:`trl.DPOTrainer` on vision data with the conditional and anchored terms.

        trainer = MDPOTrainer(model="llava-hf/llava-1.5-7b-hf", args=MDPOConfig(output_dir="out"),
                              train_dataset=dataset, peft_config=LoraConfig(r=64, lora_alpha=128))
    """

    _tag_names = ["trl", "mdpo", "trl-plugins"]
    _name = "mDPO"
    _paper = {
        "title": "mDPO: Conditional Preference Optimization for Multimodal Large Language Models",
        "id": "2406.11839",
        "citation": textwrap.dedent("""\
            @inproceedings{wang2024mdpo,
                title        = {{mDPO: Conditional Preference Optimization for Multimodal Large Language Models}},
                author       = {Fei Wang and Wenxuan Zhou and James Y. Huang and Nan Xu and Sheng Zhang and
                                Hoifung Poon and Muhao Chen},
                year         = 2024,
                booktitle    = {EMNLP},
                eprint       = {arXiv:2406.11839}
            }"""),
    }

    def __init__(self, model, ref_model=None, args: MDPOConfig | None = None, data_collator=None,
                 train_dataset=None, eval_dataset=None, processing_class=None, compute_metrics=None, callbacks=None,
                 optimizers=(None, None), quantization_config=None, peft_config=None):
        if args is None:
            name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "model")
            args = MDPOConfig(f"{str(name).rstrip('/').split('/')[-1]}-mDPO")
        elif not isinstance(args, MDPOConfig):
            raise TypeError(f"`args` must be an MDPOConfig, got {type(args).__name__}")
        if train_dataset is not None:
            sample = next(iter(train_dataset))
            if "image" not in sample and "images" not in sample:
                raise ValueError("mDPO needs images: the dataset has no 'image' or 'images' column")
        if args.freeze_vision_tower and peft_config is not None:
            peft_config = self._exclude_vision(peft_config)
        if (ref_model is None and peft_config is None and not isinstance(model, str) and not is_peft_model(model)
                and not getattr(model.config, "_name_or_path", "")):
            ref_model = copy.deepcopy(model).eval()  # built in memory: TRL could not reload it from a path
        super().__init__(model=model, ref_model=ref_model, args=args, data_collator=data_collator,
                         train_dataset=train_dataset, eval_dataset=eval_dataset, processing_class=processing_class,
                         compute_metrics=compute_metrics, callbacks=callbacks, optimizers=optimizers,
                         quantization_config=quantization_config, peft_config=peft_config)
        if not self._is_vlm:
            raise ValueError("mDPO needs a vision-language model and its processor (got a tokenizer)")
        if args.freeze_vision_tower and not is_peft_model(self.model):  # full fine-tuning: no vision gradients
            for name in vision_module_names(self.model):
                self.model.get_submodule(name).requires_grad_(False)
        if data_collator is None:
            self.data_collator = DataCollatorForMDPO(
                processor=self.processing_class,
                max_length=args.max_length,
                pad_to_multiple_of=args.pad_to_multiple_of,
                corruption=args.corruption,
                crop_scale=tuple(args.crop_scale),
                seed=args.seed if args.corruption_seed is None else args.corruption_seed,
            )

    @staticmethod
    def _exclude_vision(peft_config):
        """A copy of ``peft_config`` whose adapters skip every module inside the vision encoder."""
        peft_config = copy.deepcopy(peft_config)
        pattern = r".*\b(" + "|".join(VISION_MODULES) + r")\b.*"
        existing = getattr(peft_config, "exclude_modules", None)
        if existing is None:
            peft_config.exclude_modules = pattern
        elif isinstance(existing, str):
            peft_config.exclude_modules = f"(?:{existing})|(?:{pattern})"
        else:  # a list of module names: fold it into the regex
            names = "|".join(str(e) for e in existing)
            peft_config.exclude_modules = rf"(?:(?:.*\.)?(?:{names}))|(?:{pattern})"
        return peft_config

    @classmethod
    def check_run(cls, run) -> None:
        """Model-dependent input checks that read configs only (no weights): see :func:`check_vision_model`."""
        from ..vision import check_vision_model

        check_vision_model(run)

    def _reference_context(self):
        if self.ref_model is None and is_peft_model(self.model):
            unwrapped = self.accelerator.unwrap_model(self.model)
            return use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None)
        return contextlib.nullcontext()

    def _compute_loss(self, model, inputs, return_outputs):
        mode = "train" if self.model.training else "eval"
        model_kwargs = {k: v for k, v in inputs.items() if k != "completion_mask"}
        model_kwargs["use_cache"] = False
        if self.aux_loss_enabled:
            model_kwargs["output_router_logits"] = True
        completion_mask = inputs["completion_mask"]
        shift_completion_mask = completion_mask[..., 1:]
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)

        # One policy forward and one reference forward over [chosen | rejected | chosen with corrupted image].
        per_token_logps, outputs = self._per_token_logps(model, model_kwargs, labels)
        chosen, rejected, corrupted = per_token_logps.sum(dim=1).chunk(3, dim=0)
        ref_kwargs = {k: v for k, v in model_kwargs.items() if k != "output_router_logits"}
        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            with self._reference_context():
                reference = self.ref_model if self.ref_model is not None else self.model
                ref_per_token_logps, _ = self._per_token_logps(reference, ref_kwargs, labels, stats=False)
        ref_chosen, ref_rejected, ref_corrupted = ref_per_token_logps.sum(dim=1).chunk(3, dim=0)

        loss, metrics = mdpo_loss(chosen, rejected, corrupted, ref_chosen, ref_rejected, ref_corrupted,
                                  beta=self.beta, weights=tuple(self.args.mdpo_weights), anchor=self.args.anchor)
        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss
            metrics["aux_loss"] = outputs.aux_loss.detach()
        self._log_metrics(mode, metrics, chosen, rejected, corrupted, outputs, shift_completion_mask, inputs)
        if return_outputs:
            with torch.no_grad():
                outputs = model(**model_kwargs)
            return loss, outputs
        return loss

    def _use_fused_lm_head(self) -> bool:
        return use_fused_lm_head(self.args.fused_lm_head, self.accelerator.device)

    def _per_token_logps(self, model, model_kwargs, labels, stats: bool = True):
        return completion_token_logps(model, model_kwargs, labels, self._use_fused_lm_head(), stats)

    def _log_metrics(self, mode, metrics, chosen, rejected, corrupted, outputs, shift_mask, inputs):
        gather = self.accelerator.gather_for_metrics
        for key, value in metrics.items():
            self._metrics[mode][key].append(gather(value.reshape(1)).float().mean().item())
        for key, value in (("chosen", chosen), ("rejected", rejected), ("corrupted", corrupted)):
            self._metrics[mode][f"logps/{key}"].append(gather(value.detach()).float().mean().item())
        seq_len = shift_mask.size(1)
        chosen_mask = shift_mask.chunk(3, dim=0)[0].bool()
        if outputs.entropy is not None:
            entropy = (outputs.entropy[:, -seq_len:].detach() * shift_mask).sum()
            tokens = gather(shift_mask.sum()).sum()
            self._metrics[mode]["entropy"].append((gather(entropy).sum() / tokens.clamp(min=1)).item())
        if outputs.is_top1 is not None:
            correct = (outputs.is_top1[:, -seq_len:].chunk(3, dim=0)[0] & chosen_mask).sum()
            self._metrics[mode]["mean_token_accuracy"].append(
                (gather(correct).sum() / gather(chosen_mask.sum()).sum().clamp(min=1)).item()
            )
        if mode == "train":
            self._total_train_tokens += gather(inputs["attention_mask"].sum()).sum().item() // self._tp_size
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]


@torch.no_grad()
def image_conditional_margin(model, processor, dataset, corruption: str = "crop", crop_scale=(0.01, 0.2),
                             seed: int = 0, batch_size: int = 8, max_length: int | None = None) -> dict:
    """Held-out ``logp(chosen | image) - logp(chosen | corrupted image)`` (summed over the completion tokens), and
    the fraction of rows where it is positive; also ``logp(chosen) - logp(rejected)`` given the image.

    The corruptions are seeded, so calling it before and after training scores the same corrupted images."""
    collator = DataCollatorForMDPO(processor=processor, max_length=max_length, corruption=corruption,
                                   crop_scale=tuple(crop_scale), seed=seed)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    columns = [c for c in ("prompt", "chosen", "rejected", "image", "images") if c in dataset.column_names]
    dataset = dataset.select_columns(columns)
    margins, preferences = [], []
    for start in range(0, len(dataset), batch_size):
        batch = collator([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        mask = batch.pop("completion_mask")
        batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
        logits = model(**batch, use_cache=False).logits[:, :-1].float()
        targets = batch["input_ids"][:, 1:]
        token_logps = selective_log_softmax(logits, targets) * mask[:, 1:].to(device)
        chosen, rejected, corrupted = token_logps.sum(1).chunk(3)
        margins.append((chosen - corrupted).cpu())
        preferences.append((chosen - rejected).cpu())
    if was_training:
        model.train()
    margin, preference = torch.cat(margins), torch.cat(preferences)
    return {
        "image_margin": margin.mean().item(),
        "image_accuracy": (margin > 0).float().mean().item(),
        "preference_margin": preference.mean().item(),
        "preference_accuracy": (preference > 0).float().mean().item(),
        "n": len(margin),
    }
