"""mDPO: the loss on hand-computed numbers and against TRL's DPO, the corruption, the collator, the trainer on a tiny
LLaVA-style model (full, LoRA, 4-bit), parity with DPOTrainer, and bad inputs stopped before any model loads."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trl_plugins.losses import mdpo_loss
from trl_plugins.models.vision import corrupt_image, crop_box

from tiny_vlm import save_tiny_vlm, shape_image, tiny_vlm, vision_rows


def _logsig(x: float) -> float:
    return -math.log1p(math.exp(-x))


# -- loss ------------------------------------------------------------------------------------------------------------
def test_mdpo_loss_hand_computed():
    # one pair: policy c=-10, r=-12, c'=-14; reference c=-11, r=-11, c'=-12; beta 0.5, anchor 0.2
    t = lambda v: torch.tensor([v])  # noqa: E731
    loss, metrics = mdpo_loss(t(-10.0), t(-12.0), t(-14.0), t(-11.0), t(-11.0), t(-12.0), beta=0.5,
                              weights=(1.0, 2.0, 0.5), anchor=0.2)
    # DPO: (−10+12) − (−11+11) = 2 ; conditional: (−10+14) − (−11+12) = 3 ; anchored: 0.5·(−10+11) − 0.2 = 0.3
    dpo, cond, anc = -_logsig(0.5 * 2), -_logsig(0.5 * 3), -_logsig(0.3)
    assert metrics["loss/dpo"].item() == pytest.approx(dpo, abs=1e-6)
    assert metrics["loss/conditional"].item() == pytest.approx(cond, abs=1e-6)
    assert metrics["loss/anchor"].item() == pytest.approx(anc, abs=1e-6)
    assert loss.item() == pytest.approx(dpo + 2.0 * cond + 0.5 * anc, abs=1e-6)
    assert metrics["rewards/chosen"].item() == pytest.approx(0.5)
    assert metrics["rewards/rejected"].item() == pytest.approx(-0.5)
    assert metrics["rewards/corrupted"].item() == pytest.approx(-1.0)
    assert metrics["logps/image_conditional_margin"].item() == pytest.approx(4.0)
    assert metrics["rewards/accuracies"].item() == 1.0


def test_mdpo_loss_batch_mean_and_gradient_direction():
    g = torch.Generator().manual_seed(0)
    pc, pr, pcc = (torch.randn(6, generator=g, requires_grad=True) for _ in range(3))
    rc, rr, rcc = (torch.randn(6, generator=g) for _ in range(3))
    loss, _ = mdpo_loss(pc, pr, pcc, rc, rr, rcc, beta=0.1)
    expected = (-F.logsigmoid(0.1 * ((pc - pr) - (rc - rr))) - F.logsigmoid(0.1 * ((pc - pcc) - (rc - rcc)))
                - F.logsigmoid(0.1 * (pc - rc))).mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    # descending the loss raises the chosen log-prob and lowers the rejected and corrupted-image ones
    assert (pc.grad < 0).all() and (pr.grad > 0).all() and (pcc.grad > 0).all()


def test_mdpo_loss_is_trl_sigmoid_dpo_when_extra_weights_are_zero():
    """TRL 1.16 DPOTrainer._compute_loss, loss_type='sigmoid': mean(-logsigmoid(beta * delta_score))."""
    g = torch.Generator().manual_seed(1)
    pc, pr, pcc, rc, rr, rcc = (torch.randn(5, generator=g) * 5 for _ in range(6))
    beta = 0.3
    trl_loss = 0.0 + (-F.logsigmoid(beta * ((pc - rc) - (pr - rr)))).mean() * 1.0
    loss, _ = mdpo_loss(pc, pr, pcc, rc, rr, rcc, beta=beta, weights=(1.0, 0.0, 0.0))
    assert loss.item() == trl_loss.item()


def test_mdpo_loss_rejects_bad_shapes():
    with pytest.raises(ValueError):
        mdpo_loss(torch.zeros(2), torch.zeros(3), torch.zeros(2), torch.zeros(2), torch.zeros(2), torch.zeros(2))


# -- corruption ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(64, 64), (80, 48), (33, 97)])
def test_crop_keeps_area_fraction_and_size(size):
    rng = np.random.default_rng(0)
    width, height = size
    fractions = []
    for _ in range(200):
        left, top, w, h = crop_box(width, height, (0.01, 0.2), rng)
        assert 0 <= left and left + w <= width and 0 <= top and top + h <= height
        fractions.append(w * h / (width * height))
    # rounding to whole pixels moves the fraction by at most ~(w + h) / area around the requested range
    slack = (width + height + 1) / (width * height)
    assert min(fractions) >= 0.01 - slack and max(fractions) <= 0.2 + 2 * slack
    image = shape_image("red", "circle", size=32).resize(size)
    out = corrupt_image(image, "crop", np.random.default_rng(1))
    assert out.size == image.size and out.mode == image.mode
    assert np.asarray(out).tobytes() != np.asarray(image).tobytes()


def test_corruptions_are_seeded():
    image = shape_image("blue", "triangle")
    for kind in ("crop", "noise"):
        a = corrupt_image(image, kind, np.random.default_rng(7))
        b = corrupt_image(image, kind, np.random.default_rng(7))
        c = corrupt_image(image, kind, np.random.default_rng(8))
        assert np.array_equal(np.asarray(a), np.asarray(b))
        assert not np.array_equal(np.asarray(a), np.asarray(c))
    blank = corrupt_image(image, "blank")
    assert blank.size == image.size and np.asarray(blank).max() == 0
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt_image(image, "blur")


# -- collator --------------------------------------------------------------------------------------------------------
def _collator(processor, seed=0, corruption="crop"):
    from trl_plugins.trainers.mdpo.collator import DataCollatorForMDPO

    return DataCollatorForMDPO(processor=processor, corruption=corruption, seed=seed)


def test_collator_builds_three_blocks_and_reproduces():
    _, processor = tiny_vlm()
    rows = vision_rows(4)
    batch = _collator(processor)([dict(r) for r in rows])
    assert batch["input_ids"].shape[0] == 12 and batch["pixel_values"].shape[0] == 12
    ids, mask = batch["input_ids"], batch["completion_mask"].bool()
    for i in range(4):  # block 3 repeats the chosen text of block 1; only the image differs
        assert torch.equal(ids[i], ids[8 + i]) and torch.equal(mask[i], mask[8 + i])
        assert torch.equal(batch["pixel_values"][i], batch["pixel_values"][4 + i])
        assert not torch.equal(batch["pixel_values"][i], batch["pixel_values"][8 + i])
    again = _collator(processor)([dict(r) for r in rows])
    assert torch.equal(batch["pixel_values"], again["pixel_values"])
    other = _collator(processor, seed=1)([dict(r) for r in rows])
    assert not torch.equal(batch["pixel_values"][8:], other["pixel_values"][8:])


def test_collator_opens_image_paths(tmp_path):
    _, processor = tiny_vlm()
    from_paths = _collator(processor)(vision_rows(3, image_as="path", directory=tmp_path))
    from_pil = _collator(processor)(vision_rows(3))
    torch.testing.assert_close(from_paths["pixel_values"], from_pil["pixel_values"])


# -- trainer ---------------------------------------------------------------------------------------------------------
def _args(tmp_path, **overrides):
    from trl_plugins.trainers.mdpo.trainer import MDPOConfig

    values = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=3, learning_rate=5e-3,
                  report_to="none", use_cpu=True, logging_steps=1, save_strategy="no", disable_tqdm=True,
                  bf16=False, activation_checkpointing=False, seed=0)
    values.update(overrides)
    return MDPOConfig(**values)


def _dataset(n=8):
    from datasets import Dataset

    return Dataset.from_list(vision_rows(n))


def test_trainer_full_finetune_updates_language_model_not_vision(tmp_path):
    from trl_plugins.trainers.mdpo.trainer import MDPOTrainer

    model, processor = tiny_vlm()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = MDPOTrainer(model=model, args=_args(tmp_path), train_dataset=_dataset(), processing_class=processor)
    trainer.train()
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p.detach())}
    assert any("language_model" in n for n in changed) and any("multi_modal_projector" in n for n in changed)
    assert not any("vision_tower" in n for n in changed)
    logs = [log for log in trainer.state.log_history if "loss/conditional" in log]
    assert len(logs) == 3
    first = logs[0]  # policy == reference at step 1: every term is log 2
    for key in ("loss/dpo", "loss/conditional", "loss/anchor"):
        assert first[key] == pytest.approx(math.log(2), abs=1e-5)
    assert first["loss"] == pytest.approx(3 * math.log(2), abs=1e-4)
    for key in ("rewards/chosen", "rewards/corrupted", "rewards/accuracies", "rewards/conditional_margins",
                "logps/image_conditional_margin", "logps/corrupted"):
        assert key in logs[-1]
    assert logs[-1]["loss"] < first["loss"]


def _perturbed_pair(seed=0, scale=0.05):
    """A policy that differs from its reference (so the DPO loss is not log 2), as two identical copies."""
    model, processor = tiny_vlm()
    reference = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return model, reference, processor


def test_trainer_loss_equals_dpo_trainer_when_extra_weights_are_zero(tmp_path):
    from trl import DPOConfig, DPOTrainer

    from trl_plugins.trainers.mdpo.trainer import MDPOTrainer

    policy, reference, processor = _perturbed_pair()
    dataset = _dataset(4)
    ours = MDPOTrainer(model=copy.deepcopy(policy), ref_model=copy.deepcopy(reference),
                       args=_args(tmp_path, mdpo_weights=[1.0, 0.0, 0.0]), train_dataset=dataset,
                       processing_class=processor)
    common = {k: v for k, v in ours.args.to_dict().items() if k in ("per_device_train_batch_size", "seed")}
    theirs = DPOTrainer(model=copy.deepcopy(policy), ref_model=copy.deepcopy(reference),
                        args=DPOConfig(output_dir=str(tmp_path / "dpo"), report_to="none", use_cpu=True,
                                       bf16=False, **common),
                        train_dataset=dataset, processing_class=processor)
    rows = [dataset[i] for i in range(4)]
    ours_batch = ours._prepare_inputs(ours.data_collator([dict(r) for r in rows]))
    theirs_batch = theirs._prepare_inputs(theirs.data_collator([dict(r) for r in rows]))
    loss_ours = ours.compute_loss(ours.model, ours_batch)
    loss_theirs = theirs.compute_loss(theirs.model, theirs_batch)
    assert abs(loss_theirs.item() - math.log(2)) > 1e-3  # the check is not trivial
    torch.testing.assert_close(loss_ours, loss_theirs, rtol=1e-5, atol=1e-6)
    loss_ours.backward()
    loss_theirs.backward()
    grads = lambda m: {n: p.grad for n, p in m.named_parameters() if "language_model" in n}  # noqa: E731
    for name, grad in grads(ours.model).items():
        torch.testing.assert_close(grad, grads(theirs.model)[name], rtol=1e-4, atol=1e-6)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins"):
        assert ours._metrics["train"][key][-1] == pytest.approx(theirs._metrics["train"][key][-1], abs=1e-5)


def test_trainer_three_terms_match_mdpo_loss_when_policy_differs_from_reference(tmp_path):
    """All three terms at full weight with policy != reference: the trainer's loss and each term equal
    ``mdpo_loss`` on sequence log-probs computed here independently from the same collated batch."""
    from trl_plugins.trainers.mdpo.trainer import MDPOTrainer

    policy, reference, processor = _perturbed_pair(seed=1, scale=0.5)
    dataset = _dataset(4)
    trainer = MDPOTrainer(model=copy.deepcopy(policy), ref_model=copy.deepcopy(reference), args=_args(tmp_path),
                          train_dataset=dataset, processing_class=processor)
    batch = trainer._prepare_inputs(trainer.data_collator([dict(dataset[i]) for i in range(4)]))
    loss = trainer.compute_loss(trainer.model, batch)

    def sequence_logps(model):
        inputs = {k: v for k, v in batch.items() if k != "completion_mask"}
        logits = model(**inputs, use_cache=False).logits[:, :-1].float()
        targets = batch["input_ids"][:, 1:]
        token_logps = torch.gather(logits.log_softmax(-1), 2, targets.unsqueeze(-1)).squeeze(-1)
        return (token_logps * batch["completion_mask"][:, 1:]).sum(1).chunk(3)

    with torch.no_grad():
        expected, terms = mdpo_loss(*sequence_logps(policy.eval()), *sequence_logps(reference.eval()), beta=0.1)
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-5)
    logged = trainer._metrics["train"]
    for key in ("loss/dpo", "loss/conditional", "loss/anchor"):
        assert logged[key][-1] == pytest.approx(terms[key].item(), abs=1e-5)
        assert abs(terms[key].item() - math.log(2)) > 1e-3, key  # policy != reference: no term sits at log 2


def test_trainer_lora_keeps_vision_frozen_and_uses_adapter_free_reference(tmp_path):
    from peft import LoraConfig

    from trl_plugins.trainers.mdpo.trainer import MDPOTrainer

    model, processor = tiny_vlm()
    peft_config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear")
    trainer = MDPOTrainer(model=model, args=_args(tmp_path, learning_rate=5e-2), train_dataset=_dataset(),
                          processing_class=processor, peft_config=peft_config)
    lora = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" in n}
    assert lora and not any("vision_tower" in n for n in lora)
    assert any("language_model" in n for n in lora)
    assert trainer.ref_model is None
    trainer.train()
    changed = [n for n, p in trainer.model.named_parameters() if "lora_B" in n and not torch.equal(lora[n], p)]
    assert changed
    first = next(log for log in trainer.state.log_history if "loss/dpo" in log)
    assert first["loss/dpo"] == pytest.approx(math.log(2), abs=1e-5)  # base == adapter-disabled reference at start


def test_trainer_4bit_qlora(tmp_path):
    pytest.importorskip("bitsandbytes")
    from peft import LoraConfig
    from transformers import AutoModelForImageTextToText, AutoProcessor, BitsAndBytesConfig

    from trl_plugins.trainers.mdpo.trainer import MDPOTrainer

    path = save_tiny_vlm(tmp_path / "tiny-vlm")
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32,
                               llm_int8_skip_modules=["lm_head", "multi_modal_projector"])
    model = AutoModelForImageTextToText.from_pretrained(path, quantization_config=quant, dtype=torch.float32)
    assert getattr(model, "is_loaded_in_4bit", False)
    trainer = MDPOTrainer(model=model, args=_args(tmp_path, learning_rate=5e-2, max_steps=2),
                          train_dataset=_dataset(), processing_class=AutoProcessor.from_pretrained(path),
                          peft_config=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    lora = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n}
    trainer.train()
    assert any(not torch.equal(lora[n], p) for n, p in trainer.model.named_parameters() if "lora_B" in n)
    assert all(math.isfinite(log["loss"]) for log in trainer.state.log_history if "loss" in log)


# -- CLI: bad input stops before the model loads -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_vlm_dir(tmp_path_factory) -> str:
    return save_tiny_vlm(tmp_path_factory.mktemp("tiny-vlm"))


def _write(tmp_path, rows, name="data.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _path_rows(tmp_path, n=4):
    return vision_rows(n, image_as="path", directory=str(tmp_path))


def _recipe(tmp_path, model, data, **extra):
    import yaml

    config = dict(model_name_or_path=model, dataset_name=data, output_dir=str(tmp_path / "out"), max_steps=1,
                  per_device_train_batch_size=2, use_cpu=True, report_to="none", save_strategy="no", bf16=False,
                  activation_checkpointing=False, disable_tqdm=True, logging_steps=1)
    config.update(extra)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def _one_error(code, err):
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1, err
    return lines[0]


def test_cli_row_without_image(tmp_path, tiny_vlm_dir, run_cli, no_model_loading):
    rows = _path_rows(tmp_path)
    rows[2]["image"] = None
    line = _one_error(*run_cli("check-data", "mdpo", "--config", _recipe(tmp_path, tiny_vlm_dir, _write(tmp_path, rows)))[::2])
    assert "row without an image in row 2" in line and "'image'" in line


def test_cli_no_image_column(tmp_path, tiny_vlm_dir, run_cli, no_model_loading):
    rows = [{k: v for k, v in r.items() if k != "image"} for r in _path_rows(tmp_path)]
    line = _one_error(*run_cli("train", "mdpo", "--config", _recipe(tmp_path, tiny_vlm_dir, _write(tmp_path, rows)))[::2])
    assert "no 'image' or 'images' column" in line


def test_cli_unreadable_image_file(tmp_path, tiny_vlm_dir, run_cli, no_model_loading):
    rows = _path_rows(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    rows[1]["image"] = str(tmp_path / "broken.png")
    rows[3]["image"] = str(tmp_path / "missing.png")
    code, _, err = run_cli("train", "mdpo", "--config", _recipe(tmp_path, tiny_vlm_dir, _write(tmp_path, rows)))
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert any("unreadable image in row 1" in line for line in lines)
    assert any("image file not found in row 3" in line for line in lines)
    assert len(lines) == 2


def test_cli_prompt_without_image_placeholder(tmp_path, tiny_vlm_dir, run_cli, no_model_loading):
    rows = _path_rows(tmp_path)
    rows[0]["prompt"] = rows[0]["prompt"].replace("<image>", "").strip()
    line = _one_error(*run_cli("train", "mdpo", "--config", _recipe(tmp_path, tiny_vlm_dir, _write(tmp_path, rows)))[::2])
    assert "'<image>'" in line and "row 0" in line and "once per image" in line


def test_cli_text_only_model(tmp_path, tiny_model_dir, run_cli, no_model_loading):
    data = _write(tmp_path, _path_rows(tmp_path))
    line = _one_error(*run_cli("train", "mdpo", "--config", _recipe(tmp_path, tiny_model_dir, data))[::2])
    assert "text-only" in line and "vision-language" in line
    line = _one_error(*run_cli("train", "mdpo", "--config",
                               _recipe(tmp_path, "embedded:smollm2-135m-instruct", data))[::2])
    assert "text-only" in line


def test_cli_good_input_passes_check_data(tmp_path, tiny_vlm_dir, run_cli, no_model_loading):
    code, out, err = run_cli("check-data", "mdpo", "--config",
                             _recipe(tmp_path, tiny_vlm_dir, _write(tmp_path, _path_rows(tmp_path))))
    assert code == 0, err
    assert out.startswith("ok:")


def test_cli_trains_tiny_vlm_from_image_paths(tmp_path, tiny_vlm_dir, run_cli):
    recipe = _recipe(tmp_path, tiny_vlm_dir, _write(tmp_path, _path_rows(tmp_path)), use_peft=True, lora_r=4,
                     lora_alpha=8, lora_target_modules=["all-linear"], learning_rate=1e-2)
    code, out, err = run_cli("train", "mdpo", "--config", recipe)
    assert code == 0, err
    assert "done" in out and (tmp_path / "out" / "adapter_config.json").is_file()


def test_shipped_recipes_parse_strictly():
    from trl_plugins.registry import get_registry
    from trl_plugins.run.recipe import StrictParser, shipped_recipes

    spec = get_registry().trainer("mdpo")
    recipes = list(shipped_recipes(spec).values())
    names = {str(p.parent.parent.name if p.parent.name == "mdpo" else p.parent.name) for p in recipes}
    assert {"demo", "qwen2.5-vl-3b-instruct", "llava-1.5-7b"} <= names
    _, config_cls = spec.load()
    for recipe in recipes:
        (_, training_args, model_args, _), _ = StrictParser(config_cls, prog="t").parse(
            ["--bf16", "false", "--use_cpu", "true"], recipe)  # no GPU here: only the keys are under test
        assert training_args.mdpo_weights == [1.0, 1.0, 1.0] and training_args.freeze_vision_tower
        if recipe.parent.name == "mdpo":
            assert model_args.load_in_4bit and model_args.use_peft


def test_shapes_dataset_needs_the_image():
    from trl_plugins.embedded import load_embedded_dataset

    dsd = load_embedded_dataset("shapes-preference", "n_train=24,n_test=8,conversational=false")
    assert set(dsd) == {"train", "test"} and len(dsd["test"]) == 8
    train = dsd["train"]
    assert train[0]["image"].size == (64, 64) and train[0]["prompt"].startswith("<image>")
    # the text cannot give the answer away: the same prompt has different chosen answers
    by_prompt = {}
    for row in train:
        by_prompt.setdefault(row["prompt"], set()).add(row["chosen"])
    assert all(len(answers) > 1 for answers in by_prompt.values())
    assert all(row["chosen"] != row["rejected"] for row in train)


@pytest.mark.real
def test_real_smollm2_tiny_llava_learns_to_use_the_image(tmp_path, smollm2_path):
    """The embedded SmolLM2 LLaVA (random vision tower), LoRA + trained projector, 10 short mDPO steps on the
    shapes pairs: the conditional term falls below log 2 and the chosen answer becomes likelier with the real image
    than with the corrupted one on the training batches (``logps/image_conditional_margin`` rises)."""
    from peft import LoraConfig
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from trl_plugins.embedded import load_embedded_dataset
    from trl_plugins.models.loading import resolve_model_path
    from trl_plugins.trainers.mdpo.trainer import MDPOTrainer

    path = resolve_model_path("embedded:smollm2-tiny-llava")
    data = load_embedded_dataset("shapes-preference", "n_train=16,n_test=1,conversational=false")["train"]
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
                      modules_to_save=["multi_modal_projector"])
    trainer = MDPOTrainer(model=model, args=_args(tmp_path, max_steps=10, learning_rate=1e-3,
                                                  per_device_train_batch_size=2, num_train_epochs=2),
                          train_dataset=data, processing_class=AutoProcessor.from_pretrained(path),
                          peft_config=lora)
    trainer.train()
    logs = [log for log in trainer.state.log_history if "loss/conditional" in log]
    first, last = logs[0], logs[-1]
    assert first["loss/conditional"] == pytest.approx(math.log(2), abs=1e-4)
    late = logs[-4:]
    assert sum(log["loss/conditional"] for log in late) / len(late) < math.log(2) - 0.01
    assert sum(log["rewards/conditional_margins"] for log in late) / len(late) > 0
    assert last["logps/image_conditional_margin"] > first["logps/image_conditional_margin"]
