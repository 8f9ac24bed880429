"""The pair -> preference update of the sampling engine, for the iterative preference trainers (iterative-dpo,
iterative-orpo): each iteration's scored samples become (chosen, rejected) pairs by a rule of ``pairs.py``
(``pair_rule``, :data:`~.pairs.RULES`; ``judge_pairwise`` and ``spin`` get the judge's comparisons, stored in
``comparisons.jsonl``, or the rows' reference completions from :meth:`PreferenceEngine.make_pairs`) and the TRL trainer
the class extends (DPOTrainer, our ORPOTrainer) runs its own step loop on them — a fresh optimizer and schedule per
phase, as the select -> SFT update of ``trainer.py``.
Generation, scoring, held-out evaluation, the store, resume and sharding are
:class:`~trl_plugins.sampling.engine.SamplingEngine`'s. Docs: docs/methods/iterative_dpo.md.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass, field

from ..formats import completion_text
from . import reward_sources
from .engine import SamplingEngine
from .pairs import ENGINE_RULES, RULES, comparison_candidates, judge_pairwise, make_pairs, spin, spin_data_problem
from .records import IterationSummary, Sample, mark_selected

logger = logging.getLogger(__name__)

COMPARISONS = "comparisons.jsonl"  # judge_pairwise: every comparison of an iteration, both orders (read on resume)


@dataclass
class PairOptions:
    """How the scored samples of an iteration become preference pairs (mixed in before :class:`SamplingOptions`)."""

    pair_rule: str = field(
        default="best_worst",
        metadata={"help": "best_worst: the best against the worst sample of each prompt (Xiong et al. 2024, RLHFlow); "
                  "all_pairs: every two samples of a prompt whose rewards differ by >= min_reward_gap; "
                  "correct_incorrect: a correct (reward >= correct_threshold) against an incorrect sample (IRPO, "
                  "Pang et al. 2024); judge_pairwise: a judge compares every two samples of a prompt in both orders "
                  "and a pair is kept only when the orders agree (RLAIF, Lee et al. 2023; judge_pairwise_*); spin: "
                  "the row's reference `completion` against the policy's sample (SPIN, Chen et al. 2024; the data "
                  "needs prompt and completion). Prompts whose samples tie make no pair and are counted (`ties`). "
                  "judge_pairwise and spin need no reward_funcs.",
                  "choices": [*RULES, *ENGINE_RULES]},
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
                  "one; judge_pairwise: the strongest agreeing comparisons (no sample used twice)."},
    )
    judge_pairwise_model: str | None = field(
        default=None,
        metadata={"help": "judge_pairwise: the judge (a local path, hub id, embedded:NAME, or policy: the current "
                  "policy; the LoRA policy's base reuses it with the adapter off). Default: the model of the first "
                  "judge: entry in reward_funcs."},
    )
    judge_pairwise_template: str = field(
        default="rlaif_helpful_pairwise",
        metadata={"help": "judge_pairwise: what the judge is asked, a shipped pairwise template or a .txt file with "
                  "{completion_a} and {completion_b} (optionally {prompt} and {column}s); the judge answers with one "
                  "of judge_pairwise_labels."},
    )
    judge_pairwise_labels: list[str] = field(
        default_factory=lambda: ["A", "B"],
        metadata={"help": "judge_pairwise: the answers that name the first and the second response (the template's "
                  "own words); the preference is P(first) / (P(first) + P(second)) of the judge's next token."},
    )
    judge_pairwise_margin: float = field(
        default=0.0,
        metadata={"help": "judge_pairwise: smallest distance from 0.5 of the preference averaged over both orders "
                  "for a pair to be kept, in [0, 0.5)."},
    )

    reject_unfinished: bool = field(
        default=True,
        metadata={"help": "Let samples cut off at max_new_tokens be the rejected side of a pair (a cut-off answer is a "
                  "worse answer). They are never the chosen side unless keep_unfinished. false: cut-off samples make "
                  "no pair at all."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.pair_rule not in (*RULES, *ENGINE_RULES):
            raise ValueError(f"pair_rule must be one of {', '.join([*RULES, *ENGINE_RULES])}, got {self.pair_rule!r}")
        if self.min_reward_gap < 0:
            raise ValueError(f"min_reward_gap must be >= 0, got {self.min_reward_gap}")
        if self.pairs_per_prompt < 1:
            raise ValueError(f"pairs_per_prompt must be >= 1, got {self.pairs_per_prompt}")
        if self.num_generations < 2 and self.pair_rule != "spin":
            raise ValueError(f"num_generations (K) must be >= 2 to make pairs of samples, got {self.num_generations}")
        if not 0 <= self.judge_pairwise_margin < 0.5:
            raise ValueError(f"judge_pairwise_margin must be in [0, 0.5), got {self.judge_pairwise_margin}")
        labels = list(self.judge_pairwise_labels or [])
        if len(labels) != 2 or labels[0] == labels[1] or not all(isinstance(x, str) and x for x in labels):
            raise ValueError(f"judge_pairwise_labels must be two different words, got {labels}")

    def rewards_required(self) -> bool:
        return self.pair_rule not in ENGINE_RULES


def _mean(values):
    values = [v for v in values if v is not None]
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
        if args.pair_rule == "spin":
            problem = spin_data_problem(train_dataset.column_names, train_dataset[0] if len(train_dataset) else None,
                                        "train_dataset")
            if problem:
                raise ValueError(problem)
        super().__init__(model, args=args, train_dataset=train_dataset, processing_class=processing_class,
                         peft_config=peft_config, callbacks=callbacks, **self._parent_kwargs(), **kwargs)
        self._init_engine(args, train_dataset, heldout_dataset, rewards, heldout_rewards)
        self.pairwise = self._pairwise_judge() if args.pair_rule == "judge_pairwise" else None

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

    # -- judges ----------------------------------------------------------------------------------------------------
    def _pairwise_judge(self):
        """judge_pairwise's judge (loads nothing yet); a judge: reward of the same model lends it its model."""
        from .judge import JudgeModel, PairwiseJudge

        spec = reward_sources.pairwise_judge(self.args, [source.entry for source in self.reward_sources])
        key = (spec.model, spec.load_in_4bit)
        if key not in self.judge_models:
            self.judge_models[key] = JudgeModel(spec.model, self.accelerator.device, self.policy_handle(),
                                                spec.load_in_4bit)
        return PairwiseJudge(spec, model=self.judge_models[key], labels=tuple(self.args.judge_pairwise_labels))

    def judges(self) -> list:
        return super().judges() + ([self.pairwise] if getattr(self, "pairwise", None) is not None else [])

    # -- the update stage: pair, then the preference phase ------------------------------------------------------
    def make_pairs(self, samples: list[Sample], k: int) -> tuple[list[tuple[Sample, Sample]], dict]:
        """Iteration ``k``'s ``(chosen, rejected)`` samples by the config's rule, and the rule's counts (``ties``,
        ``prompts_too_few_samples``; judge_pairwise: ``disagreements``). Samples cut off at ``max_new_tokens`` are
        never chosen unless ``keep_unfinished``, and rejected only if ``reject_unfinished``; a sample some reward
        dropped (None) is neither."""
        a = self.args
        if a.pair_rule == "spin":
            return self.spin_pairs(samples)
        choosable = [bool(a.keep_unfinished or s.finished) for s in samples]
        rewards = [s.reward if a.reject_unfinished or ok else None for s, ok in zip(samples, choosable)]
        groups = [s.row for s in samples]
        if a.pair_rule == "judge_pairwise":
            made = judge_pairwise(groups, self.comparisons(k, samples, [r is not None for r in rewards]),
                                  a.judge_pairwise_margin, a.pairs_per_prompt, choosable)
            extra = {"disagreements": made.disagreements}
        else:
            made = make_pairs(a.pair_rule, groups, rewards, min_reward_gap=a.min_reward_gap,
                              correct=a.correct_threshold, pairs_per_prompt=a.pairs_per_prompt, choosable=choosable)
            extra = {}
        return ([(samples[i], samples[j]) for i, j in made.pairs],
                {"ties": made.ties, "prompts_too_few_samples": made.too_few, **extra})

    def comparisons(self, k: int, samples: list[Sample], usable: list[bool]) -> dict[tuple[int, int], tuple]:
        """judge_pairwise's comparisons of iteration ``k``: ``(i, j) -> (forward, backward)`` for every two usable
        samples of a prompt (``pairs.comparison_candidates``), judged in both orders with the work shared out over the
        processes and written to ``comparisons.jsonl``; read back from that file when it is there (a resumed run
        does not judge again and makes the same pairs)."""
        if self.store.has(k, COMPARISONS):
            return {(r["first"], r["second"]): (r["forward"], r["backward"]) for r in self.store.rows(k, COMPARISONS)}
        candidates = comparison_candidates([s.row for s in samples], usable)
        judge = self.pairwise

        def work(mine):
            if not mine:
                return []
            columns = {c: [self._prompt_rows[samples[i].row].get(c) for i, _ in mine] for c in judge.spec.columns}
            forward, backward = judge([samples[i].prompt for i, _ in mine], [samples[i].completion for i, _ in mine],
                                      [samples[j].completion for _, j in mine], columns)
            return list(zip(forward, backward))

        judged = self.shards.map(candidates, work)
        rows = [{"first": i, "second": j, "row": samples[i].row, "forward": f, "backward": b}
                for (i, j), (f, b) in zip(candidates, judged)]
        self.store.write_rows(k, COMPARISONS, rows)
        return {(r["first"], r["second"]): (r["forward"], r["backward"]) for r in rows}

    def spin_pairs(self, samples: list[Sample]) -> tuple[list[tuple[Sample, Sample]], dict]:
        """SPIN's pairs (``pairs.spin``): per row, its reference ``completion`` (chosen, as a :class:`Sample` with no
        index) against the first usable policy sample (rejected); a sample equal to the reference makes no pair
        (counted as ``ties``), a row without a usable sample is counted as ``prompts_too_few_samples``."""
        a = self.args
        usable = [s.reward is not None and bool(a.reject_unfinished or s.finished) for s in samples]
        references = {s.row: self._prompt_rows[s.row]["completion"] for s in samples}
        same = [completion_text(s.completion).strip() == completion_text(references[s.row]).strip() for s in samples]
        made = spin([s.row for s in samples], usable, same)
        tokenizer = getattr(self.processing_class, "tokenizer", self.processing_class)
        pairs = []
        for row, i in made.pairs:
            text = completion_text(references[row])
            tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"]) + 1  # + the EOS DPO appends
            pairs.append((Sample(row, -1, samples[i].prompt, references[row], tokens, True, -1), samples[i]))
        return pairs, {"ties": made.matched, "prompts_too_few_samples": made.missing}

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
        """Pairs of the rule (``pairs.jsonl``; the chosen sides are the summary's selection — spin: the rejected
        samples, its chosen sides being the rows' references, ``chosen_index`` null), one preference phase."""
        made, counts = self.make_pairs(samples, k)
        pairs = [{"prompt": c.prompt, "chosen": c.completion, "rejected": r.completion, "row": r.row,
                  "chosen_index": c.index if c.sample >= 0 else None, "rejected_index": r.index,
                  "chosen_reward": c.reward, "rejected_reward": r.reward, "chosen_tokens": c.num_tokens,
                  "rejected_tokens": r.num_tokens} for c, r in made]
        side = 1 if self.args.pair_rule == "spin" else 0
        mark_selected(samples, sorted({pair[side].index for pair in made}))
        self.store.write_rows(k, "pairs.jsonl", pairs)
        out = self.preference_phase(pairs, f"iteration_{k}", seed=self.args.seed + 1000 * k)
        return {
            "train_loss": out.training_loss if out else None,
            "pairs": len(pairs), **counts,
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

        disagreed = f", orders disagreed {u['disagreements']}" if "disagreements" in u else ""
        self.accelerator.print(f"     pairs {u['pairs']} (ties {u['ties']}, too few usable samples "
                               f"{u['prompts_too_few_samples']}{disagreed}); reward chosen {f(u['chosen_reward_mean'])} vs "
                               f"rejected {f(u['rejected_reward_mean'])}; tokens chosen {f(u['chosen_tokens_mean'])} "
                               f"vs rejected {f(u['rejected_tokens_mean'])}; loss {f(u['train_loss'])}")
