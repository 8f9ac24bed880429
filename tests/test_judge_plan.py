"""A judge in the memory plan (``trl-plugins plan``): a judge that is its own model adds its weights (bf16 or 4-bit,
by hand from the published config) and its forward; the policy judging (``judge:policy``, or its base under LoRA)
adds no weights; ``judge_mode: score`` adds the KV cache of what the judge writes.

    python -m pytest tests/test_judge_plan.py -q
"""

from __future__ import annotations

import json

import pytest

from trl_plugins.cli.plan import plan_run
from trl_plugins.errors import ConfigError
from trl_plugins.planning.inputs import SHIPPED_CONFIGS
from trl_plugins.planning.memory_plan import GIB, NF4_BYTES

RECIPE = ["--config", "qwen2.5-1.5b-instruct/iterative_dpo/config_qlora", "--gpu", "24GB"]
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
# Llama-3.1-8B: 32 layers of q, o (4096^2), k, v (4096 x 1024), gate, up, down (4096 x 14336); untied embeddings and
# LM head (128256 x 4096); two norms per layer and a final one
LLAMA_LINEAR = 32 * (2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336)
LLAMA_OTHER = 2 * 128256 * 4096 + 32 * 2 * 4096 + 4096


def planned(*flags: str) -> dict:
    result, _ = plan_run("iterative-dpo", [*RECIPE, *flags])
    return result


def test_a_separate_judge_adds_its_weights_by_hand(pretend_gpu):
    plain = planned()
    bf16 = planned("--reward_funcs", f"judge:{LLAMA}", "--judge_template", "helpful_harmless")
    nf4 = planned("--reward_funcs", f"judge:{LLAMA}", "--judge_template", "helpful_harmless",
                  "--judge_load_in_4bit", "true")
    assert bf16["breakdown"]["judge_models"] == pytest.approx((LLAMA_LINEAR + LLAMA_OTHER) * 2 / GIB, abs=1e-3)
    assert nf4["breakdown"]["judge_models"] == pytest.approx((LLAMA_LINEAR * NF4_BYTES + LLAMA_OTHER * 2) / GIB,
                                                             abs=1e-3)
    for result, weights in ((bf16, bf16["breakdown"]["judge_models"]), (nf4, nf4["breakdown"]["judge_models"])):
        # loaded at the first scoring (held-out, before iteration 1) and kept through every later phase
        for phase, total in plain["phases"].items():
            assert result["phases"][phase] == pytest.approx(total + weights, abs=2e-3), phase
        assert "judge scoring" in result["phases"]
    # without held-out prompts the judge first loads to score iteration 1's samples: not there while they generate
    quiet = ["--heldout_prompts", "0", "--num_iterations", "2"]
    plain, judged = planned(*quiet), planned(*quiet, "--reward_funcs", f"judge:{LLAMA}", "--judge_template",
                                             "helpful_harmless")
    first, later = "generation (first iteration)", "generation (later iterations, held-out)"
    assert judged["phases"][first] == plain["phases"][first]
    assert judged["phases"][later] == pytest.approx(plain["phases"][later] + bf16["breakdown"]["judge_models"], abs=2e-3)


def test_the_policy_judging_adds_no_weights(pretend_gpu):
    plain = planned()
    for judge in ("judge:policy", "judge:Qwen/Qwen2.5-1.5B-Instruct"):  # the recipe's model under LoRA: adapter off
        result = planned("--reward_funcs", judge, "--judge_template", "helpful_harmless")
        assert "judge_models" not in result["breakdown"]
        assert {k: v for k, v in result["phases"].items() if k != "judge scoring"} == plain["phases"]
        later = plain["phases"]["generation (later iterations, held-out)"] - plain["breakdown"]["generation_kv_cache"] \
            - plain["breakdown"]["generation_working"]  # what stays on the GPU between the phases
        assert result["phases"]["judge scoring"] > later + 0.01  # + the judge's forward over its batch
        assert any("no second copy" in note for note in result["notes"])


def test_the_base_of_a_fully_fine_tuned_policy_is_a_second_copy(pretend_gpu):
    result = planned("--reward_funcs", "judge:Qwen/Qwen2.5-1.5B-Instruct", "--judge_template", "helpful_harmless",
                     "--use_peft", "false", "--load_in_4bit", "false")
    qwen = json.loads((SHIPPED_CONFIGS / "Qwen--Qwen2.5-1.5B-Instruct.json").read_text())
    assert qwen["tie_word_embeddings"]
    linear = 28 * (2 * 1536 * 1536 + 2 * 1536 * 256 + 3 * 1536 * 8960)
    other = 151936 * 1536 + 28 * (2 * 1536 + 1536 + 2 * 256) + 1536  # embeddings (tied), norms, q/k/v biases
    assert result["breakdown"]["judge_models"] == pytest.approx((linear + other) * 2 / GIB, abs=2e-3)


def test_score_mode_holds_the_kv_cache_of_what_the_judge_writes(pretend_gpu):
    flags = ["--reward_funcs", "judge:policy", "--judge_template", "self_rewarding", "--judge_mode", "score",
             "--judge_batch_size", "16"]
    short, long = planned(*flags, "--judge_max_new_tokens", "64"), planned(*flags, "--judge_max_new_tokens", "576")
    # Qwen2.5-1.5B: 28 layers, 2 KV heads x 128; 512 more tokens for 16 sequences, a key and a value, 2 bytes each
    extra = 16 * 512 * 2 * 28 * 256 * 2
    assert long["phases"]["judge scoring"] - short["phases"]["judge scoring"] == pytest.approx(extra / GIB, abs=2e-3)


def test_a_judge_without_a_template_does_not_plan(pretend_gpu):
    with pytest.raises(ConfigError, match="judge_template: a judge needs a template"):
        planned("--reward_funcs", "judge:policy")


def test_a_pairwise_judge_is_one_more_model_or_the_reward_judge_s_own(pretend_gpu):
    """pair_rule judge_pairwise: its judge's weights (once, however many judge entries name the same model) and a
    longer judged sequence (the template shows two completions)."""
    pairwise = ["--pair_rule", "judge_pairwise", "--judge_pairwise_model", LLAMA, "--judge_load_in_4bit", "true"]
    alone = planned(*pairwise)
    nf4 = (LLAMA_LINEAR * NF4_BYTES + LLAMA_OTHER * 2) / GIB
    assert alone["breakdown"]["judge_models"] == pytest.approx(nf4, abs=1e-3)
    shared = planned(*pairwise, "--reward_funcs", f"judge:{LLAMA}", "--heldout_reward_funcs", f"judge:{LLAMA}",
                     "--judge_template", "helpful_harmless")
    assert shared["breakdown"]["judge_models"] == pytest.approx(nf4, abs=1e-3)  # one copy for all three
    per_sample = planned("--reward_funcs", f"judge:{LLAMA}", "--judge_template", "helpful_harmless",
                         "--judge_load_in_4bit", "true")
    assert shared["phases"]["judge scoring"] > per_sample["phases"]["judge scoring"] + 0.01
    # a compared row holds the template, the prompt and two completions (characters / 4 for the template)
    from trl_plugins.sampling.judge_prompts import load_template

    _, run = plan_run("iterative-dpo", [*RECIPE, *pairwise, "--prompt_length", "100", "--max_new_tokens", "300"])
    template = len(load_template("rlaif_helpful_pairwise")[1]) // 4
    assert run["settings"].judge_tokens == template + 100 + 2 * 300
    on_policy = planned("--pair_rule", "judge_pairwise", "--judge_pairwise_model", "policy")
    assert "judge_models" not in on_policy["breakdown"] and "judge scoring" in on_policy["phases"]
    with pytest.raises(ConfigError, match="judge_pairwise needs a judge"):
        planned("--pair_rule", "judge_pairwise", "--reward_funcs", "exact_match")
