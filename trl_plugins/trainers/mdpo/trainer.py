"""mDPO (Wang et al. 2024): DPO plus an image-conditional and an anchored preference term — a TRL ``DPOTrainer``.

What it adds over ``DPOTrainer`` on its vision path: the collator :class:`~.mdpo_collator.DataCollatorForMDPO` adds
the chosen answer given a corrupted image, so policy and reference each score ``[chosen | rejected | corrupted]`` in
one forward; ``_compute_loss`` is :func:`trl_plugins.losses.mdpo_loss`; the vision tower stays frozen. Docs:
docs/methods/mdpo.md.

    trl-plugins train mdpo --config demo/mdpo
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field

import torch
from accelerate.utils import is_peft_model
from trl import DPOTrainer
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import use_adapter

from ...checks.lengths import mdpo_rule
from ...losses import mdpo_loss
from ...method import Method
from ...models.vision import CORRUPTIONS, VISION_MODULES, check_vision_data, check_vision_model
from ...planning.memory_plan import MemoryProfile
from ..common.configs import FusedHeadDPOConfig, refuse_unsupported, resolve_config
from ..common.papers import MDPO
from ..common.token_logps import CompletionScoring
from ..common.token_metrics import log_means, log_token_stats
from .collator import DataCollatorForMDPO

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


@dataclass
class MDPOConfig(FusedHeadDPOConfig):
    """Every :class:`trl.DPOConfig` field plus the mDPO knobs; fields that do not fit its loss are refused."""

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


class MDPOTrainer(CompletionScoring, DPOTrainer):
    """mDPO trainer: a :class:`trl.DPOTrainer` on vision data with the conditional and anchored terms.

        trainer = MDPOTrainer(model="llava-hf/llava-1.5-7b-hf", args=MDPOConfig(output_dir="out"),
                              train_dataset=dataset, peft_config=LoraConfig(r=64, lora_alpha=128))
    """

    _tag_names = ["trl", "mdpo", "trl-plugins"]
    _name = "mDPO"
    _paper = MDPO

    def __init__(self, model, ref_model=None, args: MDPOConfig | None = None, data_collator=None,
                 train_dataset=None, eval_dataset=None, processing_class=None, compute_metrics=None, callbacks=None,
                 optimizers=(None, None), quantization_config=None, peft_config=None):
        args = resolve_config(args, MDPOConfig, model, "mDPO")
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
        log_means(self, mode, {**metrics, "logps/chosen": chosen, "logps/rejected": rejected,
                               "logps/corrupted": corrupted})
        log_token_stats(self, mode, outputs, shift_completion_mask, inputs["attention_mask"], blocks=3)
        if return_outputs:
            with torch.no_grad():
                outputs = model(**model_kwargs)
            return loss, outputs
        return loss



class MDPOMethod(Method):
    """mDPO's run hooks: every row has readable images; the model is vision-language and standard prompts carry its
    image placeholder once per image (read from its config and processor files, never its weights)."""


    memory_profile = MemoryProfile(sequences_per_example=3, reference_forward=True, lm_head="fused", images=True)

    def length_rule(self, config):
        return mdpo_rule(config)

    def check_data(self, dataset, split, config, role):
        return check_vision_data(dataset, split, config)

    def check_run(self, run):
        check_vision_model(run)
