"""Parity with SFTTrainer (TRL tests/test_sft_trainer.py) for the four sampling trainers (`raft`,
`rejection-sampling`, `rest`, `rest-em`), on the SFT features that make sense for them: eval-set formats and
kinds, PEFT kinds, per-row chat_template_kwargs/tools, gradient checkpointing, packing. The parent trains on
prompt-completion rows, ours sample from the same prompts and fine-tune on what they select (one iteration).
Shared pieces: parity_support.py; table: docs/parity.md."""

from __future__ import annotations

import pytest
from parity_support import (
    CPU,
    TOOLS,
    assert_evaluates,
    assert_refused,
    assert_trains,
    dataset,
    lora,
    rows,
    with_tools_template,
)

pytestmark = pytest.mark.parity

SAMPLING = ["raft", "rejection-sampling", "rest", "rest-em"]
SIDES = ["SFTTrainer", *SAMPLING]
# The four share one engine (generation, SFT phase, PEFT, evaluate); they differ in their selection rule. Cases
# about the engine's SFT side run on raft only, to keep the suite short.
ENGINE = ["SFTTrainer", "raft"]
EXTRA = {"raft": {}, "rejection-sampling": {}, "rest": {"improve_steps": 1, "improve_thresholds": [0.5]},
         "rest-em": {"reward_funcs": ["sampling_rewards:even_length"], "max_per_prompt": 2}}


def _classes(side):
    from trl_plugins.trainers import raft, rejection_sampling, rest

    if side == "SFTTrainer":
        from trl import SFTConfig, SFTTrainer

        return SFTTrainer, SFTConfig
    return {"raft": (raft.RAFTTrainer, raft.RAFTConfig),
            "rejection-sampling": (rejection_sampling.RejectionSamplingTrainer,
                                   rejection_sampling.RejectionSamplingConfig),
            "rest": (rest.ReSTTrainer, rest.ReSTConfig), "rest-em": (rest.ReSTEMTrainer, rest.ReSTEMConfig)}[side]


def _config(side, tmp_path, **args):
    _, config_cls = _classes(side)
    values = {**CPU, "output_dir": str(tmp_path / side), "learning_rate": 0.1, "per_device_train_batch_size": 2,
              "max_steps": 1, "max_length": 64, "gradient_checkpointing": False}
    if side != "SFTTrainer":
        values.update({"num_iterations": 1, "num_generations": 2, "max_new_tokens": 4, "generation_batch_size": 8,
                       "keep_unfinished": True, "reward_funcs": ["sampling_rewards:good_words"], **EXTRA[side]})
    return config_cls(**{**values, **args})


def _trainer(side, model, tmp_path, conversational, tokenizer, args=None, columns=None, **kwargs):
    """The parent on prompt-completion rows, ours on the same prompts (prompt-only)."""
    trainer_cls, _ = _classes(side)
    style = "conversational" if conversational else "standard"
    kind = f"{style}_prompt_completion" if side == "SFTTrainer" else f"{style}_prompt_only"
    return trainer_cls(model=model, args=_config(side, tmp_path, **(args or {})),
                       train_dataset=dataset(kind, 6, **(columns or {})), processing_class=tokenizer, **kwargs)


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("conversational", [False, True], ids=["standard", "conversational"])
def test_train_dataset_format(side, conversational, tiny_model_dir, tok, tmp_path):
    assert_trains(_trainer(side, tiny_model_dir, tmp_path, conversational, tok))


@pytest.mark.parametrize("side", ENGINE)
def test_train_dense_with_peft_config_lora(side, tiny_model_dir, tok, tmp_path):
    trainer = _trainer(side, tiny_model_dir, tmp_path, False, tok,
                       args={"max_steps": 2}, peft_config=lora("CAUSAL_LM"))
    assert all("lora_" in n for n, p in trainer.model.named_parameters() if p.requires_grad)
    assert_trains(trainer)


@pytest.mark.parametrize("side", ENGINE)
@pytest.mark.parametrize("peft_type", ["prompt_tuning", "p_tuning"])
def test_train_with_peft_config_prompt_tuning(side, peft_type, tiny_model_dir, tok, tmp_path):
    from peft import PromptEncoderConfig, PromptTuningConfig

    config_cls = PromptTuningConfig if peft_type == "prompt_tuning" else PromptEncoderConfig
    trainer = _trainer(side, tiny_model_dir, tmp_path, True, tok,
                       peft_config=config_cls(task_type="CAUSAL_LM", num_virtual_tokens=4))
    assert_trains(trainer)


@pytest.mark.parametrize("side", ENGINE)
def test_train_with_gradient_checkpointing(side, tiny_model_dir, tok, tmp_path):
    assert_trains(_trainer(side, tiny_model_dir, tmp_path, False, tok, args={"gradient_checkpointing": True}))


@pytest.mark.parametrize("side", ENGINE)
def test_train_packing(side, tiny_model_dir, tok, tmp_path):
    assert_trains(_trainer(side, tiny_model_dir, tmp_path, False, tok, args={"packing": True}))


def _fine_tuned_texts(trainer, tok):
    """The rows the (last) SFT phase trained on, as text."""
    return [tok.decode(ids) for ids in trainer.train_dataset["input_ids"]]


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("column", ["chat_template_kwargs", "tools"])
def test_train_with_chat_template_kwargs_and_toolcall_data(side, column, tiny_model_dir, tok, tmp_path):
    value = (lambda i: {"mood": "happy"}) if column == "chat_template_kwargs" else (lambda i: TOOLS)
    trainer = _trainer(side, tiny_model_dir, tmp_path, True, with_tools_template(tok), columns={column: value})
    assert_trains(trainer)
    header = "<|im_start|> <unk> happy <|im_end|>" if column == "chat_template_kwargs" else \
        "<|im_start|> <unk> answer <|im_end|>"  # the word-level tokenizer has no "system": <unk>
    texts = _fine_tuned_texts(trainer, tok)
    assert texts and all(text.startswith(header) for text in texts), texts[:2]


LM_EVAL = [("standard_language_modeling", "dataset"), ("conversational_language_modeling", "dataset"),
           ("standard_prompt_completion", "dataset"), ("standard_language_modeling", "iterable_dataset"),
           ("standard_language_modeling", "dataset_dict"), ("conversational_language_modeling", "dict_of_dataset"),
           ("standard_language_modeling", "dict_of_iterable_dataset")]


@pytest.mark.parametrize("side, config_name, eval_dataset_type",
                         [(side, *case) for case in LM_EVAL for side in (SIDES if case == LM_EVAL[0] else ENGINE)],
                         ids=[f"{a}-{b}-{side}" for a, b in LM_EVAL for side in (SIDES if (a, b) == LM_EVAL[0]
                                                                                 else ENGINE)])
def test_evaluate_with_eval_dataset(side, config_name, eval_dataset_type, tiny_model_dir, tok, tmp_path):
    trainer = _trainer(side, tiny_model_dir, tmp_path, False, tok)
    metrics = trainer.evaluate(dataset(config_name, 4, eval_dataset_type))
    assert_evaluates(metrics, eval_dataset_type)


# -- what the sampling engine refuses by design: the parent passes, ours refuses in one line ---------------------------
@pytest.mark.parametrize("side", SIDES)
def test_train_with_iterable_dataset(side, tiny_model_dir, tok, tmp_path):
    if side == "SFTTrainer":
        trainer_cls, _ = _classes(side)
        return assert_trains(trainer_cls(model=tiny_model_dir, args=_config(side, tmp_path), processing_class=tok,
                                         train_dataset=dataset("standard_prompt_completion", 6, "iterable_dataset")))
    from datasets import Dataset

    from trl_plugins.sampling.method import SamplingMethod

    def check():  # the method's check, run by `trl-plugins train` before any model loads
        stream = Dataset.from_list(rows("standard_prompt_only", 6)).to_iterable_dataset()
        problems = SamplingMethod(None).check_data(stream, "train", _config(side, tmp_path), "train")
        if problems:
            raise ValueError("; ".join(problems))

    assert_refused(check, "dataset_streaming")
