"""kto-weighted: KTO with class weights from the label counts (docs/methods/kto_weighted.md). The config, trainer
and method live in `trainer.py`; batching, data checks and metrics beside it."""

from .trainer import KTOWeightedConfig, KTOWeightedMethod, KTOWeightedTrainer, KTOWeightWarning

__all__ = ["KTOWeightWarning", "KTOWeightedConfig", "KTOWeightedMethod", "KTOWeightedTrainer"]
