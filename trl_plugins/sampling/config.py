"""The sampling trainers' config: every ``SFTConfig`` field (each fine-tuning phase's) plus the loop's knobs —
rewards, generation, iterations, held-out tracking (:class:`SamplingOptions`, which the preference trainers mix into
their ``DPOConfig``). Each knob is described in its ``help`` (``trl-plugins info
raft`` prints them) and in docs/methods/sampling_engine.md."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from types import SimpleNamespace

from trl import SFTConfig

from ..evaluation.guard import GuardOptions
from .generation import SamplingParams


def check_backend(name: str) -> None:
    """A registered generation backend's name, or a ValueError naming the registered ones (no model is loaded)."""
    from ..errors import UsageError
    from ..registry import get_registry

    try:
        get_registry().generation_backend(name)
    except UsageError as exc:
        raise ValueError(f"generation_backend: {exc}") from None


@dataclass
class SamplingOptions(GuardOptions):
    """The sampling loop's knobs, mixed in before a TRL config (``SamplingConfig``: SFTConfig; the preference trainers:
    DPOConfig), whose ``__post_init__`` runs first; the held-out monitors' and the reward-hacking guard's knobs come
    with them (:class:`~trl_plugins.evaluation.guard.GuardOptions`)."""

    reward_funcs: list[str] = field(
        default_factory=list,
        metadata={"help": "Rewards: registered names (trl-plugins list --rewards), module:function callables with "
                  "TRL's signature, or sequence-classification reward model paths."},
    )
    reward_weights: list[float] | None = field(
        default=None, metadata={"help": "Weight of each reward in reward_funcs (default: all 1)."}
    )
    reward_batch_size: int = field(default=16, metadata={"help": "Batch size for reward-model scoring."})
    num_iterations: int = field(default=3, metadata={"help": "Outer iterations (generate, score, select, fine-tune)."})
    prompts_per_iteration: int | None = field(
        default=None,
        metadata={"help": "Prompts sampled (seeded) from the training split each iteration; default all of them."},
    )
    num_generations: int = field(default=4, metadata={"help": "K: completions sampled per prompt."})
    max_new_tokens: int = field(default=64, metadata={"help": "Maximum tokens generated per completion."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (0 = greedy)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling: keep tokens up to this probability mass."})
    top_k: int = field(default=0, metadata={"help": "Keep only the k most likely tokens (0 = off)."})
    generation_batch_size: int = field(
        default=64, metadata={"help": "Sequences (prompts x K) per generate call."}
    )
    generation_backend: str = field(
        default="transformers",
        metadata={"help": "Generation backend: a registered name (trl-plugins list --backends; plugins add theirs with "
                  "the register_generation_backends hook). Built in: transformers."},
    )
    generation_fast_decode: bool = field(
        default=True,
        metadata={"help": "Own decode loop: one prefill per prompt, finished sequences leave the batch, KV cache "
                  "written in place (false: model.generate per batch)."},
    )
    generation_refill: bool = field(
        default=True, metadata={"help": "Fast decode: rows of finished sequences are refilled with waiting prompts."}
    )
    generation_merge_adapters: bool = field(
        default=True,
        metadata={"help": "LoRA on a 16-bit base: merge the adapters for generation; the weights are restored bit for "
                  "bit afterwards (from a host copy of the adapted weights)."},
    )
    generation_merge_quantized: str = field(
        default="auto",
        metadata={"help": "LoRA on a 4/8-bit base: generate from a merged 16-bit copy of the adapted layers (2 bytes "
                  "per adapted weight on the GPU), freed after the phase. auto: when it fits in the GPU's free memory "
                  "beside the KV cache (never on a CPU).", "choices": ["auto", "true", "false"]},
    )
    generation_compile: bool = field(
        default=False,
        metadata={"help": "model.generate with a static KV cache + torch.compile instead of the fast loop (off by "
                  "default: no stable gain on a CPU; docs/methods/sampling_engine.md)."},
    )
    heldout_prompts: int = field(
        default=0,
        metadata={"help": "Score this many prompts of dataset_test_split before training and after each iteration."},
    )
    heldout_reward_funcs: list[str] = field(
        default_factory=list,
        metadata={"help": "Extra rewards scored on the held-out samples only (not used for selection), reported as "
                  "heldout/<name>: an independent check when training against a learned reward model, or "
                  "loglik:MODEL, MODEL's mean log-likelihood per token of the samples (a fluency check)."},
    )
    heldout_num_generations: int = field(default=1, metadata={"help": "Completions per held-out prompt."})
    heldout_temperature: float | None = field(
        default=None, metadata={"help": "Temperature for held-out sampling (default: temperature)."}
    )
    heldout_seed: int | None = field(
        default=None,
        metadata={"help": "Seed of held-out sampling (plus 7919), default the run's seed. compare sets the task's seed "
                  "for every method and training seed, so that 'before training' is the same sample everywhere."},
    )
    plot_rewards: bool = field(default=True, metadata={"help": "Write rewards_by_iteration.png after each iteration."})
    keep_unfinished: bool = field(
        default=False,
        metadata={"help": "Let samples cut off at max_new_tokens (no end-of-sequence token) be selected. By default "
                  "they never are — fine-tuning on them would teach the model to stop mid-sentence — and are counted "
                  "as `unfinished` in each iteration's summary."},
    )
    num_train_epochs: float = field(default=1.0, metadata={"help": "Epochs over the selected data per phase."})
    # judges: reward_funcs / heldout_reward_funcs entries judge:MODEL (docs/methods/judges.md)
    judge_template: str | None = field(
        default=None,
        metadata={"help": "What a judge:MODEL reward asks: a shipped template (self_rewarding, helpful_harmless, "
                  "sentiment_positive, answer_correct) or the path of a .txt file with {completion}, optionally "
                  "{prompt} and {column} placeholders for dataset columns."},
    )
    judge_mode: str = field(
        default="yes_probability",
        metadata={"help": "yes_probability: the reward is P(Yes) / (P(Yes) + P(No)) of the judge's answer (one "
                  "forward pass); score: the judge writes greedily and the number after 'Score:' is the reward "
                  "(unparseable or outside judge_score_range: the sample is dropped).",
                  "choices": ["yes_probability", "score"]},
    )
    judge_score_range: list[float] = field(
        default_factory=lambda: [0.0, 5.0],
        metadata={"help": "judge_mode score: the range [low, high] of a valid score (Self-Rewarding's rubric: 0..5)."},
    )
    judge_max_new_tokens: int = field(
        default=160, metadata={"help": "judge_mode score: tokens the judge may write (its reasons, then the score)."}
    )
    judge_batch_size: int = field(default=8, metadata={"help": "Samples a judge reads per forward pass."})
    judge_load_in_4bit: bool = field(
        default=False,
        metadata={"help": "Load a judge that is its own model (not the policy or its base) in 4-bit NF4 "
                  "(bitsandbytes)."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.num_generations < 1:
            raise ValueError(f"num_generations (K) must be >= 1, got {self.num_generations}")
        if self.num_iterations < 1:
            raise ValueError(f"num_iterations must be >= 1, got {self.num_iterations}")
        if self.prompts_per_iteration is not None and self.prompts_per_iteration < 1:
            raise ValueError(f"prompts_per_iteration must be >= 1, got {self.prompts_per_iteration}")
        if self.heldout_prompts < 0 or self.heldout_num_generations < 1:
            raise ValueError("heldout_prompts must be >= 0 and heldout_num_generations >= 1")
        if self.reward_hacking == "stop" and not self.heldout_prompts:
            raise ValueError("reward_hacking: stop judges held-out samples: set heldout_prompts (e.g. 32)")
        check_backend(self.generation_backend)
        if str(self.eval_strategy) not in ("no", "IntervalStrategy.NO"):
            raise ValueError("eval_strategy does not apply to sampling trainers: use heldout_prompts to track "
                             "held-out reward")
        self.sampling_params()  # range checks of temperature, top_p, top_k, batch sizes
        from .judge_prompts import check_judge_options

        check_judge_options(self.judge_mode, self.judge_score_range, self.judge_max_new_tokens, self.judge_batch_size)
        if self.reward_weights is not None and len(self.reward_weights) != len(self.reward_funcs):
            raise ValueError(f"reward_weights has {len(self.reward_weights)} values but reward_funcs has "
                             f"{len(self.reward_funcs)} entries")

    def sampling_params(self, heldout: bool = False) -> SamplingParams:
        return sampling_params_of(self, heldout)

    def rewards_required(self) -> bool:
        """Whether ``reward_funcs`` must name a reward (a pair rule fed by a judge or the data needs none)."""
        return True


def sampling_params_of(options, heldout: bool = False) -> SamplingParams:
    """How a run with these :class:`SamplingOptions` samples its prompts (``heldout``: its held-out prompts, at
    ``heldout_temperature``); ``options`` is a config or :func:`sampling_options`."""
    o = options
    temperature = o.heldout_temperature if heldout and o.heldout_temperature is not None else o.temperature
    merge_quantized = {"true": True, "false": False}.get(str(o.generation_merge_quantized).lower(), "auto")
    return SamplingParams(max_new_tokens=o.max_new_tokens, temperature=temperature, top_p=o.top_p, top_k=o.top_k,
                          batch_size=o.generation_batch_size, fast_decode=o.generation_fast_decode,
                          refill=o.generation_refill, merge_adapters=o.generation_merge_adapters,
                          merge_quantized=merge_quantized, compile=o.generation_compile)


def sampling_options(**values) -> SimpleNamespace:
    """:class:`SamplingOptions`' fields at their defaults, overridden by ``values``: the generation settings of a run
    that is not a sampling trainer but is evaluated like one (compare's other methods, the ORPO demo)."""
    defaults = {f.name: f.default_factory() if f.default is MISSING else f.default for f in fields(SamplingOptions)}
    unknown = set(values) - set(defaults) - {"seed"}
    if unknown:
        raise TypeError(f"not sampling options: {', '.join(sorted(unknown))}")
    return SimpleNamespace(**{**defaults, **values})


@dataclass
class SamplingConfig(SamplingOptions, SFTConfig):
    """Every :class:`trl.SFTConfig` field (they apply to each fine-tuning phase), plus the sampling loop's knobs."""

    # SFT defaults that differ from SFTConfig's
    completion_only_loss: bool | None = field(
        default=True, metadata={"help": "Loss on completion tokens only (default true for the sampling trainers)."}
    )
