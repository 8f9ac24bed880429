"""The architectures the memory planner reads from a config.json: the decoder (layers, widths, attention heads, KV
width, vocabulary, its linear layers) and a vision tower (patches, image tokens, projector). Pure Python, no torch;
used by ``memory_plan.py`` (docs/memory.md)."""

from __future__ import annotations

from dataclasses import dataclass


def _get(config: dict, *names, default=None):
    for name in names:
        if config.get(name) is not None:
            return config[name]
    return default


def text_config(config: dict) -> dict:
    """The language model's config: ``text_config`` of a vision-language model, else the config itself."""
    nested = config.get("text_config") or config.get("llm_config")
    if isinstance(nested, dict) and nested.get("hidden_size"):
        merged = dict(nested)
        if "tie_word_embeddings" not in merged and "tie_word_embeddings" in config:
            merged["tie_word_embeddings"] = config["tie_word_embeddings"]
        return merged
    return config


@dataclass(frozen=True)
class Decoder:
    """A dense (or simple MoE) decoder-only transformer as config.json describes it."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    qkv_bias: bool
    max_positions: int
    experts: int = 1  # MoE: experts per layer (weights); experts_per_token run per token (activations)
    experts_per_token: int = 1

    @classmethod
    def from_config(cls, config: dict) -> Decoder:
        text = text_config(config)
        missing = [k for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                               "vocab_size") if text.get(k) is None]
        if missing:
            raise ValueError(f"config.json lacks {', '.join(missing)}")
        hidden, heads = int(text["hidden_size"]), int(text["num_attention_heads"])
        experts = int(_get(text, "num_local_experts", "num_experts", default=1) or 1)
        return cls(
            hidden=hidden,
            layers=int(text["num_hidden_layers"]),
            heads=heads,
            kv_heads=int(_get(text, "num_key_value_heads", default=heads)),
            head_dim=int(_get(text, "head_dim", default=hidden // heads)),
            intermediate=int(_get(text, "moe_intermediate_size", default=text["intermediate_size"]) if experts > 1
                             else text["intermediate_size"]),
            vocab=int(text["vocab_size"]),
            tied=bool(text.get("tie_word_embeddings", False)),
            qkv_bias=bool(_get(text, "attention_bias", default=text.get("model_type") == "qwen2")),
            max_positions=int(_get(text, "max_position_embeddings", default=131072)),
            experts=experts,
            experts_per_token=int(_get(text, "num_experts_per_tok", default=1)),
        )

    @property
    def kv_width(self) -> int:
        return self.kv_heads * self.head_dim

    def kv_cache_bytes(self, tokens: float, bytes_per_value: float) -> float:
        """The KV cache of ``tokens`` tokens (sequences x length): a key and a value per layer, ``kv_width`` wide."""
        return 2 * self.layers * self.kv_width * bytes_per_value * tokens

    def linears(self) -> list[tuple[str, int, int]]:
        """``(name, in_features, out_features)`` of one layer's linear layers (MoE experts repeated)."""
        h, q, kv, i = self.hidden, self.heads * self.head_dim, self.kv_width, self.intermediate
        attention = [("q_proj", h, q), ("k_proj", h, kv), ("v_proj", h, kv), ("o_proj", q, h)]
        mlp = [("gate_proj", h, i), ("up_proj", h, i), ("down_proj", i, h)]
        return attention + mlp * self.experts

    def other_params(self, lm_head: bool = True) -> int:
        """Embeddings, LM head (untied), norms and biases: what stays 16-bit in a 4-bit model."""
        norms = self.layers * 2 * self.hidden + self.hidden
        bias = self.layers * (self.heads + 2 * self.kv_heads) * self.head_dim if self.qkv_bias else 0
        head = self.vocab * self.hidden if lm_head and not self.tied else 0
        return self.vocab * self.hidden + head + norms + bias


@dataclass(frozen=True)
class VisionTower:
    """The vision encoder (+ projector) of a vision-language model, from its ``vision_config``."""

    kind: str
    hidden: int
    layers: int
    intermediate: int
    mlp_linears: int  # 2 (fc1/fc2) or 3 (gated)
    patches_per_image: int  # tokens through the vision encoder per image
    tokens_per_image: int  # image tokens in the language model's sequence
    projector: tuple[tuple[str, int, int], ...]  # (name, in, out) linear layers between vision and text
    other_params: int  # patch/position embeddings, norms (16-bit in a 4-bit model)

    @classmethod
    def from_config(cls, config: dict, text: Decoder, image_tokens: int | None = None) -> VisionTower | None:
        vision = config.get("vision_config")
        if not isinstance(vision, dict):
            return None
        kind = str(config.get("model_type", ""))
        hidden = int(_get(vision, "hidden_size", "embed_dim", default=1024))
        layers = int(_get(vision, "num_hidden_layers", "depth", default=24))
        patch = int(_get(vision, "patch_size", default=14))
        intermediate = int(_get(vision, "intermediate_size", default=4 * hidden))
        image = int(_get(vision, "image_size", default=336))
        grid = (image // patch) ** 2
        if kind.startswith("qwen2") and "vl" in kind:  # dynamic resolution: a 1036x756 px image, 2x2 patches merged
            merge = int(_get(vision, "spatial_merge_size", default=2))
            tokens = image_tokens or 37 * 27
            out = int(_get(vision, "out_hidden_size", default=text.hidden))
            merged = hidden * merge**2
            projector = (("merger.mlp.0", merged, merged), ("merger.mlp.2", merged, out))
            return cls(kind, hidden, layers, intermediate, 3, tokens * merge**2, tokens, projector,
                       patch * patch * 3 * 2 * hidden + layers * 2 * hidden)
        if kind in ("idefics3", "smolvlm"):  # 384 px tiles of (grid / scale^2) tokens; a 4:3 image: 4x3 tiles + 1
            scale = int(config.get("scale_factor", 3))
            per_tile = grid // scale**2
            tiles = (image_tokens // per_tile) if image_tokens else 13
            projector = (("modality_projection.proj", hidden * scale**2, text.hidden),)
            return cls(kind, hidden, layers, intermediate, 2, max(tiles, 1) * grid, max(tiles, 1) * per_tile,
                       projector, patch * patch * 3 * hidden + grid * hidden + layers * 4 * hidden)
        tokens = image_tokens or int(config.get("image_seq_length") or grid)  # LLaVA: one token per patch, no CLS
        projector = (("linear_1", hidden, text.hidden), ("linear_2", text.hidden, text.hidden))
        return cls(kind, hidden, layers, intermediate, 2, grid + 1, tokens, projector,
                   patch * patch * 3 * hidden + (grid + 1) * hidden + layers * 4 * hidden)

    def linears(self) -> list[tuple[str, int, int]]:
        h, i = self.hidden, self.intermediate
        if self.mlp_linears == 2:
            mlp = [("fc1", h, i), ("fc2", i, h)]
        else:
            mlp = [("gate", h, i), ("up", h, i), ("down", i, h)]
        return [("q", h, h), ("k", h, h), ("v", h, h), ("o", h, h)] + mlp
