"""Config pieces shared by the trainers: TRL's default config when ``args`` is None, refusing fields that do not
apply to a method, and the ``fused_lm_head`` knob of the DPOTrainer-based trainers."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import DPOConfig


@dataclass
class FusedHeadDPOConfig(DPOConfig):
    """:class:`trl.DPOConfig` plus the choice of how completion tokens are scored (ORPO, mDPO)."""

    fused_lm_head: bool | None = field(
        default=None,
        metadata={"help": "Score tokens with TRL's fused LM head (never materialises the [batch, seq, vocab] logits) "
                  "instead of full logits. Default: fused where its Triton kernel runs (CUDA/XPU), full logits "
                  "elsewhere."},
    )


def resolve_config(args, config_cls: type, model, suffix: str):
    """``args`` checked to be a ``config_cls``; ``None`` gives TRL's default, ``config_cls("<model name>-<suffix>")``."""
    if args is None:
        name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "model")
        return config_cls(f"{str(name).rstrip('/').split('/')[-1]}-{suffix}")
    if not isinstance(args, config_cls):
        raise TypeError(f"`args` must be an instance of {config_cls.__name__}, got {type(args).__name__}")
    return args


def refuse_unsupported(config, unsupported: dict, reason: str) -> None:
    """Raise if a field in ``unsupported`` (name -> the only accepted value) was set to anything else."""
    for name, default in unsupported.items():
        value = getattr(config, name)
        if value != default:
            raise ValueError(f"{reason}: `{name}` does not apply (got {value!r}); remove it")
