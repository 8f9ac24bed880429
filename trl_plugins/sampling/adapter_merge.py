"""LoRA adapters merged into the weights for a generation phase, and the model restored bit for bit afterwards.

Docs: docs/methods/sampling_engine.md (section "Generation"). Used by :class:`.generation.TransformersBackend`:

- **16-bit base** (``merge_adapters``): every LoRA layer is merged in place (peft's own ``merge``), so generation runs
  plain linear layers. Subtracting the delta again (peft's ``unmerge``) does not give the original weights back in
  floating point (in bf16 it moves them by about one unit in the last place per phase), so the base weights touched by
  the merge are copied to host memory first and copied back afterwards: exact, at the cost of one host copy of the
  adapted weights (``2 x`` their parameter count in bytes for bf16) and two copies per phase.
- **4-/8-bit base** (``merge_quantized``): quantized weights cannot take a delta exactly, so each LoRA linear is swapped
  for a new 16-bit ``nn.Linear`` holding ``dequantize(W) + delta`` (compute dtype) for the phase, and the original
  modules are put back afterwards, untouched. Extra device memory: :func:`merged_copy_bytes` (2 bytes per adapted
  weight in bf16, e.g. about 14 GB for Llama-3.1-8B, 2.6 GB for Qwen2.5-1.5B); freed when the phase ends.
- Anything else (no LoRA, DoRA on a quantized base, adapters disabled or already merged, sharded parameters): the
  model is left as it is and generation runs the adapter unmerged.
"""

from __future__ import annotations

import contextlib

import torch


def _lora_layers(model) -> list[tuple[str, torch.nn.Module]]:
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:  # pragma: no cover - peft is a dependency
        return []
    return [(name, m) for name, m in model.named_modules() if isinstance(m, LoraLayer)]


def _is_quantized(param) -> bool:
    return type(param).__name__ in ("Params4bit", "Int8Params") or not param.dtype.is_floating_point


def _active(module) -> list[str]:
    return [a for a in module.active_adapters if a in module.lora_A]


def merge_plan(model, merge_adapters: bool = True, merge_quantized: bool = False) -> str:
    """How :func:`merged_for_generation` would treat ``model``: ``"inplace"``, ``"copy"`` or ``"none"``."""
    layers = _lora_layers(model)
    if not layers:
        return "none"
    for _, m in layers:
        base = m.get_base_layer()
        if m.merged or m.disable_adapters or not _active(m):
            return "none"
        params = list(base.parameters(recurse=False))
        if any(hasattr(p, "ds_numel") or type(p).__name__ == "DTensor" or p.numel() == 0 for p in params):
            return "none"  # ZeRO-3 / FSDP shards: no full weight on this process
    quantized = any(_is_quantized(m.get_base_layer().weight) for _, m in layers)
    if not quantized:
        return "inplace" if merge_adapters else "none"
    if not merge_quantized:
        return "none"
    for _, m in layers:
        base = m.get_base_layer()
        dora = any(m.use_dora.get(a, False) for a in _active(m))
        if dora or not (hasattr(base, "in_features") and hasattr(base, "out_features")):
            return "none"
    return "copy"


def merged_copy_bytes(model, dtype: torch.dtype = torch.bfloat16) -> int:
    """Device bytes the ``merge_quantized`` copy allocates for ``model`` (adapted quantized linears in ``dtype``)."""
    size = torch.empty((), dtype=dtype).element_size()
    return sum(m.get_base_layer().in_features * m.get_base_layer().out_features * size
               for _, m in _lora_layers(model) if _is_quantized(m.get_base_layer().weight))


@contextlib.contextmanager
def _merged_inplace(layers):
    backups = []
    with torch.no_grad():
        for _, m in layers:
            base = m.get_base_layer()
            backups.append([(p, p.detach().to("cpu", copy=True)) for p in base.parameters(recurse=False)])
        try:
            for _, m in layers:
                m.merge(adapter_names=_active(m))
            yield
        finally:
            for (_, m), saved in zip(layers, backups):
                for param, copy in saved:
                    param.copy_(copy)  # bit-exact: the original weights, not W + delta - delta
                m.merged_adapters = []


def _dequantized(base, dtype: torch.dtype) -> torch.Tensor:
    """The weight a bitsandbytes layer computes with, as a ``dtype`` matrix."""
    from peft.utils.integrations import dequantize_bnb_weight

    weight = base.weight
    state = getattr(weight, "quant_state", None)  # never in bitsandbytes' CPU inference layout: see bnb_cpu.py

    if type(weight).__name__ != "Params4bit":
        state = getattr(base, "state", None)
    return dequantize_bnb_weight(weight, state=state).to(dtype)


@contextlib.contextmanager
def _merged_copy(model, layers):
    swapped = []
    try:
        with torch.no_grad():
            for name, m in layers:
                base = m.get_base_layer()
                dtype = getattr(base, "compute_dtype", None) or m.lora_A[_active(m)[0]].weight.dtype
                weight = _dequantized(base, dtype) if _is_quantized(base.weight) else base.weight.to(dtype, copy=True)
                for adapter in _active(m):
                    weight += m.get_delta_weight(adapter).to(dtype)
                linear = torch.nn.Linear(base.in_features, base.out_features, bias=base.bias is not None,
                                         device=weight.device, dtype=dtype)
                linear.weight.copy_(weight)
                del weight
                if base.bias is not None:
                    linear.bias.copy_(base.bias.to(dtype))
                parent_name, _, child = name.rpartition(".")
                parent = model.get_submodule(parent_name)
                setattr(parent, child, linear)
                swapped.append((parent, child, m))
        yield
    finally:
        for parent, child, original in swapped:
            setattr(parent, child, original)


def copy_fits(model, reserve_bytes: int = 0, margin: float = 1.1) -> bool:
    """``merge_quantized: auto``: whether the merged 16-bit copy (plus ``reserve_bytes``, e.g. the generation phase's
    KV cache) fits in the free memory of the model's GPU now, with ``margin``. Never on a CPU: no speed gain was
    measured there."""
    device = next(model.parameters()).device
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return (merged_copy_bytes(model) + reserve_bytes) * margin <= free


@contextlib.contextmanager
def merged_for_generation(model, merge_adapters: bool = True, merge_quantized: bool | str = False,
                          reserve_bytes: int = 0):
    """Context manager: the model with its LoRA adapters merged (see the module docstring); yields the plan used.
    ``merge_quantized="auto"`` merges a quantized base only when :func:`copy_fits` (``reserve_bytes`` beside it)."""
    if merge_quantized == "auto":
        merge_quantized = merge_plan(model, merge_adapters, True) == "copy" and copy_fits(model, reserve_bytes)
    plan = merge_plan(model, merge_adapters, bool(merge_quantized))
    if plan == "inplace":
        with _merged_inplace(_lora_layers(model)):
            yield plan
    elif plan == "copy":
        with _merged_copy(model, _lora_layers(model)):
            yield plan
    else:
        yield plan
