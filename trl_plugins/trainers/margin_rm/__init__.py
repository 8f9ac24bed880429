"""margin-rm: a reward model with Llama 2's margin loss (docs/methods/margin_rm.md). The config, trainer and method
live in `trainer.py`; data checks, rating labels and the pairwise report beside it."""

from .trainer import MarginRewardConfig, MarginRewardMethod, MarginRewardTrainer

__all__ = ["MarginRewardConfig", "MarginRewardMethod", "MarginRewardTrainer"]
