"""Parity with KTOTrainer (TRL tests/test_kto_trainer.py) for `kto-weighted`: each case on the parent and on ours
(default ``weighting: auto``). Shared pieces: parity_support.py; table: docs/parity.md."""

from __future__ import annotations

import pytest
from parity_support import CPU, TOOLS, assert_evaluates, assert_trains, dataset, lora, with_tools_template

pytestmark = pytest.mark.parity

SIDES = ["KTOTrainer", "kto-weighted"]


def _classes(side):
    if side == "KTOTrainer":
        from trl import KTOConfig, KTOTrainer

        return KTOTrainer, KTOConfig
    from trl_plugins.trainers.kto_weighted import KTOWeightedConfig, KTOWeightedTrainer

    return KTOWeightedTrainer, KTOWeightedConfig


def _trainer(side, model, tmp_path, train, tokenizer, args=None, **kwargs):
    trainer_cls, config_cls = _classes(side)
    values = {**CPU, "output_dir": str(tmp_path / side), "learning_rate": 0.1, "per_device_train_batch_size": 4,
              "max_steps": 1, "max_length": 64, "gradient_checkpointing": False, **(args or {})}
    return trainer_cls(model=model, args=config_cls(**values), train_dataset=train, processing_class=tokenizer,
                       **kwargs)


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("config_name, loss_type, pre_compute", [
    ("standard_preference", "kto", False),
    ("standard_unpaired_preference", "kto", False),
    ("conversational_unpaired_preference", "kto", True),
    ("standard_unpaired_preference", "apo_zero_unpaired", False),
])
def test_train(side, config_name, loss_type, pre_compute, tiny_model_dir, tok, tmp_path):
    trainer = _trainer(side, tiny_model_dir, tmp_path, dataset(config_name), tok,
                       args={"loss_type": loss_type, "precompute_ref_log_probs": pre_compute,
                             "eval_strategy": "steps", "eval_steps": 1}, eval_dataset=dataset(config_name, 4))
    assert_trains(trainer)


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("loss_type", ["kto", "apo_zero_unpaired"])
def test_train_with_iterable_dataset(side, loss_type, tiny_model_dir, tok, tmp_path):
    assert_trains(_trainer(side, tiny_model_dir, tmp_path,
                           dataset("standard_unpaired_preference", variant="iterable_dataset"), tok,
                           args={"loss_type": loss_type}))


@pytest.mark.parametrize("side", SIDES)
def test_precompute_ref_log_probs_raises_for_iterable_dataset(side, tiny_model_dir, tok, tmp_path):
    with pytest.raises(ValueError, match="precompute_ref_log_probs=True` is not supported with IterableDataset"):
        _trainer(side, tiny_model_dir, tmp_path, dataset("standard_unpaired_preference", variant="iterable_dataset"),
                 tok, args={"precompute_ref_log_probs": True})


@pytest.mark.parametrize("side", SIDES)
def test_fully_truncated_completion_examples_dropped(side, tiny_model_dir, tok, tmp_path):
    """The long prompts are the undesirable rows: TRL drops them all, one class is left, and training goes on."""
    long = " ".join(["the movie was"] * 30)
    data = dataset("standard_unpaired_preference").map(
        lambda row: {"prompt": long if not row["label"] else row["prompt"]})
    trainer = _trainer(side, tiny_model_dir, tmp_path, data, tok, args={"max_length": 32})
    assert set(trainer.train_dataset["label"]) == {True}
    assert_trains(trainer)


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("eval_dataset_type", ["dataset", "iterable_dataset", "dataset_dict", "dict_of_dataset"])
def test_evaluate_with_eval_dataset(side, eval_dataset_type, tiny_model_dir, tok, tmp_path):
    trainer = _trainer(side, tiny_model_dir, tmp_path, dataset("standard_unpaired_preference"), tok)
    metrics = trainer.evaluate(dataset("standard_unpaired_preference", 4, eval_dataset_type))
    assert_evaluates(metrics, eval_dataset_type)


@pytest.mark.parametrize("side", SIDES)
def test_train_without_providing_ref_model_with_lora(side, tiny_model_dir, tok, tmp_path):
    trainer = _trainer(side, tiny_model_dir, tmp_path, dataset("standard_unpaired_preference"), tok,
                       args={"max_steps": 2}, peft_config=lora("CAUSAL_LM"))
    assert_trains(trainer)


@pytest.mark.parametrize("side", SIDES)
def test_train_with_peft_config_prompt_tuning(side, tiny_model_dir, tok, tmp_path):
    from peft import PromptTuningConfig

    trainer = _trainer(side, tiny_model_dir, tmp_path, dataset("standard_unpaired_preference"), tok,
                       peft_config=PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    assert_trains(trainer)


@pytest.mark.parametrize("side", SIDES)
def test_train_with_gradient_checkpointing(side, tiny_model_dir, tok, tmp_path):
    assert_trains(_trainer(side, tiny_model_dir, tmp_path, dataset("standard_unpaired_preference"), tok,
                           args={"gradient_checkpointing": True}))


@pytest.mark.parametrize("side", SIDES)
def test_train_with_chat_template_kwargs(side, tiny_model_dir, tok, tmp_path):
    data = dataset("conversational_unpaired_preference",
                   chat_template_kwargs=lambda i: {"mood": "happy" if i % 2 else None})
    trainer = _trainer(side, tiny_model_dir, tmp_path, data, with_tools_template(tok), args={"mix_batches": False}
                       if side == "kto-weighted" else None)
    header = tok("<|im_start|>system happy <|im_end|>")["input_ids"]
    assert trainer.train_dataset[1]["prompt_ids"][: len(header)] == header
    assert trainer.train_dataset[0]["prompt_ids"][: len(header)] != header
    assert_trains(trainer)


@pytest.mark.parametrize("side", SIDES)
def test_train_toolcall_data(side, tiny_model_dir, tok, tmp_path):
    trainer = _trainer(side, tiny_model_dir, tmp_path, dataset("conversational_unpaired_preference",
                                                               tools=lambda i: TOOLS), with_tools_template(tok))
    header = tok("<|im_start|>system answer <|im_end|>")["input_ids"]
    assert trainer.train_dataset[0]["prompt_ids"][: len(header)] == header
    assert_trains(trainer)


@pytest.mark.parametrize("side", SIDES)
def test_train_with_multiple_eval_dataset(side, tiny_model_dir, tok, tmp_path):
    trainer = _trainer(side, tiny_model_dir, tmp_path, dataset("standard_unpaired_preference"), tok,
                       args={"eval_strategy": "steps", "eval_steps": 1},
                       eval_dataset=dataset("standard_unpaired_preference", 4, "dict_of_dataset"))
    trainer.train()
    assert any("eval_data1_loss" in h for h in trainer.state.log_history)
    assert any("eval_data2_loss" in h for h in trainer.state.log_history)


@pytest.mark.parametrize("side", SIDES)
def test_compute_metrics(side, tiny_model_dir, tok, tmp_path):
    trainer = _trainer(side, tiny_model_dir, tmp_path, dataset("standard_unpaired_preference"), tok,
                       eval_dataset=dataset("standard_unpaired_preference", 4),
                       compute_metrics=lambda prediction: {"test": 0.0},
                       args={"eval_strategy": "steps", "eval_steps": 1})
    trainer.train()
    assert any(h.get("eval_test") == 0.0 for h in trainer.state.log_history)
