"""The pair -> preference update of the sampling engine, for the iterative preference trainers (iterative-dpo,
iterative-orpo): each iteration's scored samples become (chosen, rejected) pairs by a rule of ``pairs.py``
(``pair_rule``, :data:`~.pairs.RULES`) and the TRL trainer the class extends (DPOTrainer, our ORPOTrainer) runs its own
step loop on them — a fresh optimizer and schedule per phase, as the select -> SFT update of ``trainer.py``.
Generation, scoring, held-out evaluation, the store, resume and sharding are
:class:`~trl_plugins.sampling.engine.SamplingEngine`'s. Docs: docs/methods/iterative_dpo.md.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass, field

from .engine import SamplingEngine
from .pairs import RULES, PairSet, make_pairs
from .records import IterationSummary, Sample, mark_selected

logger = logging.getLogger(__name__)


@dataclass
class PairOptions:
    """How the scored samples of an iteration become preference pairs (mixed in before :class:`SamplingOptions`)."""

    pair_rule: str = field(
        default="best_worst",
        metadata={"help": "best_worst: the best against the worst sample of each prompt (Xiong et al. 2024, RLHFlow); "
                  "all_pairs: every two samples of a prompt whose rewards differ by >= min_reward_gap; "
                  "correct_incorrect: a correct (reward >= correct_threshold) against an incorrect sample (IRPO, "
                  "Pang et al. 2024). Prompts whose samples tie make no pair and are counted (`ties`).",
                  "choices": list(RULES)},
    )
    min_reward_gap: float = field(
        default=0.0,
        metadata={"help": "best_worst / all_pairs: smallest reward gap between chosen and rejected (the gap must also "
                  "be > 0)."},
    )
    correct_threshold: float = field(
        default=1.0, metadata={"help": "correct_incorrect: reward >= this counts as correct (exact_match: 1)."}
    )
    pairs_per_prompt: int = field(
        default=1,
        metadata={"help": "correct_incorrect: pairs per prompt, the i-th correct sample against the i-th incorrect "
                  "one (no sample used twice)."},
    )

    reject_unfinished: bool = field(
        default=True,
        metadata={"help": "Let samples cut off at max_new_tokens be the rejected side of a pair (a cut-off answer is a "
                  "worse answer). They are never the chosen side unless keep_unfinished. false: cut-off samples make "
                  "no pair at all."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.pair_rule not in RULES:
            raise ValueError(f"pair_rule must be one of {', '.join(RULES)}, got {self.pair_rule!r}")
        if self.min_reward_gap < 0:
            raise ValueError(f"min_reward_gap must be >= 0, got {self.min_reward_gap}")
        if self.pairs_per_prompt < 1:
            raise ValueError(f"pairs_per_prompt must be >= 1, got {self.pairs_per_prompt}")
        if self.num_generations < 2:
            raise ValueError(f"num_generations (K) must be >= 2 to make pairs, got {self.num_generations}")


def _mean(values):
    return statistics.fmean(values) if values else None


class PreferenceEngine(SamplingEngine):
    """The engine with a pair -> preference update; mixed in before a DPOTrainer subclass. Built like the sampling
    trainers (prompt-only ``train_dataset``, ``heldout_dataset``, ``rewards``, ``heldout_rewards``)."""

    def __init__(self, model, args, train_dataset, processing_class=None, peft_config=None, heldout_dataset=None,
                 callbacks=None, rewards=None, heldout_rewards=None, **kwargs):
        if not isinstance(args, PairOptions):
            raise TypeError(f"`args` must be an iterative preference config, got {type(args).__name__}")
        if "prompt" not in train_dataset.column_names:
            raise ValueError("the sampling trainers need a 'prompt' column")
        super().__init__(model, args=args, train_dataset=train_dataset, processing_class=processing_class,
                         peft_config=peft_config, callbacks=callbacks, **self._parent_kwargs(), **kwargs)
        self._init_engine(args, train_dataset, heldout_dataset, rewards, heldout_rewards)

    def _parent_kwargs(self) -> dict:
        """Extra keyword arguments of the TRL parent's ``__init__`` (iterative-dpo: its reference placeholder)."""
        return {}

    # -- DPOTrainer hooks --------------------------------------------------------------------------------------------
    def _prepare_dataset(self, dataset, *args, **kwargs):
        if "chosen" not in dataset.column_names:
            return dataset  # the prompt source: pairs are tokenized per phase, not here
        return super()._prepare_dataset(dataset, *args, **kwargs)

    def with_reference(self, dataset, name: str):
        """The phase's tokenized pairs, with whatever the loss needs of a reference (iterative-dpo: its log-probs)."""
        return dataset

    # -- the update stage: pair, then the preference phase ------------------------------------------------------
    def make_pairs(self, samples: list[Sample]) -> PairSet:
        """The :class:`~trl_plugins.sampling.pairs.PairSet` of the config's rule. Samples cut off at
        ``max_new_tokens`` are never chosen unless ``keep_unfinished``, and rejected only if ``reject_unfinished``."""
        a = self.args
        choosable = [bool(a.keep_unfinished or s.finished) for s in samples]
        rewards = [s.reward if a.reject_unfinished or ok else None for s, ok in zip(samples, choosable)]
        return make_pairs(a.pair_rule, [s.row for s in samples], rewards, min_reward_gap=a.min_reward_gap,
                          correct=a.correct_threshold, pairs_per_prompt=a.pairs_per_prompt, choosable=choosable)

    def preference_phase(self, pairs: list[dict], name: str, seed: int):
        """Train the current policy on ``{"prompt", "chosen", "rejected"}`` rows with the TRL parent's own loop."""
        from datasets import Dataset
        from transformers import set_seed

        if not pairs:
            logger.warning("%s: no preference pair; the policy is left as it is", name)
            return None
        data = Dataset.from_list([{key: p[key] for key in ("prompt", "chosen", "rejected")} for p in pairs])
        data = self._prepare_dataset(data, self.processing_class, self.args, name)
        if len(data) == 0:  # DPOTrainer drops pairs whose prompt alone fills max_length
            logger.warning("%s: every pair's prompt fills max_length; the policy is left as it is", name)
            return None
        self.train_dataset = self.with_reference(data, name)
        self.optimizer, self.lr_scheduler = None, None  # every phase is a fresh run: new AdamW state and schedule
        set_seed(seed)
        out = super(SamplingEngine, self).train()  # the TRL parent's train(), not the engine's loop
        self.total_phase_steps += out.global_step
        return out

    def update_policy(self, k, samples):
        """Pairs of the rule (``pairs.jsonl``; the chosen sides are the summary's selection), one preference phase."""
        made = self.make_pairs(samples)
        pairs = [{"prompt": c.prompt, "chosen": c.completion, "rejected": r.completion, "row": c.row,
                  "chosen_index": c.index, "rejected_index": r.index, "chosen_reward": c.reward,
                  "rejected_reward": r.reward, "chosen_tokens": c.num_tokens, "rejected_tokens": r.num_tokens}
                 for c, r in ((samples[i], samples[j]) for i, j in made.pairs)]
        mark_selected(samples, sorted({c for c, _ in made.pairs}))
        self.store.write_rows(k, "pairs.jsonl", pairs)
        out = self.preference_phase(pairs, f"iteration_{k}", seed=self.args.seed + 1000 * k)
        return {
            "train_loss": out.training_loss if out else None,
            "pairs": len(pairs), "ties": made.ties, "prompts_too_few_samples": made.too_few,
            "chosen_reward_mean": _mean([p["chosen_reward"] for p in pairs]),
            "rejected_reward_mean": _mean([p["rejected_reward"] for p in pairs]),
            # length bias: chosen samples that grow longer than rejected ones iteration after iteration
            "chosen_tokens_mean": _mean([p["chosen_tokens"] for p in pairs]),
            "rejected_tokens_mean": _mean([p["rejected_tokens"] for p in pairs]),
        }

    def _print_row(self, summary: IterationSummary) -> None:
        super()._print_row(summary)
        u = summary.update

        def f(v):
            return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

        self.accelerator.print(f"     pairs {u['pairs']} (ties {u['ties']}, too few usable samples "
                               f"{u['prompts_too_few_samples']}); reward chosen {f(u['chosen_reward_mean'])} vs "
                               f"rejected {f(u['rejected_reward_mean'])}; tokens chosen {f(u['chosen_tokens_mean'])} "
                               f"vs rejected {f(u['rejected_tokens_mean'])}; loss {f(u['train_loss'])}")
