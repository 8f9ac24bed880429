"""The sampling trainers keep what their parent SFTTrainer accepts: PEFT prompt tuning / p-tuning (generation falls
back from the fast loop to ``model.generate``, said once), per-row ``tools``/``chat_template_kwargs`` (in the rendered
generation prompt and in the rows fine-tuned on), and ``evaluate(eval_dataset)`` on language-modeling eval sets.
Docs: docs/methods/sampling_engine.md ("What SFTTrainer features carry over")."""

from __future__ import annotations

import logging

import pytest
import torch
from datasets import Dataset, DatasetDict

from trl_plugins.trainers.raft import RAFTConfig, RAFTTrainer

from helpers import CPU_RUN, TOOLS_TEMPLATE, trainable
from helpers import PROMPTS as ALL_PROMPTS
from tiny import tiny_causal_lm, tiny_tokenizer

PROMPTS = ALL_PROMPTS[:3]
TOOLS = [{"type": "function", "function": {"name": "answer", "description": "answer", "parameters": {}}}]


def _trainer(tmp_path, rows, peft_config=None, tokenizer=None, **extra):
    tokenizer = tokenizer or tiny_tokenizer()
    args = RAFTConfig(**{**CPU_RUN, "output_dir": str(tmp_path / "out"), "num_iterations": 1, "num_generations": 2,
                         "max_new_tokens": 4, "generation_batch_size": 8, "per_device_train_batch_size": 2,
                         "max_steps": 2, "max_length": 64, "learning_rate": 1e-2, "seed": 0, "keep_unfinished": True,
                         "reward_funcs": ["sampling_rewards:good_words"], **extra})
    return RAFTTrainer(model=tiny_causal_lm(tokenizer), args=args, train_dataset=Dataset.from_list(rows),
                       processing_class=tokenizer, peft_config=peft_config)


@pytest.mark.parametrize("kind", ["prompt_tuning", "p_tuning"])
def test_prompt_learning_peft_falls_back_to_generate_once_and_trains(tmp_path, caplog, kind):
    from peft import PromptEncoderConfig, PromptTuningConfig

    config = (PromptTuningConfig if kind == "prompt_tuning" else PromptEncoderConfig)(task_type="CAUSAL_LM",
                                                                                       num_virtual_tokens=4)
    trainer = _trainer(tmp_path, [{"prompt": p} for p in PROMPTS], peft_config=config, num_iterations=2)
    before = trainable(trainer.model)
    with caplog.at_level(logging.WARNING, logger="trl_plugins.sampling.generation"):
        trainer.train()
    fallbacks = [r.getMessage() for r in caplog.records if "virtual tokens" in r.getMessage()]
    assert len(fallbacks) == 1, fallbacks  # said once over two iterations of generation
    assert "using model.generate" in fallbacks[0]
    assert trainer.backend.last_stats["path"] == "generate"
    after = trainable(trainer.model)
    assert any(not torch.equal(before[n], after[n]) for n in before)


def test_rows_tools_and_chat_template_kwargs_reach_the_generation_prompt_and_the_fine_tuned_rows(tmp_path,
                                                                                                 monkeypatch):
    from trl_plugins.sampling import generation

    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = TOOLS_TEMPLATE
    rows = [{"prompt": [{"role": "user", "content": p}], "tools": TOOLS if i == 0 else None,
             "chat_template_kwargs": {"mood": "happy" if i == 1 else None}} for i, p in enumerate(PROMPTS)]
    rendered = []
    real = generation.prompt_text

    def record(tok, prompt, chat_kwargs=None):
        rendered.append(real(tok, prompt, chat_kwargs))
        return rendered[-1]

    monkeypatch.setattr(generation, "prompt_text", record)
    trainer = _trainer(tmp_path, rows, tokenizer=tokenizer, num_generations=2, raft_selection="local")
    trainer.train()
    assert rendered[0].startswith("<|im_start|>system answer <|im_end|>")
    assert rendered[1].startswith("<|im_start|>system happy <|im_end|>")
    assert rendered[2].startswith("<|im_start|>user")
    trained = {tokenizer.decode(ids) for ids in trainer.train_dataset["input_ids"]}  # the phase's SFT rows
    # (the word-level tokenizer has no "system"/"user": <unk>)
    assert any(text.startswith("<|im_start|> <unk> answer <|im_end|> <|im_start|> <unk> write") for text in trained)
    assert any(text.startswith("<|im_start|> <unk> happy <|im_end|> <|im_start|> <unk> what") for text in trained)
    assert any(text.startswith("<|im_start|> <unk> how was") for text in trained)


def _lm_eval_sets():
    text = Dataset.from_list([{"text": "the movie was good ."}, {"text": "the film was bad ."}])
    messages = Dataset.from_list([{"messages": [{"role": "user", "content": "how was the film ?"},
                                                {"role": "assistant", "content": "very good ."}]}] * 2)
    return {"text": text, "messages": messages, "dataset_dict": DatasetDict({"a": text, "b": messages}),
            "dict": {"a": text, "b": messages}, "iterable_text": text.to_iterable_dataset(),
            "iterable_dict": {"a": text.to_iterable_dataset(), "b": messages.to_iterable_dataset()}}


@pytest.mark.parametrize("kind", list(_lm_eval_sets()))
def test_evaluate_on_language_modeling_eval_sets_like_sft_trainer(tmp_path, kind):
    from trl import SFTConfig, SFTTrainer

    eval_set = _lm_eval_sets()[kind]
    ours = _trainer(tmp_path, [{"prompt": p} for p in PROMPTS]).evaluate(eval_set)
    tokenizer = tiny_tokenizer()
    parent = SFTTrainer(model=tiny_causal_lm(tokenizer), processing_class=tokenizer,
                        args=SFTConfig(**{**CPU_RUN, "output_dir": str(tmp_path / "sft"), "max_length": 64}),
                        train_dataset=Dataset.from_list([{"text": "the movie ."}] * 2)).evaluate(eval_set)
    losses = sorted(k for k in parent if k.endswith("loss"))
    assert losses and sorted(k for k in ours if k.endswith("loss")) == losses
    for key in losses:  # same random model (seed 0), same rows: the same loss
        assert ours[key] == pytest.approx(parent[key], rel=1e-5)
