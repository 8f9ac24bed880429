"""Rejection-sampling fine-tuning (Llama 2, Touvron et al. 2023, §3.2.3): best of K samples per prompt, a best-ever
pool across iterations, SFT on the pool — a sampling trainer (``SFTTrainer``); optionally best-vs-worst preference
pairs for iterative DPO.

What it adds over OpenRLHF's removed version: generation inside the training process, any reward source, TRL's SFT
loop, iteration files and resume. Docs: docs/methods/rejection_sampling.md.

    trl-plugins train rejection-sampling --config demo/rejection_sampling
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..sampling.config import SamplingConfig
from ..sampling.pairs import best_worst
from ..sampling.records import mark_selected
from ..sampling.selection import best_of_n
from ..sampling.trainer import SamplingTrainer
from .common.papers import LLAMA2


@dataclass
class RejectionSamplingConfig(SamplingConfig):
    """Every :class:`SamplingConfig` field plus the best-ever pool and the preference export."""

    keep_best_pool: bool = field(default=True, metadata={"help": "Keep the best-ever sample per prompt across iterations."})
    export_preference_pairs: bool = field(
        default=False, metadata={"help": "Also write best-vs-worst pairs as a preference dataset (iterative DPO)."}
    )
    num_generations: int = field(default=8, metadata={"help": "K: completions sampled per prompt."})


class RejectionSamplingTrainer(SamplingTrainer):
    """Rejection-sampling fine-tuning: best of K per prompt, best-ever pool, SFT; optional preference export."""

    _tag_names = ["trl", "sft", "trl-plugins", "rejection-sampling"]
    _name = "Rejection sampling"
    _paper = LLAMA2

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pool: dict[int, dict] = {}  # dataset row -> best-ever sample

    def select(self, k, samples, rewards):
        return best_of_n([s.row for s in samples], rewards)

    def restore(self, k):
        self.pool = {row["row"]: row for row in self.store.rows(k, "pool.jsonl")}

    def update_policy(self, k, samples):
        """Best of K per prompt (``selection.jsonl``) into the best-ever pool (``pool.jsonl``), SFT on the pool."""
        usable = self.selectable(samples)
        best = [s.selection_row(iteration=k) for s in mark_selected(samples, self.select(k, samples, usable))]
        self.store.write_rows(k, "selection.jsonl", best)
        if not self.args.keep_best_pool:
            self.pool = {}
        replaced = 0
        for row in best:
            old = self.pool.get(row["row"])
            if old is None or row["reward"] > old["reward"]:
                replaced += old is not None
                self.pool[row["row"]] = row
        pool = [self.pool[r] for r in sorted(self.pool)]
        self.store.write_rows(k, "pool.jsonl", pool)
        extra = {}
        if self.args.export_preference_pairs:
            extra["preference_pairs"] = self._export_pairs(k, samples, usable)
        out = self.sft_phase(pool, f"iteration_{k}", seed=self.args.seed + 1000 * k)
        return {
            "train_loss": out.training_loss if out else None,
            "pool_size": len(pool),
            "pool_reward_mean": sum(p["reward"] for p in pool) / len(pool) if pool else None,
            "pool_from_earlier_iterations": sum(p["iteration"] < k for p in pool),
            "pool_improved": replaced,
            **extra,
        }

    def _export_pairs(self, k, samples, rewards) -> int:
        """Best-vs-worst pairs of the samples the selection may use (iterative-dpo's ``best_worst`` rule with
        ``reject_unfinished: false``: cut-off samples are on neither side), as a preference dataset."""
        made = best_worst([s.row for s in samples], rewards)
        pairs = [{"prompt": samples[b].prompt, "chosen": samples[b].completion, "rejected": samples[w].completion,
                  "chosen_reward": rewards[b], "rejected_reward": rewards[w], "iteration": k} for b, w in made.pairs]
        self.store.write_rows(k, "preference_pairs.jsonl", pairs)
        every = [pair for j in range(1, k + 1) if self.store.has(j, "preference_pairs.jsonl")
                 for pair in self.store.rows(j, "preference_pairs.jsonl")]
        self.store.write_rows(None, "preference_pairs.jsonl", every)
        return len(pairs)
