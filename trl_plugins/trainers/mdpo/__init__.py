"""mdpo: DPO with image-conditional and anchored terms for vision-language models (docs/methods/mdpo.md). The
config, trainer and method live in `trainer.py`; the collator beside it."""

from .trainer import MDPOConfig, MDPOMethod, MDPOTrainer

__all__ = ["MDPOConfig", "MDPOMethod", "MDPOTrainer"]
