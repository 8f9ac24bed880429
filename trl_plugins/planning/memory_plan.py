"""Peak GPU memory of a training run, planned from the model's config.json (no weights, no torch import).

:func:`plan` takes a config.json as a dict, the run's settings (:class:`RunSettings`) and the method's memory profile
(:class:`MemoryProfile`) and returns the breakdown: base weights (16-bit, or 4-bit NF4 with double quantization),
LoRA parameters, gradients, optimizer states, activations (checkpointed layer inputs plus one layer recomputed, or
every layer without gradient checkpointing), the LM head or full logits, reference/KL forwards, generation (KV
cache) and reward models, the vision tower of a vision-language model; the peak over the run's phases as
``peak_gib``; whether it fits a GPU; the largest per-device batch and ``max_length`` that fit. Every term, where its
numbers come from and the calibration against GPU measurements: docs/memory.md. Its inputs from a recipe:
:mod:`trl_plugins.planning.inputs`; the command: ``trl-plugins plan`` (:mod:`trl_plugins.cli.plan`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .memory_architectures import Decoder, VisionTower

GIB = 1024**3
FIT_FRACTION = 0.85  # a plan fits a card when its peak is at most this share of the card's memory
# NF4 (QLoRA, Dettmers et al. 2023): 4 bits per weight + one absmax per 64-weight block, which double quantization
# stores as 8 bits + one fp32 second-level absmax per 256 blocks: 8/64 + 32/(64*256) = 0.127 bits per weight.
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)
NF4_BYTES_NO_DOUBLE_QUANT = 0.5 + 4 / 64
FUSED_TILE = (4096, 32768)  # TRL's chunked log-prob kernel: [TOKEN_CHUNK_SIZE, _CHUNKED_LOGPROB_CHUNK_SIZE] tiles
BNB_PAGED_MIN = 100_000  # bitsandbytes pages an optimizer state only for tensors of >= 1e5 elements
BNB_8BIT_MIN = 4096  # ... and keeps 32-bit states for tensors below min_8bit_size
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4, "auto": 2, None: 2}

# Activation bytes per token of ONE decoder layer, counted from what autograd saves (torch saved-tensor hooks and a
# live-tensor tracker on a Llama/Qwen2 layer under bf16 autocast, 4-bit or 16-bit base; tests/test_memory_plan.py
# re-counts them): "live" = saved tensors + the layer output after its forward, "extra" = the backward's own buffers
# on top. Coefficients of (hidden h, intermediate i, key/value width kv, LoRA rank r).
LAYER_BYTES = {
    # LoRA adapters in bf16 (TRL casts them for a 4-bit base), dropout > 0: 38h + 10i + 4kv + 14r, backward +8h + 2i
    "lora-bf16": {"live": (38, 10, 4, 14), "extra": (8, 2, 0, 0)},
    "lora-bf16-nodropout": {"live": (18, 8, 4, 14), "extra": (8, 2, 0, 0)},
    # adapters in fp32 (peft's autocast_adapter_dtype for a 16-bit base), dropout > 0
    "lora-fp32": {"live": (51, 12, 4, 85), "extra": (4, 10, 0, 0)},
    "lora-fp32-nodropout": {"live": (27, 8, 4, 33), "extra": (4, 8, 0, 0)},
    "frozen": {"live": (18, 8, 4, 0), "extra": (8, 2, 0, 0)},  # no adapter (frozen vision tower), input needs grad
    "full": {"live": (22, 8, 4, 0), "extra": (8, 2, 0, 0)},  # full fine-tuning: every weight trainable
}
NO_GRAD_BYTES = (8, 6)  # a no-grad forward holds ~8h + 6i bytes per token of the layer it is in (h in/out, MLP)
# Bytes per token (x hidden size h) or per token and vocabulary entry (x V) of the terms below; docs/memory.md
# ("The terms") says how each was counted.
BETWEEN_LAYERS = 4  # x h: the gradient flowing from one decoder layer into the next during the backward
FUSED_HEAD = 16  # x h: the fused LM head's final norm, gathered hidden states and their fp32 gradient
LOGITS = 10  # x V: bf16 logits, an fp32 copy for the loss and its fp32 gradient
LOGITS_HIDDEN = 8  # x h: the final hidden states into the full-logits head and their gradient
SCORE_HEAD = 8  # x h: a reward model's score head (final norm, hidden states, their gradient)
NO_GRAD_LOGITS = 6  # x V: a no-grad forward's bf16 logits and the fp32 log-probabilities taken from them
NO_GRAD_FUSED = 4  # x h: a no-grad forward's hidden states gathered for the fused head's tiles
SAMPLING_LOGITS = 14  # x V per generated sequence: the last step's logits in fp32 and the sampler's copies of them
MERGED_WEIGHT = 2.0  # bytes per weight of generation_merge_quantized's 16-bit copy of the adapted quantized layers


@dataclass(frozen=True)
class MemoryProfile:
    """What a method puts on the GPU per example, for :func:`plan`: the ``memory_profile`` of its
    :class:`trl_plugins.method.Method` (undeclared: the default, one sequence with full logits)."""

    sequences_per_example: int = 1  # rows per example in the forward that is backpropagated (ORPO 2, mDPO 3)
    reference_forward: bool = False  # a no-grad reference forward over the same rows (adapter off under LoRA)
    kl_batch: bool = False  # KTO: one more no-grad batch of mismatched completions, policy and reference
    lm_head: str = "logits"  # "fused": TRL's chunked LM head; "logits": full [rows, length, vocab]; "none": score head
    generation: bool = False  # sampling trainers: generate -> score -> fine-tune on prompt + completion rows
    images: bool = False  # every sequence carries an image (vision tower + image tokens inside max_length)

    def __post_init__(self):
        if self.sequences_per_example < 1:
            raise ValueError("sequences_per_example must be >= 1")
        if self.lm_head not in ("fused", "logits", "none"):
            raise ValueError(f"lm_head must be fused, logits or none, got {self.lm_head!r}")


def profile_for(method=None) -> MemoryProfile:
    """The ``memory_profile`` of a method (class or instance), handed down by whoever resolved it (the ``plan``
    command); no method, or one that declares none, gets the default: one sequence with full logits."""
    declared = getattr(method, "memory_profile", None)
    return declared if isinstance(declared, MemoryProfile) else MemoryProfile()


@dataclass
class RunSettings:
    """The run's knobs that change memory (recipe keys of the same names, see plan_command.settings_from_args)."""

    per_device_batch: int = 1
    max_length: int = 1024
    gradient_accumulation_steps: int = 1
    use_peft: bool = True
    lora_r: int = 16
    lora_targets: list[str] | str | None = "all-linear"
    lora_dropout: float = 0.05
    load_in_4bit: bool = False
    load_in_8bit: bool = False  # LLM.int8(): 1 byte per linear weight (+ a fp32 scale per row)
    double_quant: bool = True
    dtype: str | None = "bfloat16"
    gradient_checkpointing: bool = True
    optimizer: str = "paged_adamw_8bit"
    fused_lm_head: bool | None = None  # ORPO/mDPO knob: None = fused (a CUDA run), False = full logits
    freeze_vision_tower: bool = True
    image_tokens: int | None = None  # per image; default from the vision config (see VisionTower)
    # sampling trainers
    generation_batch_size: int = 64
    max_new_tokens: int = 256
    prompt_length: int = 256
    reward_batch_size: int = 16
    reward_models: list[dict] = field(default_factory=list)  # config.json dicts of sequence-classification RMs
    num_iterations: int = 1
    heldout: bool = False  # held-out prompts are generated and scored before iteration 1 and after every iteration
    merged_generation_copy: bool = False  # generation_merge_quantized: a 16-bit copy of the adapted quantized layers
    # judges (judge:MODEL rewards), loaded at the first scoring and kept like reward models; a judge that is the
    # policy (judge:policy, or its base under LoRA) adds no weights, only its forward
    judge_models: list[dict] = field(default_factory=list)  # config.json dicts of judges that are their own model
    judge_on_policy: bool = False  # a judge runs on the policy's own weights
    judge_tokens: int = 0  # tokens of one judged sequence (template + prompt + completion); 0: no judge
    judge_batch_size: int = 8
    judge_new_tokens: int = 0  # judge_mode score: tokens the judge writes (its KV cache); 0: yes_probability
    judge_load_in_4bit: bool = False


# -- terms ----------------------------------------------------------------------------------------------------------
def _dot(coefficients, h, i, kv, r) -> float:
    a, b, c, d = coefficients
    return a * h + b * i + c * kv + d * r


def _targets(settings: RunSettings) -> set[str] | None:
    """Adapted module names; None means every linear layer (peft's ``all-linear``)."""
    targets = settings.lora_targets
    if targets is None:
        return {"q_proj", "v_proj"}  # peft's default for Llama/Mistral/Qwen
    if isinstance(targets, str):
        targets = [targets]
    if any(str(t).lower() == "all-linear" for t in targets):
        return None
    return {str(t).split(".")[-1] for t in targets}


def _adapted(name: str, targets: set[str] | None) -> bool:
    return targets is None or name.split(".")[-1] in targets or name in targets


def _optimizer_bytes(tensors: list[int], param_bytes: float, optimizer: str) -> tuple[float, float]:
    """``(in the PyTorch allocator, paged)`` bytes of the optimizer states for trainable tensors of these sizes."""
    name = optimizer.lower()
    paged_kind = "paged" in name
    if "8bit" in name:  # two uint8 states + a fp32 absmax per 256-element block each; small tensors stay 32-bit
        per = [(n * (2 + 8 / 256) if n >= BNB_8BIT_MIN else n * 8.0, n) for n in tensors]
    elif name.startswith(("paged_adamw_32bit", "paged_adam_32bit", "adamw_bnb", "paged_lion_32bit")):
        per = [(n * 8.0, n) for n in tensors]
    elif name.startswith("sgd"):
        per = [(0.0, n) for n in tensors]
    elif name.startswith("adafactor"):
        per = [(n * 0.1, n) for n in tensors]  # factored second moments: a small fraction of the parameters
    else:  # torch AdamW (adamw_torch, adamw_torch_fused, ...): two states in the parameter's dtype
        per = [(n * 2 * param_bytes, n) for n in tensors]
    paged = sum(b for b, n in per if paged_kind and n >= BNB_PAGED_MIN)
    return sum(b for b, _ in per) - paged, paged


def _layer_kind(settings: RunSettings) -> str:
    """Which LAYER_BYTES row: adapters in the activations' dtype (TRL casts them to bf16 on a k-bit base; an fp32
    model) or fp32 adapters on a 16-bit base (peft's autocast_adapter_dtype)."""
    if not settings.use_peft:
        return "full"
    same_dtype = settings.load_in_4bit or settings.load_in_8bit or DTYPE_BYTES.get(settings.dtype, 2) == 4
    kind = "lora-bf16" if same_dtype else "lora-fp32"  # fp32 models: the bf16 layout, doubled by the caller
    return kind if settings.lora_dropout > 0 else kind + "-nodropout"


def _layer_token_bytes(model: Decoder, settings: RunSettings, four_bit: bool) -> tuple[float, float]:
    """``(live, extra)`` activation bytes per token of one decoder layer (see LAYER_BYTES)."""
    h, i, kv = model.hidden, model.intermediate * model.experts_per_token, model.kv_width
    kind = _layer_kind(settings)
    coefficients = LAYER_BYTES[kind]
    live = _dot(coefficients["live"], h, i, kv, settings.lora_r)
    extra = _dot(coefficients["extra"], h, i, kv, settings.lora_r)
    if kind.startswith("lora"):  # the adapter's share scales with the fraction of linear inputs adapted
        targets = _targets(settings)
        linears = model.linears()
        fraction = sum(n for name, n, _ in linears if _adapted(name, targets)) / sum(n for _, n, _ in linears)
        frozen = _dot(LAYER_BYTES["frozen"]["live"], h, i, kv, 0)
        live = frozen + fraction * (live - frozen)
    if DTYPE_BYTES.get(settings.dtype, 2) == 4 and not four_bit:
        live, extra = 2 * live, 2 * extra  # fp32 activations: every saved tensor twice as large
    return live, extra


def _weights(model: Decoder, vision: VisionTower | None, settings: RunSettings, lm_head: bool) -> dict:
    text_linear = model.layers * sum(a * b for _, a, b in model.linears())
    vision_linear = vision.layers * sum(a * b for _, a, b in vision.linears()) if vision else 0
    projector = sum(a * b for _, a, b in vision.projector) if vision else 0
    other = model.other_params(lm_head) + (vision.other_params if vision else 0)
    if not lm_head:
        other += model.hidden  # the score head of a reward model (1 label)
    if settings.load_in_4bit or settings.load_in_8bit:
        nf4 = 1.0 if settings.load_in_8bit else NF4_BYTES if settings.double_quant else NF4_BYTES_NO_DOUBLE_QUANT
        text_bytes = text_linear * nf4 + model.other_params(lm_head) * 2 + (0 if lm_head else model.hidden * 2)
        vision_bytes = (vision_linear + projector) * nf4 + (vision.other_params * 2 if vision else 0)
    else:
        size = DTYPE_BYTES.get(settings.dtype, 2)
        text_bytes = (text_linear + model.other_params(lm_head) + (0 if lm_head else model.hidden)) * size
        vision_bytes = (vision_linear + projector + (vision.other_params if vision else 0)) * size
    return {"params": text_linear + vision_linear + projector + other, "text": text_bytes, "vision": vision_bytes}


def _trainable(model: Decoder, vision: VisionTower | None, settings: RunSettings, lm_head: bool):
    """``(tensor sizes, sizes per decoder layer, bytes per element)`` of the trainable parameters."""
    if not settings.use_peft:
        per_layer = [a * b for _, a, b in model.linears()]
        tensors = per_layer * model.layers + [model.vocab * model.hidden] * (1 if model.tied or not lm_head else 2)
        if vision and not settings.freeze_vision_tower:
            tensors += [a * b for _, a, b in vision.linears()] * vision.layers
        if vision:
            tensors += [a * b for _, a, b in vision.projector]
        return tensors, per_layer, DTYPE_BYTES.get(settings.dtype, 2)
    targets, r = _targets(settings), settings.lora_r
    per_layer = [n for name, a, b in model.linears() if _adapted(name, targets) for n in (r * a, r * b)]
    tensors = per_layer * model.layers
    if vision:
        if not settings.freeze_vision_tower:
            tensors += [n for name, a, b in vision.linears() if _adapted(name, targets)
                        for n in (r * a, r * b)] * vision.layers
        tensors += [n for name, a, b in vision.projector if _adapted(name, targets) for n in (r * a, r * b)]
    if not lm_head:
        tensors.append(model.hidden)  # the score head is trained in full (modules_to_save)
    quantized = settings.load_in_4bit or settings.load_in_8bit
    return tensors, per_layer, 2 if quantized else 4  # adapters: bf16 (TRL casts them, k-bit) or fp32 (peft)


def _reward_model_bytes(config: dict) -> float:
    """A sequence-classification reward model held in bf16 for scoring (no LM head)."""
    rm = Decoder.from_config(config)
    return (rm.layers * sum(a * b for _, a, b in rm.linears()) + rm.other_params(lm_head=False) + rm.hidden) * 2


def _judge_bytes(config: dict, load_in_4bit: bool) -> float:
    """A judge held for scoring: a causal LM with its LM head, bf16 or 4-bit NF4 (double quantization) linears."""
    judge = Decoder.from_config(config)
    linear = judge.layers * sum(a * b for _, a, b in judge.linears())
    return linear * (NF4_BYTES if load_in_4bit else 2) + judge.other_params(True) * 2


def _judge_scoring_bytes(judge: Decoder, settings: RunSettings) -> float:
    """One judge batch: a no-grad forward over the judged sequences with the LM head on the last position only
    (yes_probability), or a greedy generation after that prefill (score: the KV cache of the written tokens)."""
    batch, tokens = settings.judge_batch_size, settings.judge_tokens
    forward = _no_grad_forward_bytes(judge, batch * tokens, "none") + batch * judge.vocab * NO_GRAD_LOGITS
    if not settings.judge_new_tokens:
        return forward
    kv = batch * (tokens + settings.judge_new_tokens) * 2 * judge.layers * judge.kv_width * 2
    return kv + max(forward, batch * judge.vocab * SAMPLING_LOGITS)


def _no_grad_forward_bytes(model: Decoder, tokens: int, head: str) -> float:
    """Transient bytes of a no-grad forward over ``tokens`` tokens: one layer's tensors, then the LM head."""
    h, i = model.hidden, model.intermediate * model.experts_per_token
    layer = tokens * _dot(NO_GRAD_BYTES + (0, 0), h, i, 0, 0)
    if head == "fused":
        return max(layer, _fused_tile(tokens, model.vocab) + tokens * NO_GRAD_FUSED * h)
    if head == "logits":
        return max(layer, tokens * model.vocab * NO_GRAD_LOGITS)
    return layer


def _fused_tile(tokens: int, vocab: int) -> float:
    return min(tokens, FUSED_TILE[0]) * min(vocab, FUSED_TILE[1]) * 2


# -- the plan -------------------------------------------------------------------------------------------------------
@dataclass
class _Run:
    """What every phase of one planned run shares: the model, the run, and the terms alive throughout training."""

    model: Decoder
    vision: VisionTower | None
    settings: RunSettings
    profile: MemoryProfile
    head: str  # "fused", "logits" or "none" (see _lm_head_kind)
    four_bit: bool  # a k-bit (4-bit or 8-bit) base
    act: int  # bytes per activation element (fp32 model: 4, else 2)
    element: int  # bytes per trainable element
    per_layer: list[int]  # trainable tensor sizes of one decoder layer
    grads: float  # bytes of every trainable gradient
    optimizer: float  # optimizer states in the PyTorch allocator
    static: dict  # terms alive through every training phase: weights, adapters, optimizer, reference copy


def _lm_head_kind(profile: MemoryProfile, settings: RunSettings) -> str:
    if profile.lm_head == "fused" and settings.fused_lm_head is False:
        return "logits"
    return profile.lm_head


def _setup(config: dict, settings: RunSettings, profile: MemoryProfile) -> tuple[_Run, dict, dict]:
    """The run, the weights (see _weights) and ``{trainable, paged}`` (trainable elements, paged optimizer bytes)."""
    model = Decoder.from_config(config)
    vision = VisionTower.from_config(config, model, settings.image_tokens) if profile.images else None
    head = _lm_head_kind(profile, settings)
    four_bit = settings.load_in_4bit or settings.load_in_8bit
    weights = _weights(model, vision, settings, head != "none")
    tensors, per_layer, element = _trainable(model, vision, settings, head != "none")
    optimizer, paged = _optimizer_bytes(tensors, element, settings.optimizer)
    grads = sum(tensors) * element
    act = 4 if DTYPE_BYTES.get(settings.dtype, 2) == 4 and not four_bit else 2
    run = _Run(model, vision, settings, profile, head, four_bit, act, element, per_layer, grads, optimizer, {})
    run.static = _static_terms(run, weights)
    return run, weights, {"trainable": sum(tensors), "paged": paged}


def _static_terms(run: _Run, weights: dict) -> dict:
    """What stays on the GPU through every training phase."""
    static = {"base_weights": weights["text"]}
    if run.vision:
        static["vision_tower"] = weights["vision"]
    if run.settings.use_peft:
        static["lora_params"] = run.grads
    static["optimizer_states"] = run.optimizer
    if run.profile.reference_forward and not run.settings.use_peft:
        static["reference_model"] = weights["text"] + weights["vision"]
    return static


def _held_in_backward(run: _Run, checkpoint: float) -> dict:
    """Gradients and stored checkpoints at the backward's worst layer: at layer k the checkpoints of layers 0..k are
    alive and the gradients of layers k+1.. exist (all of them if accumulated from earlier micro-batches)."""
    model, settings = run.model, run.settings
    if settings.gradient_accumulation_steps > 1:
        return {"gradients": run.grads, "activations_stored": model.layers * checkpoint}
    grad_layer = sum(run.per_layer) * run.element if settings.use_peft else 0
    top = model.layers * checkpoint
    bottom = checkpoint + (model.layers - 1) * grad_layer
    if top >= bottom:
        return {"gradients": 0.0, "activations_stored": top}
    return {"gradients": (model.layers - 1) * grad_layer, "activations_stored": checkpoint}


def _vision_layer_live(run: _Run) -> float:
    vision = run.vision
    return _dot(LAYER_BYTES["frozen"]["live"], vision.hidden, vision.intermediate, vision.hidden, 0)


def _vision_checkpoints(run: _Run, rows: int) -> float:
    """The vision tower's stored activations: its output needs grad (enable_input_require_grads hooks its
    embeddings too)."""
    vision = run.vision
    per_patch = vision.hidden * run.act if run.settings.gradient_checkpointing else _vision_layer_live(run)
    return rows * vision.patches_per_image * vision.layers * per_patch


def _head_terms(run: _Run, tokens: int) -> dict:
    """The LM head (fused tiles or full logits), or a reward model's score head, over ``tokens`` tokens."""
    h = run.model.hidden
    if run.head == "fused":
        return {"lm_head": _fused_tile(tokens, run.model.vocab) + tokens * FUSED_HEAD * h}
    if run.head == "logits":
        return {"logits": tokens * run.model.vocab * LOGITS + tokens * LOGITS_HIDDEN * h}
    return {"lm_head": tokens * SCORE_HEAD * h}


def _no_grad_transient(run: _Run, rows: int, length: int) -> float:
    """Reference and KL forwards: reference over the same rows; KL: policy then reference over as many rows."""
    transient = _no_grad_forward_bytes(run.model, rows * length, run.head)
    if run.vision:
        vision = run.vision
        transient = max(transient, rows * vision.patches_per_image * _dot(
            NO_GRAD_BYTES + (0, 0), vision.hidden, vision.intermediate, 0, 0))
    return transient


def _vision_backward(run: _Run, rows: int, base: dict, vision_ckpt: float) -> dict:
    """The vision tower's backward: text checkpoints gone, one vision layer recomputed."""
    vision = run.vision
    patches = rows * vision.patches_per_image
    vextra = _dot(LAYER_BYTES["frozen"]["extra"], vision.hidden, vision.intermediate, vision.hidden, 0)
    return dict(base, gradients=run.grads, activations_vision=vision_ckpt,
                activations_one_layer=patches * (_vision_layer_live(run) + vextra + BETWEEN_LAYERS * vision.hidden))


def _training_phases(run: _Run, rows: int, length: int, prefix: str, extra_static: dict) -> dict:
    """The phases of one training step over ``rows`` rows of ``length`` tokens: backward through the decoder, the
    LM head, no-grad forwards, backward through the vision tower."""
    model, settings = run.model, run.settings
    tokens = rows * length
    base = dict(run.static, **extra_static)
    live, extra = _layer_token_bytes(model, settings, run.four_bit)
    checkpoint = tokens * model.hidden * run.act if settings.gradient_checkpointing else tokens * live
    held = _held_in_backward(run, checkpoint)
    vision_ckpt = _vision_checkpoints(run, rows) if run.vision else 0.0
    if run.vision:
        held["activations_vision"] = vision_ckpt
    if settings.gradient_checkpointing:
        layer = tokens * (live + extra + BETWEEN_LAYERS * model.hidden)
    else:
        layer = tokens * extra
    phases = {f"{prefix}backward through the decoder layers": dict(base, **held, activations_one_layer=layer)}
    # the LM head (or full logits) with every checkpoint alive
    all_ckpt = {"gradients": run.grads if settings.gradient_accumulation_steps > 1 else 0.0,
                "activations_stored": model.layers * checkpoint, "activations_vision": vision_ckpt}
    phases[f"{prefix}LM head"] = dict(base, **all_ckpt, **_head_terms(run, tokens))
    if run.profile.reference_forward or run.profile.kl_batch:
        phases[f"{prefix}reference/KL forwards (no grad)"] = dict(
            base, **all_ckpt, no_grad_forward=_no_grad_transient(run, rows, length))
    if run.vision:
        phases[f"{prefix}backward through the vision tower"] = _vision_backward(run, rows, base, vision_ckpt)
    return phases


def _generation_terms(run: _Run) -> dict:
    """One generate call: the KV cache and working memory of the decode or the prefill, whichever is larger."""
    model, settings = run.model, run.settings
    length = settings.prompt_length + settings.max_new_tokens
    kv_token = model.kv_cache_bytes(1, run.act)
    batch = settings.generation_batch_size
    decode = {"generation_kv_cache": batch * length * kv_token,
              "generation_working": batch * length * kv_token / model.layers + batch * model.vocab * SAMPLING_LOGITS}
    prefill = {"generation_kv_cache": batch * settings.prompt_length * kv_token,
               "generation_working": _no_grad_forward_bytes(model, batch * settings.prompt_length, "none")
               + batch * model.vocab * SAMPLING_LOGITS}
    use = decode if sum(decode.values()) >= sum(prefill.values()) else prefill
    if settings.merged_generation_copy and settings.use_peft and run.four_bit:
        targets = _targets(settings)
        use = dict(use, generation_merged_copy=MERGED_WEIGHT * model.layers * sum(
            a * b for name, a, b in model.linears() if _adapted(name, targets)))
    return use


def _sampling_phases(run: _Run) -> dict:
    """Sampling trainers: fine-tuning on prompt + completion rows, generation, reward scoring. A reward model loads
    at the first scoring and stays; the last phase's optimizer stays until the next phase."""
    settings = run.settings
    reward = sum(_reward_model_bytes(c) for c in settings.reward_models)
    judges = sum(_judge_bytes(c, settings.judge_load_in_4bit) for c in settings.judge_models)
    sft_length = min(settings.max_length, settings.prompt_length + settings.max_new_tokens)
    rows = settings.per_device_batch * run.profile.sequences_per_example  # preference phases: 2 rows per pair
    scorers = {k: v for k, v in (("reward_model", reward), ("judge_models", judges)) if v}
    phases = _training_phases(run, rows, sft_length, "fine-tuning: ", scorers)
    first = {k: v for k, v in run.static.items() if k != "optimizer_states"}
    if settings.heldout:  # held-out samples are scored before iteration 1 generates
        first.update(scorers)
    later = dict(first, optimizer_states=run.optimizer, **scorers)
    generation = _generation_terms(run)
    phases["generation (first iteration)"] = dict(first, **generation)
    if settings.num_iterations > 1 or settings.heldout:
        phases["generation (later iterations, held-out)"] = dict(later, **generation)
    if reward:
        scoring_tokens = settings.reward_batch_size * (settings.prompt_length + settings.max_new_tokens)
        rm = Decoder.from_config(settings.reward_models[0])
        phases["reward scoring"] = dict(later, reward_model=reward,
                                        reward_scoring=_no_grad_forward_bytes(rm, scoring_tokens, "none"))
    if settings.judge_tokens:
        deciders = [Decoder.from_config(c) for c in settings.judge_models] + [run.model] * settings.judge_on_policy
        phases["judge scoring"] = dict(later, judge_scoring=max(_judge_scoring_bytes(d, settings) for d in deciders))
    return phases


def _summary(run: _Run, weights: dict, counts: dict) -> tuple[dict, list[str]]:
    """The model summary and the notes of a plan."""
    summary = {"parameters": weights["params"], "trainable_parameters": counts["trainable"],
               "optimizer_states_paged": counts["paged"], "lm_head": run.head,
               "sequences_per_example": run.profile.sequences_per_example}
    if run.vision:
        summary["image_tokens_per_image"] = run.vision.tokens_per_image
        summary["vision_patches_per_image"] = run.vision.patches_per_image
    notes = []
    if "reference_model" in run.static:
        notes.append("full fine-tuning keeps a reference copy of the model")
    if counts["paged"]:
        notes.append(f"{counts['paged'] / GIB:.2f} GiB of optimizer states are paged by bitsandbytes (unified memory "
                     "that spills to CPU RAM under pressure; not counted in the peak)")
    return summary, notes


def _phases(config: dict, settings: RunSettings, profile: MemoryProfile) -> tuple[dict, dict, list[str]]:
    """Every phase of the run as ``{phase: {term: bytes}}``, the model summary and notes."""
    run, weights, counts = _setup(config, settings, profile)
    if profile.generation:
        phases = _sampling_phases(run)
    else:
        phases = _training_phases(run, settings.per_device_batch * profile.sequences_per_example,
                                  settings.max_length, "", {})
    summary, notes = _summary(run, weights, counts)
    return phases, summary, notes


def peak_gib(config: dict, settings: RunSettings, profile: MemoryProfile) -> float:
    phases, _, _ = _phases(config, settings, profile)
    return max(sum(terms.values()) for terms in phases.values()) / GIB


def _largest(config, settings, profile, key: str, limit_gib: float, low: int, high: int) -> int:
    """The largest value of ``settings.key`` in [low, high] whose peak fits ``limit_gib`` (0 if none does)."""
    def fits(value):
        return peak_gib(config, dataclasses.replace(settings, **{key: value}), profile) <= limit_gib

    if not fits(low):
        return 0
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fits(mid) else (low, mid - 1)
    return low


def plan(config: dict, settings: RunSettings, profile: MemoryProfile, gpu_gib: float | None = None) -> dict:
    """The breakdown of the run's peak GPU memory (see the module docstring). Sizes in GiB."""
    phases, summary, notes = _phases(config, settings, profile)
    totals = {name: sum(terms.values()) for name, terms in phases.items()}
    peak_phase = max(totals, key=totals.get)
    result = {
        "peak_gib": round(totals[peak_phase] / GIB, 3),
        "peak_phase": peak_phase,
        "breakdown": {k: round(v / GIB, 3) for k, v in phases[peak_phase].items() if v},
        "phases": {name: round(total / GIB, 3) for name, total in totals.items()},
        **summary,
        "optimizer_states_paged": round(summary["optimizer_states_paged"] / GIB, 3),
        "notes": notes,
    }
    if gpu_gib:
        limit = gpu_gib * FIT_FRACTION
        model = Decoder.from_config(config)
        result.update(
            gpu_gib=gpu_gib,
            fits=result["peak_gib"] <= limit,
            share_of_gpu=round(result["peak_gib"] / gpu_gib, 3),
            largest_batch=_largest(config, settings, profile, "per_device_batch", limit, 1, 1024),
        )
        if not profile.generation:  # sampled rows are prompt + max_new_tokens long whatever max_length allows
            result["largest_max_length"] = _largest(config, settings, profile, "max_length", limit, 16,
                                                    model.max_positions)
        if profile.generation:
            result["largest_generation_batch_size"] = _largest(config, settings, profile, "generation_batch_size",
                                                               limit, 1, 4096)
            result["largest_max_new_tokens"] = _largest(config, settings, profile, "max_new_tokens", limit, 1,
                                                        model.max_positions)
    return result
