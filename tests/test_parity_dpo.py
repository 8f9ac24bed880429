"""Parity with DPOTrainer (TRL tests/test_dpo_trainer.py) for `orpo`, and with TRL's experimental ORPOTrainer (TRL
tests/experimental/test_orpo_trainer.py): each case on the parent and on ours. Shared pieces: parity_support.py;
table: docs/parity.md. Run: pytest tests/test_parity_dpo.py -m parity."""

from __future__ import annotations

import pytest
from parity_support import CPU, assert_evaluates, assert_refused, assert_trains, dataset, lora, with_tools_template

pytestmark = pytest.mark.parity

SIDES = ["DPOTrainer", "orpo"]
FORMATS = ["standard_preference", "conversational_preference", "standard_implicit_prompt_preference",
           "conversational_implicit_prompt_preference"]
EVAL_VARIANTS = ["dataset", "iterable_dataset", "dataset_dict", "dict_of_dataset"]


def _classes(side):
    if side == "DPOTrainer":
        from trl import DPOConfig, DPOTrainer

        return DPOTrainer, DPOConfig
    if side == "ORPOTrainer (experimental)":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return ORPOTrainer, ORPOConfig
    from trl_plugins.trainers.orpo import ORPOConfig, ORPOTrainer

    return ORPOTrainer, ORPOConfig


def _config(side, tmp_path, **args):
    _, config_cls = _classes(side)
    values = {**CPU, "output_dir": str(tmp_path / side.replace(" ", "_")), "learning_rate": 0.1,
              "per_device_train_batch_size": 4, "max_steps": 1, "max_length": 64, "gradient_checkpointing": False}
    return config_cls(**{**values, **args})


def _trainer(side, model, tmp_path, train, tokenizer, args=None, **kwargs):
    trainer_cls, _ = _classes(side)
    return trainer_cls(model=model, args=_config(side, tmp_path, **(args or {})), train_dataset=train,
                       processing_class=tokenizer, **kwargs)


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("config_name", FORMATS)
def test_train_dataset_format(side, config_name, tiny_model_dir, tok, tmp_path):
    assert_trains(_trainer(side, tiny_model_dir, tmp_path, dataset(config_name), tok))


@pytest.mark.parametrize("side", SIDES)
def test_train_dense_with_peft_config_lora(side, tiny_model_dir, tok, tmp_path):
    trainer = _trainer(side, tiny_model_dir, tmp_path, dataset("standard_preference"), tok,
                       args={"max_steps": 2}, peft_config=lora("CAUSAL_LM"))
    assert all("lora_" in n for n, p in trainer.model.named_parameters() if p.requires_grad)
    assert_trains(trainer)


@pytest.mark.parametrize("side", SIDES)
def test_train_with_peft_config_prompt_tuning(side, tiny_model_dir, tok, tmp_path):
    from peft import PromptTuningConfig

    trainer = _trainer(side, tiny_model_dir, tmp_path, dataset("standard_preference"), tok,
                       peft_config=PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    assert_trains(trainer)


@pytest.mark.parametrize("side", SIDES)
def test_train_with_iterable_dataset(side, tiny_model_dir, tok, tmp_path):
    assert_trains(_trainer(side, tiny_model_dir, tmp_path, dataset("standard_preference", variant="iterable_dataset"),
                           tok))


@pytest.mark.parametrize("side", SIDES)
def test_train_padding_free(side, tiny_model_dir, tok, tmp_path):
    assert_trains(_trainer(side, tiny_model_dir, tmp_path, dataset("standard_preference"), tok,
                           args={"padding_free": True}))


@pytest.mark.parametrize("side", SIDES)
def test_train_with_gradient_checkpointing(side, tiny_model_dir, tok, tmp_path):
    assert_trains(_trainer(side, tiny_model_dir, tmp_path, dataset("standard_preference"), tok,
                           args={"gradient_checkpointing": True}))


@pytest.mark.parametrize("side", SIDES)
def test_train_with_chat_template_kwargs(side, tiny_model_dir, tok, tmp_path):
    data = dataset("conversational_preference", chat_template_kwargs=lambda i: {"mood": "happy" if i % 2 else None})
    trainer = _trainer(side, tiny_model_dir, tmp_path, data, with_tools_template(tok))
    header = tok("<|im_start|>system happy <|im_end|>")["input_ids"]
    assert trainer.train_dataset[1]["prompt_ids"][: len(header)] == header
    assert trainer.train_dataset[0]["prompt_ids"][: len(header)] != header
    assert_trains(trainer)


@pytest.mark.parametrize("side", SIDES)
def test_train_toolcall_data(side, tiny_model_dir, tok, tmp_path):
    from parity_support import TOOLS

    data = dataset("conversational_preference", tools=lambda i: TOOLS)
    trainer = _trainer(side, tiny_model_dir, tmp_path, data, with_tools_template(tok))
    header = tok("<|im_start|>system answer <|im_end|>")["input_ids"]
    assert trainer.train_dataset[0]["prompt_ids"][: len(header)] == header
    assert_trains(trainer)


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("eval_dataset_type", EVAL_VARIANTS)
def test_evaluate_with_eval_dataset(side, eval_dataset_type, tiny_model_dir, tok, tmp_path):
    trainer = _trainer(side, tiny_model_dir, tmp_path, dataset("standard_preference"), tok)
    metrics = trainer.evaluate(dataset("standard_preference", 4, eval_dataset_type))
    assert_evaluates(metrics, eval_dataset_type)


@pytest.mark.parametrize("side", SIDES)
def test_train_with_multiple_eval_dataset(side, tiny_model_dir, tok, tmp_path):
    trainer = _trainer(side, tiny_model_dir, tmp_path, dataset("standard_preference"), tok,
                       args={"eval_strategy": "steps", "eval_steps": 1},
                       eval_dataset=dataset("standard_preference", 4, "dict_of_dataset"))
    trainer.train()
    assert any("eval_data1_loss" in h for h in trainer.state.log_history)
    assert any("eval_data2_loss" in h for h in trainer.state.log_history)


@pytest.mark.parametrize("side", SIDES)
def test_fully_truncated_examples_dropped(side, tiny_model_dir, tok, tmp_path):
    data = dataset("standard_preference")
    long = " ".join(["the movie was"] * 30)
    data = data.map(lambda row, i: {"prompt": long if i < 2 else row["prompt"]}, with_indices=True)
    trainer = _trainer(side, tiny_model_dir, tmp_path, data, tok, args={"max_length": 32})
    assert len(trainer.train_dataset) == 6
    assert_trains(trainer)


# -- what ORPO refuses by design (no reference model, its own loss): the parent passes, ours refuses in one line --
@pytest.mark.parametrize("side", SIDES)
def test_precompute_ref_log_probs_raises_for_iterable_dataset(side, tiny_model_dir, tok, tmp_path):
    if side == "orpo":
        return assert_refused(lambda: _config(side, tmp_path, precompute_ref_log_probs=True),
                              "precompute_ref_log_probs")
    with pytest.raises(ValueError, match="precompute_ref_log_probs=True` is not supported with IterableDataset"):
        _trainer(side, tiny_model_dir, tmp_path, dataset("standard_preference", variant="iterable_dataset"), tok,
                 args={"precompute_ref_log_probs": True})


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("option, value", [("loss_type", ["hinge"]), ("sync_ref_model", True),
                                           ("label_smoothing", 0.1)], ids=["loss_type", "sync_ref_model",
                                                                           "label_smoothing"])
def test_reference_and_loss_options(side, option, value, tiny_model_dir, tok, tmp_path):
    if side == "orpo":
        return assert_refused(lambda: _config(side, tmp_path, **{option: value}), option)
    assert_trains(_trainer(side, tiny_model_dir, tmp_path, dataset("standard_preference"), tok,
                           args={option: value}))


# -- TRL's experimental ORPO tests, on TRL's experimental ORPOTrainer and on ours ------------------------------------
ORPO_SIDES = ["ORPOTrainer (experimental)", "orpo"]


@pytest.mark.parametrize("side", ORPO_SIDES)
@pytest.mark.parametrize("config_name", ["standard_preference", "conversational_implicit_prompt_preference"])
def test_orpo_trainer(side, config_name, tiny_model_dir, tok, tmp_path):
    assert_trains(_trainer(side, tiny_model_dir, tmp_path, dataset(config_name), tok,
                           eval_dataset=dataset(config_name, 4), args={"eval_strategy": "steps", "eval_steps": 1}))


@pytest.mark.parametrize("side", ORPO_SIDES)
def test_orpo_trainer_with_lora(side, tiny_model_dir, tok, tmp_path):
    trainer = _trainer(side, tiny_model_dir, tmp_path, dataset("conversational_preference"), tok,
                       args={"max_steps": 2}, peft_config=lora("CAUSAL_LM"))
    assert_trains(trainer)


@pytest.mark.parametrize("side", ORPO_SIDES)
def test_orpo_compute_metrics(side, tiny_model_dir, tok, tmp_path):
    calls = []

    def compute_metrics(prediction):
        calls.append(prediction)
        return {"test": 0.0}

    trainer = _trainer(side, tiny_model_dir, tmp_path, dataset("standard_preference"), tok,
                       eval_dataset=dataset("standard_preference", 4), compute_metrics=compute_metrics,
                       args={"eval_strategy": "steps", "eval_steps": 1})
    trainer.train()
    assert any(h.get("eval_test") == 0.0 for h in trainer.state.log_history)


# -- mdpo (vision): TRL's VLM cases of the DPOTrainer tests, on DPOTrainer and on ours --------------------------------
VLM_SIDES = ["DPOTrainer", "mdpo"]


@pytest.fixture(scope="module")
def tiny_vlm_dir(tmp_path_factory):
    from tiny_vlm import save_tiny_vlm

    return save_tiny_vlm(tmp_path_factory.mktemp("tiny-vlm"))


def _vlm_trainer(side, model_dir, tmp_path, train, **kwargs):
    from transformers import AutoProcessor

    if side == "DPOTrainer":
        from trl import DPOConfig as config_cls
        from trl import DPOTrainer as trainer_cls
    else:
        from trl_plugins.trainers.mdpo import MDPOConfig as config_cls
        from trl_plugins.trainers.mdpo import MDPOTrainer as trainer_cls
    args = config_cls(**{**CPU, "output_dir": str(tmp_path / side), "learning_rate": 0.1, "max_steps": 2,
                         "per_device_train_batch_size": 4, "gradient_checkpointing": False})
    return trainer_cls(model=model_dir, args=args, train_dataset=train,
                       processing_class=AutoProcessor.from_pretrained(model_dir), **kwargs)


def _vision(n=8, variant="dataset"):
    from datasets import Dataset

    from tiny_vlm import vision_rows

    data = Dataset.from_list(vision_rows(n))
    return {"data1": data, "data2": data} if variant == "dict_of_dataset" else data


@pytest.mark.parametrize("side", VLM_SIDES)
def test_train_vlm(side, tiny_vlm_dir, tmp_path):
    assert_trains(_vlm_trainer(side, tiny_vlm_dir, tmp_path, _vision()), unused="vision_tower")


@pytest.mark.parametrize("side", VLM_SIDES)
def test_train_vlm_with_peft_config_lora(side, tiny_vlm_dir, tmp_path):
    from peft import LoraConfig

    config = LoraConfig(r=4, lora_alpha=8, target_modules=r".*language_model.*\.(q_proj|v_proj)",
                        task_type="CAUSAL_LM")
    assert_trains(_vlm_trainer(side, tiny_vlm_dir, tmp_path, _vision(), peft_config=config))


@pytest.mark.parametrize("side", VLM_SIDES)
@pytest.mark.parametrize("eval_dataset_type", ["dataset", "dict_of_dataset"])
def test_evaluate_vlm_with_eval_dataset(side, eval_dataset_type, tiny_vlm_dir, tmp_path):
    trainer = _vlm_trainer(side, tiny_vlm_dir, tmp_path, _vision())
    assert_evaluates(trainer.evaluate(_vision(4, eval_dataset_type)), eval_dataset_type)


@pytest.mark.parametrize("side", VLM_SIDES)
def test_train_vlm_text_only_data(side, tiny_vlm_dir, tmp_path):
    if side == "mdpo":  # mDPO's conditional term corrupts the image: text-only rows have none
        from trl_plugins.trainers.mdpo import MDPOMethod

        def check():
            problems = MDPOMethod(None).check_data(dataset("conversational_preference"), "train", None, "train")
            if problems:
                raise ValueError("; ".join(problems))

        return assert_refused(check, "'image'")
    assert_trains(_vlm_trainer(side, tiny_vlm_dir, tmp_path, dataset("conversational_preference")),
                  unused="vision_tower|multi_modal_projector")
