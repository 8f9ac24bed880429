"""What stands where ``DPOTrainer`` expects a reference model when none may be loaded: ORPO (reference-free) and
iterative-dpo (whose reference log-probs are computed per phase by the policy itself, trainers/iterative_dpo.py)."""

from __future__ import annotations

import torch
from transformers import PretrainedConfig


class NoReferenceModel(torch.nn.Module):
    """Passed as ``ref_model`` so that DPOTrainer never loads or copies one. Holds no weights but a single anchor
    scalar (so distributed wrappers have a parameter to place); calling it is a bug."""

    def __init__(self):
        super().__init__()
        self.config = PretrainedConfig()
        self.anchor = torch.nn.Parameter(torch.zeros(1), requires_grad=False)

    def forward(self, *args, **kwargs):
        raise RuntimeError("no reference model is held here: the reference model must never be called")
