"""The memory planner (trl_plugins.planning.memory_plan) and ``trl-plugins plan`` (trl_plugins.cli.plan).

Terms are checked against numbers worked out by hand from the published configs, the per-layer activation bytes
against what autograd really saves on a LoRA decoder layer, the whole plan against the four GPU measurements of
issue 10, and every shipped consumer-GPU recipe against its memory tier (no network: HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from trl_plugins.cli.plan import parse_gpu, plan_run, run_plan
from trl_plugins.errors import ConfigError, TrlPluginsError, UsageError
from trl_plugins.planning.inputs import SHIPPED_CONFIGS
from trl_plugins.planning.memory_plan import (
    FIT_FRACTION,
    GIB,
    LAYER_BYTES,
    NF4_BYTES,
    NF4_BYTES_NO_DOUBLE_QUANT,
    Decoder,
    MemoryProfile,
    RunSettings,
    _optimizer_bytes,
    peak_gib,
    plan,
    profile_for,
)

from helpers import method_of

REPO = Path(__file__).resolve().parent.parent
CONSUMER_RECIPES = sorted((REPO / "recipes").glob("*/*/*qlora.yaml"))  # config_qlora.yaml, spin_qlora.yaml, ...


def shipped(name: str) -> dict:
    return json.loads((SHIPPED_CONFIGS / f"{name}.json").read_text())


LLAMA_8B, QWEN_1_5B = shipped("meta-llama--Llama-3.1-8B-Instruct"), shipped("Qwen--Qwen2.5-1.5B-Instruct")
QLORA = dict(load_in_4bit=True, gradient_accumulation_steps=1)


# -- terms, by hand -----------------------------------------------------------------------------------------------
def test_nf4_with_double_quantization_costs_0_127_bits_per_weight_over_4():
    """QLoRA §3: the double-quantized constants cost 8/64 + 32/(64*256) = 0.127 bits per weight (0.5 without)."""
    assert NF4_BYTES * 8 - 4 == pytest.approx(0.127, abs=0.0005)
    assert NF4_BYTES_NO_DOUBLE_QUANT * 8 - 4 == pytest.approx(0.5)


def test_llama_8b_weights_by_hand():
    """4-bit NF4 linear layers + 16-bit embeddings and untied LM head (bitsandbytes skips lm_head) + norms."""
    per_layer = 2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336
    assert per_layer == 218_103_808
    linear = 32 * per_layer
    sixteen_bit = 2 * 128256 * 4096 + 32 * 2 * 4096 + 4096
    expected = linear * NF4_BYTES + sixteen_bit * 2
    got = plan(LLAMA_8B, RunSettings(per_device_batch=1, lora_r=64, **QLORA), MemoryProfile())["breakdown"]
    assert got["base_weights"] == pytest.approx(expected / GIB, abs=0.001)
    assert expected / GIB == pytest.approx(5.31, abs=0.01)
    sixteen = plan(LLAMA_8B, RunSettings(lora_r=64), MemoryProfile())["breakdown"]["base_weights"]
    assert sixteen == pytest.approx((linear + sixteen_bit) * 2 / GIB, abs=0.001)  # bf16: 2 bytes per parameter


def test_lora_parameters_by_hand():
    """all-linear LoRA: r x (in + out) per adapted linear; bf16 on a 4-bit base (TRL casts), fp32 on 16-bit (peft)."""
    llama = plan(LLAMA_8B, RunSettings(lora_r=64, **QLORA), MemoryProfile())
    assert llama["trainable_parameters"] == 64 * (8192 + 5120 + 5120 + 8192 + 3 * 18432) * 32 == 167_772_160
    assert llama["breakdown"]["lora_params"] == pytest.approx(167_772_160 * 2 / GIB, abs=0.001)
    qwen = plan(QWEN_1_5B, RunSettings(lora_r=16), MemoryProfile())
    assert qwen["trainable_parameters"] == 16 * (3072 + 1792 + 1792 + 3072 + 3 * 10496) * 28 == 18_464_768
    assert qwen["breakdown"]["lora_params"] == pytest.approx(18_464_768 * 4 / GIB, abs=0.001)
    q_and_v = plan(QWEN_1_5B, RunSettings(lora_r=16, lora_targets=["q_proj", "v_proj"]), MemoryProfile())
    assert q_and_v["trainable_parameters"] == 16 * (3072 + 1792) * 28


def test_generation_kv_cache_by_hand():
    """The RAFT 8B run of issue 10: 64 sequences x (150 + 512) tokens x 2 (K, V) x 32 layers x 8 heads x 128 x 2 B."""
    settings = RunSettings(per_device_batch=8, lora_r=64, generation_batch_size=64, max_new_tokens=512,
                           prompt_length=150, **QLORA)
    result = plan(LLAMA_8B, settings, profile_for(method_of("raft")))
    assert result["peak_phase"].startswith("generation")
    assert result["breakdown"]["generation_kv_cache"] == pytest.approx(64 * 662 * 2 * 32 * 8 * 128 * 2 / GIB, abs=6e-4)
    assert result["breakdown"]["generation_kv_cache"] == pytest.approx(5.172, abs=0.001)


def test_merged_generation_copy_by_hand():
    """generation_merge_quantized: 2 bytes per adapted weight of every layer (Llama-3.1-8B, all-linear: q, o 4096^2;
    k, v 4096 x 1024; gate, up, down 4096 x 14336; 32 layers), on top of the generation phase."""
    import dataclasses

    settings = RunSettings(per_device_batch=8, lora_r=64, generation_batch_size=64, max_new_tokens=512,
                           prompt_length=150, **QLORA)
    merged = plan(LLAMA_8B, dataclasses.replace(settings, merged_generation_copy=True), profile_for(method_of("raft")))
    per_layer = 2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336
    assert merged["breakdown"]["generation_merged_copy"] == pytest.approx(2 * 32 * per_layer / GIB, abs=1e-3)
    plain = plan(LLAMA_8B, settings, profile_for(method_of("raft")))
    assert merged["peak_gib"] == pytest.approx(plain["peak_gib"] + 2 * 32 * per_layer / GIB, abs=0.01)


def test_checkpointed_activations_by_hand():
    """Gradient checkpointing keeps each layer's input: layers x rows x length x hidden x 2 bytes (bf16)."""
    result = plan(QWEN_1_5B, RunSettings(per_device_batch=2, max_length=1024, lora_r=16, **QLORA),
                  profile_for(method_of("orpo")))
    assert result["breakdown"]["activations_stored"] == pytest.approx(28 * 4 * 1024 * 1536 * 2 / GIB, abs=6e-4)
    no_checkpointing = plan(QWEN_1_5B, RunSettings(per_device_batch=2, max_length=1024, lora_r=16,
                                                   gradient_checkpointing=False, **QLORA), profile_for(method_of("orpo")))
    assert no_checkpointing["peak_gib"] > 4 * result["peak_gib"]  # every layer's activations stay


def test_full_logits_cost_ten_bytes_per_vocabulary_entry():
    """A trainer without the fused LM head (the default for third-party plugins) holds [rows, length, vocab] logits:
    bf16 logits + an fp32 copy for the loss + its fp32 gradient."""
    settings = RunSettings(per_device_batch=1, max_length=512, lora_r=16, **QLORA)
    result = plan(QWEN_1_5B, settings, MemoryProfile())
    assert result["peak_phase"] == "LM head"
    assert result["breakdown"]["logits"] == pytest.approx((512 * 151936 * 10 + 512 * 8 * 1536) / GIB, abs=6e-4)
    fused = plan(QWEN_1_5B, settings, MemoryProfile(lm_head="fused"))
    assert fused["peak_gib"] < result["peak_gib"] - 0.5


def test_eight_bit_optimizer_states_and_paging():
    """bitsandbytes 8-bit Adam: 2 bytes + two fp32 absmax per 256 elements; tensors < 4096 elements stay 32-bit;
    the paged variant pages tensors of >= 1e5 elements (unified memory, outside the PyTorch allocator)."""
    kept, paged = _optimizer_bytes([1000, 50_000, 200_000], 2, "paged_adamw_8bit")
    assert kept == pytest.approx(1000 * 8 + 50_000 * (2 + 8 / 256))
    assert paged == pytest.approx(200_000 * (2 + 8 / 256))
    assert _optimizer_bytes([200_000], 2, "adamw_8bit") == (pytest.approx(200_000 * (2 + 8 / 256)), 0)
    assert _optimizer_bytes([200_000], 4, "adamw_torch") == (200_000 * 8, 0)  # two states in the parameter dtype


def test_reward_model_of_the_sampling_recipes_is_counted_in_bf16():
    rm = shipped("Skywork--Skywork-Reward-V2-Qwen3-0.6B")
    per_layer = 1024 * 2048 + 2 * 1024 * 1024 + 2048 * 1024 + 3 * 1024 * 3072
    params = 28 * per_layer + 151936 * 1024 + 28 * 2 * 1024 + 1024 + 1024  # + norms, final norm, score head
    settings = RunSettings(per_device_batch=8, lora_r=64, generation_batch_size=64, max_new_tokens=512,
                           reward_models=[rm], num_iterations=2, **QLORA)
    result = plan(LLAMA_8B, settings, profile_for(method_of("raft")))
    assert result["peak_phase"] == "generation (later iterations, held-out)"  # the reward model stays loaded
    first = plan(LLAMA_8B, RunSettings(**{**settings.__dict__, "num_iterations": 1}), profile_for(method_of("raft")))
    assert "generation (later iterations, held-out)" not in first["phases"]
    assert result["breakdown"]["reward_model"] == pytest.approx(params * 2 / GIB, abs=6e-4)


def test_accumulated_gradients_stay_for_the_whole_backward():
    one = plan(QWEN_1_5B, RunSettings(lora_r=16, load_in_4bit=True, gradient_accumulation_steps=1),
               profile_for(method_of("orpo")))
    many = plan(QWEN_1_5B, RunSettings(lora_r=16, load_in_4bit=True, gradient_accumulation_steps=8),
                profile_for(method_of("orpo")))
    assert "gradients" not in one["breakdown"]  # the peak is at the top layer, before any LoRA gradient exists
    assert many["breakdown"]["gradients"] == pytest.approx(18_464_768 * 2 / GIB, abs=0.001)


def test_vision_language_plan_counts_the_vision_tower_and_three_sequences():
    llava = shipped("llava-hf--llava-1.5-7b-hf")
    settings = RunSettings(per_device_batch=2, max_length=1536, lora_r=64, **QLORA)
    result = plan(llava, settings, profile_for(method_of("mdpo")))
    assert result["image_tokens_per_image"] == 576 and result["vision_patches_per_image"] == 577
    vision_linear = 24 * (4 * 1024 * 1024 + 2 * 1024 * 4096) + 1024 * 4096 + 4096 * 4096
    assert result["breakdown"]["vision_tower"] > vision_linear * NF4_BYTES / GIB
    two = plan(llava, settings, MemoryProfile(sequences_per_example=2, reference_forward=True, lm_head="fused",
                                              images=True))
    assert result["peak_gib"] > two["peak_gib"]


# -- activations per layer, against autograd ----------------------------------------------------------------------
def _layer_bytes_per_token(lora_dtype, dropout: float, h=256, i=640, heads=4, kv=2, r=8, rows=2, length=64):
    """Live bytes per token after one LoRA decoder layer's forward under bf16 autocast (saved tensors + output),
    and the peak through its backward, counted with a dispatch-mode tracker of tensor storages."""
    import weakref

    import torch
    from peft import LoraConfig, get_peft_model
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_map_only
    from transformers import AutoModelForCausalLM, LlamaConfig

    class Live(TorchDispatchMode):
        def __init__(self, skip):
            super().__init__()
            self.skip, self.live, self.now, self.peak = skip, {}, 0, 0

        def _track(self, tensor):
            storage = tensor.untyped_storage()
            key = storage.data_ptr()
            if key in self.live or key in self.skip or storage.nbytes() == 0:
                return
            self.live[key] = storage.nbytes()
            self.now += storage.nbytes()
            self.peak = max(self.peak, self.now)

            def forget(key=key, size=storage.nbytes()):
                if self.live.pop(key, None) is not None:
                    self.now -= size

            weakref.finalize(storage, forget)

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            tree_map_only(torch.Tensor, self._track, out)
            return out

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=h, intermediate_size=i, num_attention_heads=heads, num_key_value_heads=kv,
                         num_hidden_layers=1, vocab_size=64, attn_implementation="sdpa")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=dropout, target_modules="all-linear"))
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.to(lora_dtype)
    model.train()
    inner = model.base_model.model.model
    x = torch.randn(rows, length, h, dtype=torch.bfloat16, requires_grad=True)
    positions = torch.arange(length)[None].expand(rows, length)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cos, sin = inner.rotary_emb(x, positions)
    grad = torch.randn_like(x)
    skip = {t.untyped_storage().data_ptr() for t in [*model.parameters(), x, cos, sin, grad]}
    tracker = Live(skip)
    with tracker:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = inner.layers[0](x, attention_mask=None, position_embeddings=(cos, sin), position_ids=positions)
        after_forward = tracker.now
        out.backward(grad)
    tokens = rows * length
    return after_forward / tokens, tracker.peak / tokens


@pytest.mark.parametrize("kind, lora_dtype, dropout", [("lora-bf16", "bfloat16", 0.05), ("lora-fp32", "float32", 0.05),
                                                       ("lora-bf16-nodropout", "bfloat16", 0.0),
                                                       ("lora-fp32-nodropout", "float32", 0.0)])
def test_layer_activation_bytes_match_what_autograd_saves(kind, lora_dtype, dropout):
    import torch

    h, i, kv, r = 256, 640, 128, 8
    live, peak = _layer_bytes_per_token(getattr(torch, lora_dtype), dropout, h=h, i=i, kv=2, r=r)
    a, b, c, d = LAYER_BYTES[kind]["live"]
    e, f, g, k = LAYER_BYTES[kind]["extra"]
    assert live == pytest.approx(a * h + b * i + c * kv + d * r, rel=0.03)
    assert peak == pytest.approx(a * h + b * i + c * kv + d * r + e * h + f * i + g * kv + k * r, rel=0.06)


# -- calibration against GPU measurements (issue 10: H200, torch.cuda.max_memory_allocated) -------------------------
MEASURED = [  # recipe, overrides of the measured run, measured GiB
    ("orpo", "qwen2.5-1.5b-instruct/orpo/config_qlora",
     ["--per_device_train_batch_size", "2", "--max_length", "1024"], 2.04),
    ("kto-weighted", "qwen2.5-1.5b-instruct/kto_weighted/config_qlora",
     ["--per_device_train_batch_size", "2", "--max_length", "1024"], 1.61),
    ("orpo", "llama-3.1-8b-instruct/orpo/config_qlora",
     ["--per_device_train_batch_size", "2", "--max_length", "1024"], 7.67),
    # one iteration, no held-out set: the reward model loads after the first generate call (weights + a full KV
    # cache alone are 10.48 GiB, so the 0.6B reward model cannot have been resident)
    ("raft", "llama-3.1-8b-instruct/raft/config_qlora",
     ["--num_iterations", "1", "--heldout_prompts", "0", "--prompt_length", "150"], 10.66),
]


@pytest.mark.parametrize("method, recipe, overrides, measured", MEASURED, ids=[m[1] for m in MEASURED])
def test_plan_is_within_25_percent_of_the_gpu_measurements(method, recipe, overrides, measured):
    result, _ = plan_run(method, ["--config", recipe, "--gradient_accumulation_steps", "1", *overrides])
    assert abs(result["peak_gib"] / measured - 1) <= 0.25, (result["peak_gib"], measured)


# -- every shipped consumer-GPU recipe ------------------------------------------------------------------------------
def test_there_are_consumer_recipes():
    assert len(CONSUMER_RECIPES) >= 19


@pytest.mark.parametrize("path", CONSUMER_RECIPES, ids=lambda p: str(p.relative_to(REPO / "recipes").with_suffix("")))
def test_shipped_recipe_plans_offline_within_50_to_85_percent_of_its_tier(path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    text = path.read_text()
    tier = int(re.search(r"peft_preset:\s*q?lora-(\d+)gb", text).group(1))
    method = path.parent.name.replace("_", "-")
    result, _ = plan_run(method, ["--config", str(path), "--gpu", f"{tier}GB"])
    assert 0.50 <= result["peak_gib"] / tier <= FIT_FRACTION, f"{path}: {result['peak_gib']} GiB of {tier} GB"
    assert result["fits"] and result["largest_batch"] >= 1
    stated = re.search(r"# Planned peak GPU memory: (\d+\.\d+) GiB", text)
    assert stated, f"{path}: the header must state its planned peak"
    assert float(stated.group(1)) == pytest.approx(result["peak_gib"], abs=0.006), f"{path}: stale header"
    assert "measured on a GPU" in text


@pytest.mark.parametrize("gigabytes", [8, 12, 16, 24])
@pytest.mark.parametrize("model", ["meta-llama/Llama-3.1-8B-Instruct", "mistralai/Mistral-7B-Instruct-v0.3"])
def test_qlora_presets_hold_a_7_to_8b_pair_run_within_their_tier(gigabytes, model):
    """What the presets are sized for (models/peft_presets.py): ORPO at max_length 1024 with the preset's own batch."""
    result, run = plan_run("orpo", ["--model_name_or_path", model, "--peft_preset", f"qlora-{gigabytes}gb",
                                    "--output_dir", "outputs/x", "--max_length", "1024"])
    assert run["settings"].lora_r == {8: 8, 12: 16, 16: 32, 24: 64}[gigabytes]
    assert 0.50 <= result["peak_gib"] / gigabytes <= FIT_FRACTION


def test_profiles_declared_by_a_method_win_and_third_party_default_is_one_sequence():
    class Plugin:
        memory_profile = MemoryProfile(sequences_per_example=4)

    assert profile_for(Plugin) == MemoryProfile(sequences_per_example=4)
    assert profile_for(method_of("orpo")).sequences_per_example == 2 and profile_for(method_of("orpo")).lm_head == "fused"
    assert profile_for(method_of("mdpo")).sequences_per_example == 3 and profile_for(method_of("kto-weighted")).kl_batch
    assert profile_for(method_of("margin-rm")).lm_head == "none" and profile_for(method_of("rest-em")).generation
    assert profile_for(object()) == MemoryProfile()
    with pytest.raises(ValueError):
        MemoryProfile(sequences_per_example=0)


def test_largest_batch_and_max_length_are_the_fitting_boundary():
    settings = RunSettings(per_device_batch=2, max_length=1024, lora_r=16, **QLORA)
    result = plan(QWEN_1_5B, settings, profile_for(method_of("orpo")), gpu_gib=12)
    limit = 12 * FIT_FRACTION
    import dataclasses

    batch, length = result["largest_batch"], result["largest_max_length"]
    assert peak_gib(QWEN_1_5B, dataclasses.replace(settings, per_device_batch=batch), profile_for(method_of("orpo"))) <= limit
    assert peak_gib(QWEN_1_5B, dataclasses.replace(settings, per_device_batch=batch + 1),
                    profile_for(method_of("orpo"))) > limit
    assert peak_gib(QWEN_1_5B, dataclasses.replace(settings, max_length=length), profile_for(method_of("orpo"))) <= limit
    assert peak_gib(QWEN_1_5B, dataclasses.replace(settings, max_length=length + 1),
                    profile_for(method_of("orpo"))) > limit


def test_plan_command_prints_a_breakdown_and_json(capsys):
    assert run_plan("orpo", ["--config", "qwen2.5-1.5b-instruct/orpo/config_qlora", "--gpu", "12GB"]) == 0
    text = capsys.readouterr().out
    assert "base_weights" in text and "fits a 12 GiB GPU" in text and "largest per-device batch" in text
    assert run_plan("orpo", ["--config", "qwen2.5-1.5b-instruct/orpo/config_qlora", "--json", "--gpu=12"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["method"] == "orpo" and data["peak_gib"] == pytest.approx(sum(data["breakdown"].values()), abs=0.01)
    assert data["gpu_gib"] == 12 and data["fits"] is True


def test_plan_reads_a_local_model_folder(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(QWEN_1_5B))
    result, _ = plan_run("orpo", ["--config", "qwen2.5-1.5b-instruct/orpo/config_qlora",
                                  "--model_name_or_path", str(tmp_path)])
    expected, _ = plan_run("orpo", ["--config", "qwen2.5-1.5b-instruct/orpo/config_qlora"])
    assert result["peak_gib"] == expected["peak_gib"]


def test_plan_module_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, trl_plugins.planning.memory_plan; sys.exit('torch' in sys.modules or 'transformers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


# -- bad input: one line, exit code 2 -------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["24 gigs", "GB", "-8GB", "0", "24TB"])
def test_unknown_gpu_size_is_a_usage_error(value):
    with pytest.raises(UsageError, match="--gpu") as info:
        parse_gpu(value)
    assert info.value.exit_code == 2 and "\n" not in str(info.value)


@pytest.mark.parametrize("value, gib", [("24GB", 24), ("24gb", 24), ("12 GiB", 12), ("80", 80), ("7.5G", 7.5)])
def test_gpu_sizes(value, gib):
    assert parse_gpu(value) == gib


def test_model_without_config_json_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    recipe = "qwen2.5-1.5b-instruct/orpo/config_qlora"
    with pytest.raises(ConfigError, match="without config.json") as info:
        plan_run("orpo", ["--config", recipe, "--model_name_or_path", str(tmp_path)])
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="no config.json for 'someone/unknown-model' offline"):
        plan_run("orpo", ["--config", recipe, "--model_name_or_path", "someone/unknown-model"])


def test_unknown_method_and_bad_flags_are_one_line_errors():
    with pytest.raises(TrlPluginsError) as info:
        run_plan("no-such-method", ["--config", "qwen2.5-1.5b-instruct/orpo/config_qlora"])
    assert info.value.exit_code == 2 and "no-such-method" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(UsageError, match="unknown argument '--per_device_batch'"):  # parsed exactly as `train` does
        plan_run("orpo", ["--config", "qwen2.5-1.5b-instruct/orpo/config_qlora", "--per_device_batch", "4"])
    with pytest.raises(UsageError, match="--prompt_length expects an integer"):
        plan_run("raft", ["--config", "qwen2.5-1.5b-instruct/raft/config_qlora", "--prompt_length", "many"])


def test_unplannable_config_is_a_config_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mystery", "hidden_size": 8}))
    with pytest.raises(ConfigError, match="cannot plan this architecture"):
        plan_run("orpo", ["--config", "qwen2.5-1.5b-instruct/orpo/config_qlora", "--model_name_or_path",
                          str(tmp_path)])


def test_decoder_reads_head_dim_and_tied_embeddings():
    llama = Decoder.from_config(LLAMA_8B)
    assert (llama.head_dim, llama.kv_width, llama.tied) == (128, 1024, False)
    qwen = Decoder.from_config(QWEN_1_5B)
    assert (qwen.head_dim, qwen.kv_width, qwen.tied, qwen.qkv_bias) == (128, 256, True, True)
