"""Iterative DPO (Xiong et al. 2024; Dong et al. 2024, RLHFlow) and IRPO (Pang et al. 2024) — a TRL ``DPOTrainer``
on the sampling engine: sample K completions per prompt from the current policy, score them, pair them (best vs worst,
all pairs over a reward gap, correct vs incorrect, a judge's comparisons in both orders — RLAIF —, or SPIN's reference
answer vs the policy's sample), run DPOTrainer's own step loop on the pairs, repeat. Docs for the last two:
docs/methods/judges.md, docs/methods/spin.md.

Every DPOConfig option applies to each phase (any ``loss_type``; IRPO's NLL term is ``loss_type: [sigmoid, sft]``,
``loss_weights: [1.0, 1.0]`` — TRL 1.16 has no ``rpo_alpha``). The reference log-probs are computed once per phase,
before its first step, by the policy at the iteration's start (``reference: previous``) or by the initial weights
(``initial``; with LoRA: the adapter off) — no second model is ever held. Docs: docs/methods/iterative_dpo.md.

    trl-plugins train iterative-dpo --config demo/iterative_dpo
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from accelerate.utils import is_peft_model
from trl import DPOConfig, DPOTrainer

from ..sampling.config import SamplingOptions
from ..sampling.preference import PairOptions, PreferenceEngine
from .common.configs import refuse_unsupported
from .common.no_reference import NoReferenceModel
from .common.papers import ITERATIVE_DPO

# DPOConfig fields about a reference model that the per-iteration reference replaces.
_UNSUPPORTED = {"precompute_ref_log_probs": False, "sync_ref_model": False}


@dataclass
class IterativeDPOConfig(PairOptions, SamplingOptions, DPOConfig):
    """Every :class:`trl.DPOConfig` field (they apply to each phase), the sampling loop's knobs and the pair rule."""

    reference: str = field(
        default="previous",
        metadata={"help": "DPO's reference in each iteration: previous (the policy at the iteration's start, as IRPO "
                  "and Xiong et al.) or initial (the starting weights; with LoRA the adapter switched off). Its "
                  "log-probs are computed once per phase, before the first step.",
                  "choices": ["previous", "initial"]},
    )
    num_generations: int = field(default=8, metadata={"help": "K: completions sampled per prompt (RLHFlow: 8)."})

    def __post_init__(self):
        super().__post_init__()
        if self.reference not in ("previous", "initial"):
            raise ValueError(f"reference must be 'previous' or 'initial', got {self.reference!r}")
        refuse_unsupported(self, _UNSUPPORTED, "iterative-dpo computes its reference log-probs once per phase "
                           "(see `reference`)")


class IterativeDPOTrainer(PreferenceEngine, DPOTrainer):
    """Iterative DPO / IRPO: generate, score, pair, DPOTrainer's loop on the pairs, repeat. Built like the sampling
    trainers on prompt-only data."""

    _tag_names = ["trl", "dpo", "trl-plugins", "iterative-dpo"]
    _name = "Iterative DPO"
    _paper = ITERATIVE_DPO

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ref_model = None  # the placeholder kept DPOTrainer from loading a second model
        self.precompute_ref_logps = True  # _compute_loss reads each phase's reference log-probs from the batch
        self._initial_weights = None

    def _parent_kwargs(self) -> dict:
        return {"ref_model": NoReferenceModel()}

    def _start(self, resume: bool) -> list[int]:
        # the starting weights, before a resumed run loads its policy (a full model's `initial` reference)
        model = self.accelerator.unwrap_model(self.model)
        if self.args.reference == "initial" and not is_peft_model(model) and self._initial_weights is None:
            self._initial_weights = self.trainable_snapshot()
        return super()._start(resume)

    @contextlib.contextmanager
    def _reference_weights(self, model):
        """The model as the reference: unchanged (``previous``); for ``initial`` the starting weights loaded for the
        duration (full model), or TRL's own rule, the adapter off (LoRA: ``ref_model`` stays ``None``)."""
        if self.args.reference == "previous":
            self.ref_model = model  # not None: compute_ref_log_probs keeps the adapter on
            try:
                yield
            finally:
                self.ref_model = None
        elif self._initial_weights is not None:
            with self.weights_swapped(self._initial_weights):
                yield
        else:
            yield

    def starting_weights(self):
        """``reference: initial`` on a full model holds the starting weights: π₀ of the held-out monitors too."""
        return self._initial_weights if self._initial_weights is not None else super().starting_weights()

    def with_reference(self, dataset, name):
        """``ref_chosen_logps`` / ``ref_rejected_logps`` columns by DPOTrainer's ``compute_ref_log_probs``, batches of
        ``precompute_ref_batch_size`` (default the training batch size) shared out over the processes."""
        size = self.args.precompute_ref_batch_size or self.args.per_device_train_batch_size
        device = self.accelerator.device
        model = self.accelerator.unwrap_model(self.model)

        def work(starts):
            out = []
            for a in starts:
                batch = self.data_collator([dataset[i] for i in range(a, min(a + size, len(dataset)))])
                batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
                chosen, rejected = self.compute_ref_log_probs(model, batch)
                out.append((chosen.float().cpu().tolist(), rejected.float().cpu().tolist()))
            return out

        training = model.training
        model.eval()
        try:
            with self._reference_weights(model):
                results = self.shards.map(list(range(0, len(dataset), size)), work)
        finally:
            model.train(training)
        dataset = dataset.add_column("ref_chosen_logps", [v for chosen, _ in results for v in chosen])
        return dataset.add_column("ref_rejected_logps", [v for _, rejected in results for v in rejected])
