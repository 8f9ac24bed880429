"""Parity with RewardTrainer (TRL tests/test_reward_trainer.py) for `margin-rm`: each case on the parent and on ours
(default ``margin_source: auto``). Shared pieces: parity_support.py; table: docs/parity.md."""

from __future__ import annotations

import pytest
from parity_support import CPU, TOOLS, assert_evaluates, assert_trains, dataset, lora, with_tools_template

pytestmark = pytest.mark.parity

SIDES = ["RewardTrainer", "margin-rm"]
FORMATS = ["standard_preference", "conversational_preference", "standard_implicit_prompt_preference",
           "conversational_implicit_prompt_preference"]


def _trainer(side, model, tmp_path, train, tokenizer, args=None, **kwargs):
    if side == "RewardTrainer":
        from trl import RewardConfig as config_cls
        from trl import RewardTrainer as trainer_cls
    else:
        from trl_plugins.trainers.margin_rm import MarginRewardConfig as config_cls
        from trl_plugins.trainers.margin_rm import MarginRewardTrainer as trainer_cls
    values = {**CPU, "output_dir": str(tmp_path / side), "learning_rate": 0.1, "per_device_train_batch_size": 4,
              "max_steps": 1, "max_length": 64, "gradient_checkpointing": False, **(args or {})}
    return trainer_cls(model=model, args=config_cls(**values), train_dataset=train, processing_class=tokenizer,
                       **kwargs)


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("config_name", FORMATS)
def test_train_dataset_types(side, config_name, tiny_model_dir, tok, tmp_path):
    assert_trains(_trainer(side, tiny_model_dir, tmp_path, dataset(config_name), tok))


@pytest.mark.parametrize("side", SIDES)
def test_train_dense_with_peft_config(side, tiny_model_dir, tok, tmp_path):
    trainer = _trainer(side, tiny_model_dir, tmp_path, dataset("standard_preference"), tok,
                       args={"max_steps": 2}, peft_config=lora("SEQ_CLS"))
    assert_trains(trainer)


@pytest.mark.parametrize("side", SIDES)
def test_train_with_iterable_dataset(side, tiny_model_dir, tok, tmp_path):
    assert_trains(_trainer(side, tiny_model_dir, tmp_path, dataset("standard_preference", variant="iterable_dataset"),
                           tok))


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("eval_dataset_type", ["dataset", "iterable_dataset", "dataset_dict", "dict_of_dataset"])
def test_evaluate_with_eval_dataset(side, eval_dataset_type, tiny_model_dir, tok, tmp_path):
    trainer = _trainer(side, tiny_model_dir, tmp_path, dataset("standard_preference"), tok)
    metrics = trainer.evaluate(dataset("standard_preference", 4, eval_dataset_type))
    assert_evaluates(metrics, eval_dataset_type)


@pytest.mark.parametrize("side", SIDES)
def test_train_with_chat_template_kwargs(side, tiny_model_dir, tok, tmp_path):
    data = dataset("conversational_preference", chat_template_kwargs=lambda i: {"mood": "happy" if i % 2 else None})
    trainer = _trainer(side, tiny_model_dir, tmp_path, data, with_tools_template(tok))
    header = tok("<|im_start|>system happy <|im_end|>")["input_ids"]
    assert trainer.train_dataset[1]["chosen_ids"][: len(header)] == header
    assert trainer.train_dataset[0]["chosen_ids"][: len(header)] != header
    assert_trains(trainer)


@pytest.mark.parametrize("side", SIDES)
def test_train_toolcall_data(side, tiny_model_dir, tok, tmp_path):
    trainer = _trainer(side, tiny_model_dir, tmp_path, dataset("conversational_preference", tools=lambda i: TOOLS),
                       with_tools_template(tok))
    header = tok("<|im_start|>system answer <|im_end|>")["input_ids"]
    assert trainer.train_dataset[0]["chosen_ids"][: len(header)] == header
    assert_trains(trainer)


@pytest.mark.parametrize("side", SIDES)
def test_train_with_margin(side, tiny_model_dir, tok, tmp_path):
    data = dataset("standard_implicit_prompt_preference", margin=lambda i: float(i % 3))
    assert_trains(_trainer(side, tiny_model_dir, tmp_path, data, tok))


@pytest.mark.parametrize("side", SIDES)
def test_train_with_center_rewards_coefficient(side, tiny_model_dir, tok, tmp_path):
    assert_trains(_trainer(side, tiny_model_dir, tmp_path, dataset("standard_implicit_prompt_preference"), tok,
                           args={"center_rewards_coefficient": 0.01}))


@pytest.mark.parametrize("side", SIDES)
def test_train_with_gradient_checkpointing(side, tiny_model_dir, tok, tmp_path):
    assert_trains(_trainer(side, tiny_model_dir, tmp_path, dataset("standard_preference"), tok,
                           args={"gradient_checkpointing": True}))


@pytest.mark.parametrize("side", SIDES)
def test_train_with_multiple_eval_dataset(side, tiny_model_dir, tok, tmp_path):
    trainer = _trainer(side, tiny_model_dir, tmp_path, dataset("standard_preference"), tok,
                       args={"eval_strategy": "steps", "eval_steps": 1},
                       eval_dataset=dataset("standard_preference", 4, "dict_of_dataset"))
    trainer.train()
    assert any("eval_data1_loss" in h for h in trainer.state.log_history)
    assert any("eval_data2_loss" in h for h in trainer.state.log_history)
