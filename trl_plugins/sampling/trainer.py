"""The select -> SFT update of the sampling engine — a TRL ``SFTTrainer``: the base class of rejection-sampling, RAFT,
ReST and ReST-EM.

Each iteration's scored samples go through the subclass's selection rule (``select``, a pure rule of
``selection.py``), and the selected ``(prompt, completion)`` rows are fine-tuned on with SFTTrainer's own loop (a fresh
optimizer and schedule per phase). Generation, scoring, held-out evaluation, files, resume and sharding are
:class:`~trl_plugins.sampling.engine.SamplingEngine`'s. Docs: docs/methods/sampling_engine.md.
"""

from __future__ import annotations

import logging

from trl import SFTTrainer

from ..formats import TEMPLATE_COLUMNS
from .config import SamplingConfig
from .engine import SamplingEngine
from .records import Sample, mark_selected

logger = logging.getLogger(__name__)


class SamplingTrainer(SamplingEngine, SFTTrainer):
    """Base class of the sampling trainers; see the module docstring. Built like an SFTTrainer on prompt-only data;
    ``rewards``/``heldout_rewards`` are resolved ``reward_funcs``/``heldout_reward_funcs`` entries (resolved from
    ``args`` when not given)."""

    _tag_names = ["trl", "sft", "trl-plugins", "sampling"]

    def __init__(self, model, args: SamplingConfig, train_dataset, processing_class=None, peft_config=None,
                 heldout_dataset=None, callbacks=None, rewards=None, heldout_rewards=None, **kwargs):
        if not isinstance(args, SamplingConfig):
            raise TypeError(f"`args` must be a SamplingConfig subclass, got {type(args).__name__}")
        from datasets import IterableDataset

        if isinstance(train_dataset, IterableDataset):
            from .method import STREAMING_REFUSED

            raise ValueError(STREAMING_REFUSED)
        if "prompt" not in train_dataset.column_names:
            raise ValueError("the sampling trainers need a 'prompt' column")
        super().__init__(model=model, args=args, train_dataset=train_dataset, processing_class=processing_class,
                         peft_config=peft_config, callbacks=callbacks, **kwargs)
        self._init_engine(args, train_dataset, heldout_dataset, rewards, heldout_rewards)

    # -- SFTTrainer hooks --------------------------------------------------------------------------------------------
    def _prepare_dataset(self, dataset, processing_class, args, packing, formatting_func, dataset_name):
        from trl.data_utils import get_dataset_column_names

        columns = get_dataset_column_names(dataset)
        if "prompt" in columns and "input_ids" not in columns and ("completion" not in columns or dataset_name == "train"):
            # the prompt source (with a reference `completion` when SPIN reads one): each phase tokenizes its own; an
            # eval set with completions is tokenized as SFTTrainer does
            return dataset
        return super()._prepare_dataset(dataset, processing_class, args, packing, formatting_func, dataset_name)

    # -- one SFT phase -----------------------------------------------------------------------------------------------
    def sft_phase(self, selected: list[dict], name: str, seed: int):
        """Fine-tune the current model on selected ``{"prompt", "completion"}`` rows with SFTTrainer's loop."""
        from datasets import Dataset
        from transformers import set_seed

        if not selected:
            logger.warning("%s: no sample selected; the policy is left as it is", name)
            return None
        if self.restart_from_base:
            self.load_trainable(self._base_weights)
        carried = [c for c in TEMPLATE_COLUMNS if c in self.prompt_dataset.column_names]  # kept like SFTTrainer does
        data = Dataset.from_list([{"prompt": s["prompt"], "completion": s["completion"],
                                   **{c: self._prompt_rows[s["row"]][c] for c in carried if "row" in s}}
                                  for s in selected])
        self.train_dataset = super()._prepare_dataset(data, self.processing_class, self.args, self.args.packing,
                                                      None, name)
        self.optimizer, self.lr_scheduler = None, None  # every phase is a fresh SFT run: new AdamW state and schedule
        set_seed(seed)
        out = SFTTrainer.train(self)
        self.total_phase_steps += out.global_step
        return out

    # -- the update stage: select, then SFT ----------------------------------------------------------------------
    def select(self, k: int, samples: list[Sample], rewards: list[float | None]) -> list[int]:
        """The subclass's rule: indices of the samples to fine-tune on (``rewards``: :meth:`selectable`)."""
        raise NotImplementedError

    def update_policy(self, k: int, samples: list[Sample]) -> dict:
        """Select (``selection.jsonl``) and fine-tune on the selection."""
        chosen = self.select(k, samples, self.selectable(samples))
        selected = mark_selected(samples, chosen)
        rows = [s.selection_row() for s in selected]
        self.store.write_rows(k, "selection.jsonl", rows)
        out = self.sft_phase(rows, f"iteration_{k}", seed=self.args.seed + 1000 * k)
        return {"train_loss": out.training_loss if out else None}

