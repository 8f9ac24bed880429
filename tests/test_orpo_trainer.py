"""ORPOTrainer on a tiny random Llama: parity with TRL's experimental ORPOTrainer, learning, LoRA, QLoRA."""

from __future__ import annotations

import warnings

import pytest
import torch
from datasets import Dataset
from peft import LoraConfig

from trl_plugins.trainers.orpo import ORPOConfig, ORPOTrainer

from helpers import trainer_args
from tiny import preference_rows, tiny_causal_lm, tiny_tokenizer

warnings.filterwarnings("ignore", category=FutureWarning)


def _whole_batch_loss(trainer) -> float:
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.eval()
    with torch.no_grad():
        return trainer.compute_loss(trainer.model, batch).item()


def test_loss_matches_trl_experimental_orpo(tmp_path):
    from trl.experimental.orpo import ORPOConfig as TRLConfig
    from trl.experimental.orpo import ORPOTrainer as TRLTrainer

    data = Dataset.from_list(preference_rows(8))
    tokenizer = tiny_tokenizer()
    common = trainer_args(tmp_path, per_device_train_batch_size=8)  # whole dataset in one batch: order cannot matter
    ours = ORPOTrainer(model=tiny_causal_lm(tokenizer, seed=3), args=ORPOConfig(**common), train_dataset=data,
                       processing_class=tokenizer)
    theirs = TRLTrainer(model=tiny_causal_lm(tokenizer, seed=3), args=TRLConfig(**common), train_dataset=data,
                        processing_class=tokenizer)
    loss_ours, loss_theirs = _whole_batch_loss(ours), _whole_batch_loss(theirs)
    assert loss_ours == pytest.approx(loss_theirs, abs=1e-5)
    assert loss_ours > 1.0  # a random model: the NLL dominates, so the comparison is not between zeros


def _orpo_by_hand(model, batch, beta, nll_on_prompt):
    """The paper's formula written out from the model's logits (Eq. 4-7), no shared code with the trainer."""
    import math

    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logps = torch.log_softmax(logits[:, :-1].double(), -1).gather(-1, batch["input_ids"][:, 1:, None])[..., 0]
    completion = batch["completion_mask"][:, 1:].double()
    n = logps.size(0) // 2
    nll_mask = batch["attention_mask"][:n, 1:].double() if nll_on_prompt else completion[:n]
    nll = -(logps[:n] * nll_mask).sum() / nll_mask.sum()
    avg = (logps * completion).sum(1) / completion.sum(1)
    terms = []
    for lc, lr in zip(avg[:n].tolist(), avg[n:].tolist()):
        log_odds = (lc - math.log(1 - math.exp(lc))) - (lr - math.log(1 - math.exp(lr)))
        terms.append(math.log(1 / (1 + math.exp(-log_odds))))
    return nll.item() - beta * sum(terms) / n


@pytest.mark.parametrize("nll_on_prompt", [True, False])
def test_conversational_loss_matches_the_formula(tmp_path, nll_on_prompt):
    # TRL's experimental trainer appends an extra EOS after the chat template's end-of-turn token, so on
    # conversational data the token sequences differ; compare with the paper's formula instead.
    data = Dataset.from_list(preference_rows(8, conversational=True))
    tokenizer = tiny_tokenizer()
    trainer = ORPOTrainer(model=tiny_causal_lm(tokenizer, seed=4),
                          args=ORPOConfig(**trainer_args(tmp_path, per_device_train_batch_size=8, beta=0.5,
                                                  nll_on_prompt=nll_on_prompt)),
                          train_dataset=data, processing_class=tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))
    assert "<|im_start|>" in tokenizer.decode(batch["input_ids"][0])  # the chat template was applied
    loss = _whole_batch_loss(trainer)
    assert loss == pytest.approx(_orpo_by_hand(trainer.model, batch, 0.5, nll_on_prompt), abs=1e-5)


def test_nll_on_prompt_false_scores_completion_tokens_only(tmp_path):
    data = Dataset.from_list(preference_rows(8))
    tokenizer = tiny_tokenizer()
    trainer = ORPOTrainer(model=tiny_causal_lm(tokenizer, seed=1),
                          args=ORPOConfig(**trainer_args(tmp_path, per_device_train_batch_size=8, nll_on_prompt=False,
                                                  beta=0.0)),
                          train_dataset=data, processing_class=tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch).item()
        logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    # By hand: mean NLL over the chosen rows' completion tokens (beta = 0 leaves only the NLL term).
    logps = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, batch["input_ids"][:, 1:, None])[..., 0]
    mask = batch["completion_mask"][:, 1:].float()[:8]
    expected = -(logps[:8] * mask).sum() / mask.sum()
    assert loss == pytest.approx(expected.item(), abs=1e-5)
    trainer.args.nll_on_prompt = True
    with torch.no_grad():
        with_prompt = trainer.compute_loss(trainer.model, batch).item()
    assert with_prompt != pytest.approx(loss, abs=1e-4)  # the prompt tokens change the NLL term


def test_training_changes_weights_and_widens_the_margin(tmp_path):
    data = Dataset.from_list(preference_rows(16))
    tokenizer = tiny_tokenizer()
    model = tiny_causal_lm(tokenizer, seed=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = ORPOTrainer(model=model, args=ORPOConfig(**trainer_args(tmp_path, max_steps=24, beta=1.0)),
                          train_dataset=data, processing_class=tokenizer)
    trainer.train()
    assert trainer.ref_model is None
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert len(changed) == len(before)
    logs = [h for h in trainer.state.log_history if "nll_loss" in h]
    first, last = logs[:3], logs[-3:]
    mean = lambda rows, key: sum(r[key] for r in rows) / len(rows)  # noqa: E731
    assert mean(last, "nll_loss") < mean(first, "nll_loss")  # the SFT term falls
    assert mean(last, "rewards/margins") > mean(first, "rewards/margins")  # chosen pulls away from rejected
    assert mean(last, "log_odds_ratio") > mean(first, "log_odds_ratio")


def test_lora_trains_only_the_adapters(tmp_path):
    data = Dataset.from_list(preference_rows(8))
    tokenizer = tiny_tokenizer()
    trainer = ORPOTrainer(model=tiny_causal_lm(tokenizer), args=ORPOConfig(**trainer_args(tmp_path)), train_dataset=data,
                          processing_class=tokenizer,
                          peft_config=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    lora_changed = [n for n in before if "lora_" in n and not torch.equal(before[n], after[n].detach())]
    base_changed = [n for n in before if "lora_" not in n and not torch.equal(before[n], after[n].detach())]
    assert lora_changed and not base_changed
    assert trainer.ref_model is None
    assert "ref" not in getattr(trainer.model, "peft_config", {})  # no reference adapter copied either


def test_qlora_4bit_runs_on_cpu(tmp_path):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from tiny import save_tiny_causal_lm

    path = save_tiny_causal_lm(tmp_path / "tiny", seed=2)
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(path, quantization_config=quant, dtype=torch.float32)
    assert any("Linear4bit" in type(m).__name__ for m in model.modules())
    trainer = ORPOTrainer(model=model, args=ORPOConfig(**trainer_args(tmp_path, max_steps=2)),
                          train_dataset=Dataset.from_list(preference_rows(8)), processing_class=tiny_tokenizer(),
                          peft_config=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" in n}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(before[n], after[n].detach()) for n in before)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in trainer.state.log_history if "loss" in h)


def test_reference_model_is_refused(tmp_path):
    tokenizer = tiny_tokenizer()
    with pytest.raises(ValueError, match="reference-free"):
        ORPOTrainer(model=tiny_causal_lm(tokenizer), ref_model=tiny_causal_lm(tokenizer),
                    args=ORPOConfig(**trainer_args(tmp_path)), train_dataset=Dataset.from_list(preference_rows(4)),
                    processing_class=tokenizer)


@pytest.mark.parametrize("field,value", [("precompute_ref_log_probs", True), ("loss_type", ["ipo"]),
                                         ("sync_ref_model", True), ("label_smoothing", 0.1)])
def test_config_rejects_dpo_only_fields(tmp_path, field, value):
    with pytest.raises(ValueError, match=field):
        ORPOConfig(output_dir=str(tmp_path), bf16=False, use_cpu=True, **{field: value})


def test_model_card_and_save(tmp_path):
    tokenizer = tiny_tokenizer()
    trainer = ORPOTrainer(model=tiny_causal_lm(tokenizer), args=ORPOConfig(**trainer_args(tmp_path, max_steps=1)),
                          train_dataset=Dataset.from_list(preference_rows(4)), processing_class=tokenizer)
    trainer.train()
    trainer.save_model(trainer.args.output_dir)
    trainer.create_model_card(model_name="tiny-orpo")
    card = (tmp_path / "out" / "README.md").read_text()
    assert "ORPO" in card and "2403.07691" in card
