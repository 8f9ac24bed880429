"""kto-weighted: class weights (paper Eq. 8), the weighted loss, mixed batches, parity with TRL's KTOTrainer,
training on a tiny model, every bad input through the CLI, and a real SmolLM2 run on 1:4 imbalanced IMDB data."""

from __future__ import annotations

import json
import math
import time
import warnings

import pytest
import torch
from datasets import Dataset

from trl_plugins.losses import kto_weight_ratio, kto_weighted_loss, kto_weights
from trl_plugins.trainers.kto_weighted.batches import EXAMPLE_WEIGHT_KEY, mixed_batch_order
from trl_plugins.trainers.kto_weighted.trainer import KTOWeightedConfig, KTOWeightedTrainer, KTOWeightWarning

from helpers import trainer_args, write_jsonl
from tiny import preference_rows, tiny_causal_lm, tiny_tokenizer

warnings.filterwarnings("ignore", category=FutureWarning)


# -- kto_weights ------------------------------------------------------------------------------------------------------
COUNTS = [(n_d, n_u) for n_d in (1, 2, 3, 7, 10, 50, 99, 100, 101, 1000, 4321) for n_u in (1, 2, 5, 9, 10, 75, 100, 400, 999, 12345)]


@pytest.mark.parametrize("target", [1.0, 1.1, 1.25, 4 / 3])
def test_kto_weights_satisfy_the_papers_inequality_and_upweight_only_the_rarer_class(target):
    for n_d, n_u in COUNTS:
        lam_d, lam_u = kto_weights(n_d, n_u, target)
        ratio = kto_weight_ratio(lam_d, lam_u, n_d, n_u)
        assert 1.0 - 1e-12 <= ratio <= 4 / 3 + 1e-12, (n_d, n_u, target, ratio)
        assert min(lam_d, lam_u) == 1.0, "the more common class keeps weight 1, nothing is down-weighted"
        if n_d < n_u:
            assert lam_u == 1.0 and lam_d > 1.0 and ratio == pytest.approx(target)
        elif n_d == n_u:  # a tie: desirable gets the target's tilt (weight 1 when target_ratio = 1)
            assert lam_u == 1.0 and lam_d == pytest.approx(target)
        elif n_u * target <= n_d:
            assert lam_d == 1.0 and ratio == pytest.approx(target)
            assert lam_u >= 1.0
        else:  # undesirable rarer, but by less than the target: weights 1 already give a ratio in [1, target)
            assert n_u < n_d < n_u * target and (lam_d, lam_u) == (1.0, 1.0)


def test_kto_weights_known_values():
    assert kto_weights(100, 400) == (4.0, 1.0)  # 1:4, desirable rarer: λ_D = 4
    assert kto_weights(400, 100) == (1.0, 4.0)
    assert kto_weights(400, 100, 4 / 3) == pytest.approx((1.0, 3.0))
    assert kto_weights(50, 50) == (1.0, 1.0)
    assert kto_weights(50, 50, 1.2) == pytest.approx((1.2, 1.0))
    assert kto_weights(110, 100, 1.2) == (1.0, 1.0)  # ratio 1.1 already in [1, 1.2]


@pytest.mark.parametrize("args", [(0, 5), (5, 0), (5, 5, 0.9), (5, 5, 1.4), (-1, 5), (2.5, 5)])
def test_kto_weights_refuses_bad_input(args):
    with pytest.raises(ValueError):
        kto_weights(*args)


# -- the loss -----------------------------------------------------------------------------------------------------------
def test_weighted_loss_matches_the_formula_on_hand_numbers():
    policy = torch.tensor([-1.0, -2.0, -3.0, -0.5])
    reference = torch.tensor([-1.5, -1.0, -2.0, -0.5])
    labels = torch.tensor([True, False, False, True])
    kl, beta, lam_d, lam_u = 0.2, 0.5, 2.0, 0.75
    example = torch.tensor([1.0, 0.5, 2.0, 0.0])
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    # r = [0.5, -1.0, -1.0, 0.0]; desirable: σ(β(r - kl)), undesirable: σ(β(kl - r))
    expected_terms = [
        1.0 * lam_d * (1 - sig(0.5 * (0.5 - 0.2))),
        0.5 * lam_u * (1 - sig(0.5 * (0.2 + 1.0))),
        2.0 * lam_u * (1 - sig(0.5 * (0.2 + 1.0))),
        0.0 * lam_d * (1 - sig(0.5 * (0.0 - 0.2))),
    ]
    loss, metrics = kto_weighted_loss(policy, reference, labels, kl, beta, lam_d, lam_u, example)
    assert loss.item() == pytest.approx(sum(expected_terms) / 4, abs=1e-7)
    assert metrics["z_ref"].item() == pytest.approx(beta * kl)
    assert metrics["rewards/chosen"].item() == pytest.approx(beta * (0.5 + 0.0) / 2)
    assert metrics["rewards/rejected"].item() == pytest.approx(beta * -1.0)
    assert metrics["weights/desirable"].item() == pytest.approx(lam_d * 0.5)
    assert metrics["weights/undesirable"].item() == pytest.approx(lam_u * 1.25)
    # without example weights, λ alone; kl = 0 is TRL's apo_zero_unpaired
    loss, _ = kto_weighted_loss(policy, reference, labels, 0.0, beta)
    apo = [1 - sig(0.25), sig(-0.5), sig(-0.5), 1 - sig(0.0)]
    assert loss.item() == pytest.approx(sum(apo) / 4, abs=1e-7)


def test_weighted_loss_gradient_pushes_desirable_up_and_undesirable_down():
    policy = torch.tensor([-2.0, -2.0], requires_grad=True)
    loss, _ = kto_weighted_loss(policy, torch.tensor([-2.0, -2.0]), torch.tensor([True, False]), 0.0, 0.1, 4.0, 1.0)
    loss.backward()
    assert policy.grad[0] < 0 < policy.grad[1]  # descent raises log π(desirable), lowers log π(undesirable)
    assert policy.grad[0].abs() == pytest.approx(4 * policy.grad[1].abs())  # λ_D = 4 × λ_U


def test_weighted_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        kto_weighted_loss(torch.zeros(3), torch.zeros(3), torch.ones(2, dtype=torch.bool), 0.0, 0.1)
    with pytest.raises(ValueError):
        kto_weighted_loss(torch.zeros(3, 1), torch.zeros(3, 1), torch.ones(3, 1, dtype=torch.bool), 0.0, 0.1)


# -- mixed batches ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_d,n_u,batch", [
    (20, 80, 4), (25, 75, 4), (50, 50, 2), (13, 87, 8), (30, 70, 3), (34, 66, 3), (7, 7, 2), (90, 10, 8), (90, 13, 8),
])
def test_mixed_batch_order_gives_every_batch_both_classes(n_d, n_u, batch):
    labels = [True] * n_d + [False] * n_u  # label-sorted, the worst case for sequential sampling
    order, mixed, chunks = mixed_batch_order(labels, batch, seed=0)
    assert sorted(order) == list(range(len(labels)))
    batches = [[labels[i] for i in order[k : k + batch]] for k in range(0, len(order), batch)]
    full = [b for b in batches if len(b) == batch]
    assert len(batches) == chunks
    assert mixed == sum(any(b) and not all(b) for b in batches)
    rare = min(n_d, n_u)
    assert sum(any(b) and not all(b) for b in full) >= min(rare, len(full))  # the most the rare rows allow
    if rare >= chunks:
        assert all(any(b) and not all(b) for b in full)
    assert mixed_batch_order(labels, batch, seed=0)[0] == order
    assert mixed_batch_order(labels, batch, seed=1)[0] != order


def test_mixed_batch_order_when_the_rare_class_is_too_small():
    labels = [True] * 3 + [False] * 37
    order, mixed, chunks = mixed_batch_order(labels, 4, seed=0)
    assert (mixed, chunks) == (3, 10)  # one batch per rare row at most


# -- trainer on a tiny model -----------------------------------------------------------------------------------------
def _unpaired(n_desirable, n_undesirable, weight=None):
    rows = preference_rows(max(n_desirable, n_undesirable))
    out = [{"prompt": r["prompt"], "completion": r["chosen"], "label": True} for r in rows[:n_desirable]]
    out += [{"prompt": r["prompt"], "completion": r["rejected"], "label": False} for r in rows[:n_undesirable]]
    if weight is not None:
        for i, row in enumerate(out):
            row["strength"] = weight(i)
    return out


def _batch_loss_and_grads(trainer, batch):
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, dict(batch))
    loss.backward()
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return loss.item(), grads


@pytest.mark.parametrize("ours_kwargs,trl_kwargs", [
    (dict(weighting="none"), dict()),
    (dict(weighting="none", desirable_weight=1.3, undesirable_weight=0.8), dict(desirable_weight=1.3, undesirable_weight=0.8)),
    (dict(weighting="manual", desirable_weight=2.0, undesirable_weight=0.5), dict(desirable_weight=2.0, undesirable_weight=0.5)),
    (dict(weighting="auto"), dict(desirable_weight=3.0)),  # 2 desirable : 6 undesirable -> λ_D = 3
])
def test_loss_and_gradients_match_trl_kto_trainer(tmp_path, ours_kwargs, trl_kwargs):
    """Same policy, same (different) reference model, same batch: TRL's KTOTrainer and ours agree to 1e-6."""
    from trl import KTOConfig, KTOTrainer

    data = Dataset.from_list(_unpaired(2, 6))
    tokenizer = tiny_tokenizer()
    common = trainer_args(tmp_path, per_device_train_batch_size=8)
    ours = KTOWeightedTrainer(model=tiny_causal_lm(tokenizer, seed=3), ref_model=tiny_causal_lm(tokenizer, seed=4),
                              args=KTOWeightedConfig(**common, mix_batches=False, **ours_kwargs), train_dataset=data,
                              processing_class=tokenizer)
    theirs = KTOTrainer(model=tiny_causal_lm(tokenizer, seed=3), ref_model=tiny_causal_lm(tokenizer, seed=4),
                        args=KTOConfig(**common, **trl_kwargs), train_dataset=data, processing_class=tokenizer)
    batch = next(iter(theirs.get_train_dataloader()))
    assert torch.equal(batch["input_ids"], next(iter(ours.get_train_dataloader()))["input_ids"])
    loss_ours, grads_ours = _batch_loss_and_grads(ours, batch)
    loss_theirs, grads_theirs = _batch_loss_and_grads(theirs, batch)
    assert abs(loss_ours - loss_theirs) <= 1e-6
    assert theirs._metrics["train"]["kl"][-1] > 0  # a real reference point, not a clamped zero
    assert abs(loss_ours - 0.5 * 1.0) > 1e-3  # policy != reference: not the trivial σ(0) value
    assert grads_ours.keys() == grads_theirs.keys()
    for name in grads_ours:
        torch.testing.assert_close(grads_ours[name], grads_theirs[name], atol=1e-6, rtol=1e-5)
    for key in ("kl", "rewards/chosen", "rewards/rejected", "logps/chosen", "entropy"):
        assert ours._metrics["train"][key][-1] == pytest.approx(theirs._metrics["train"][key][-1], abs=1e-6)


def test_trainer_learns_with_auto_weights_on_imbalanced_label_sorted_data(tmp_path):
    data = Dataset.from_list(_unpaired(6, 18))  # label-sorted: TRL would give single-class batches
    tokenizer = tiny_tokenizer()
    model = tiny_causal_lm(tokenizer, seed=0)
    trainer = KTOWeightedTrainer(model=model, ref_model=tiny_causal_lm(tokenizer, seed=0),
                                 args=KTOWeightedConfig(**trainer_args(tmp_path, max_steps=12, num_train_epochs=3)),
                                 train_dataset=data, processing_class=tokenizer)
    assert (trainer.desirable_weight, trainer.undesirable_weight) == (3.0, 1.0)
    assert trainer.class_counts == (6, 18)
    labels = list(trainer.train_dataset["label"])
    assert all(any(labels[k : k + 4]) and not all(labels[k : k + 4]) for k in range(0, 24, 4))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.train()
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())]
    assert len(changed) == len(before)
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert all(h["weights/desirable"] == 3.0 and h["weights/undesirable"] == 1.0 for h in logs)
    assert all(h["count/desirable"] >= 1 and h["count/undesirable"] >= 1 for h in logs)
    assert all("z_ref" in h and h["z_ref"] == pytest.approx(0.1 * h["kl"]) for h in logs)
    # theory: descent raises desirable rewards above undesirable ones, so the loss falls from its start
    assert logs[-1]["rewards/margins"] > 0
    assert logs[-1]["rewards/chosen"] > logs[-1]["rewards/rejected"]
    assert sum(h["loss"] for h in logs[-3:]) < sum(h["loss"] for h in logs[:3])


def test_weight_column_multiplies_the_loss_and_is_carried_to_it(tmp_path):
    tokenizer = tiny_tokenizer()

    def batch_loss(rows, **kwargs):
        trainer = KTOWeightedTrainer(model=tiny_causal_lm(tokenizer, seed=1), ref_model=tiny_causal_lm(tokenizer, seed=2),
                                     args=KTOWeightedConfig(**trainer_args(tmp_path, per_device_train_batch_size=8),
                                                            weighting="manual", **kwargs),
                                     train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
        batch = next(iter(trainer.get_train_dataloader()))
        with torch.no_grad():
            return trainer.compute_loss(trainer.model, batch).item(), batch

    plain, _ = batch_loss(_unpaired(4, 4))
    doubled, batch = batch_loss(_unpaired(4, 4, weight=lambda i: 2.0), weight_column="strength")
    assert batch[EXAMPLE_WEIGHT_KEY].tolist() == [2.0] * 8
    assert doubled == pytest.approx(2 * plain, rel=1e-6)
    zero_desirable, batch = batch_loss(_unpaired(4, 4, weight=lambda i: float(i >= 4)), weight_column="strength")
    assert 0 < zero_desirable < plain  # desirable rows weigh 0: only the undesirable half of the batch is left


def test_paired_data_is_unpaired_and_balanced(tmp_path):
    tokenizer = tiny_tokenizer()
    trainer = KTOWeightedTrainer(model=tiny_causal_lm(tokenizer), ref_model=tiny_causal_lm(tokenizer, seed=1),
                                 args=KTOWeightedConfig(**trainer_args(tmp_path)), train_dataset=Dataset.from_list(preference_rows(8)),
                                 processing_class=tokenizer)
    assert trainer.class_counts == (8, 8)
    assert (trainer.desirable_weight, trainer.undesirable_weight) == (1.0, 1.0)
    labels = list(trainer.train_dataset["label"])
    assert all(any(labels[k : k + 4]) and not all(labels[k : k + 4]) for k in range(0, 16, 4))
    trainer.train()


def test_manual_weights_that_break_the_rule_warn(tmp_path):
    tokenizer = tiny_tokenizer()
    with pytest.warns(KTOWeightWarning, match=r"outside \[1, 4/3\].*desirable_weight=4"):
        KTOWeightedTrainer(model=tiny_causal_lm(tokenizer), ref_model=tiny_causal_lm(tokenizer),
                           args=KTOWeightedConfig(**trainer_args(tmp_path), weighting="manual"),
                           train_dataset=Dataset.from_list(_unpaired(2, 8)), processing_class=tokenizer)
    with warnings.catch_warnings():
        warnings.simplefilter("error", KTOWeightWarning)
        KTOWeightedTrainer(model=tiny_causal_lm(tokenizer), ref_model=tiny_causal_lm(tokenizer),
                           args=KTOWeightedConfig(**trainer_args(tmp_path), weighting="manual", desirable_weight=4.5),
                           train_dataset=Dataset.from_list(_unpaired(2, 8)), processing_class=tokenizer)


# -- bad input through the CLI, before any model loads ---------------------------------------------------------------
@pytest.fixture
def quiet_datasets():
    import datasets

    datasets.disable_progress_bars()
    yield
    datasets.enable_progress_bars()


def _cli_error(run_cli, tiny_recipe, tmp_path, rows=None, **extra):
    if rows is not None:
        extra["dataset_name"] = write_jsonl(tmp_path / "data.jsonl", rows)
    code, out, err = run_cli("train", "kto-weighted", "--config", tiny_recipe(extra))
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_cli_auto_on_single_class_data(run_cli, no_model_loading, quiet_datasets, tiny_recipe, tmp_path):
    line = _cli_error(run_cli, tiny_recipe, tmp_path, _unpaired(8, 0))
    assert "weighting: auto needs desirable and undesirable rows" in line and "all 8 rows are desirable" in line


def test_cli_non_boolean_labels(run_cli, no_model_loading, quiet_datasets, tiny_recipe, tmp_path):
    rows = [dict(r, label=int(r["label"])) for r in _unpaired(4, 4)]
    code, out, err = run_cli("train", "kto-weighted", "--config",
                             tiny_recipe({"dataset_name": write_jsonl(tmp_path / "data.jsonl", rows)}))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 2, err  # one line per kind of problem, naming the rows
    assert lines[0].startswith("error: ") and "column 'label': expected true/false, got int 1 in rows 0, 1, 2, 3" in lines[0]
    assert lines[1].startswith("error: ") and "got int 0 in rows 4, 5, 6, 7" in lines[1]


@pytest.mark.parametrize("value,kind", [(-1.0, "negative"), ("NaN", "NaN"), ("x", "not a number")])
def test_cli_bad_weights(run_cli, no_model_loading, quiet_datasets, tiny_recipe, tmp_path, value, kind):
    rows = _unpaired(4, 4, weight=lambda i: 1.0)
    rows[5]["strength"] = value
    path = tmp_path / "data.jsonl"
    text = "".join(json.dumps(r) + "\n" for r in rows).replace('"NaN"', "NaN")
    path.write_text(text)
    if value == "x":
        for r in rows:
            r["strength"] = str(r["strength"])
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    line = _cli_error(run_cli, tiny_recipe, tmp_path, None, dataset_name=str(path), weight_column="strength")
    assert "column 'strength' (weight_column)" in line and kind in line
    if value != "x":
        assert "row 5;" in line


def test_cli_missing_weight_column(run_cli, no_model_loading, quiet_datasets, tiny_recipe, tmp_path):
    line = _cli_error(run_cli, tiny_recipe, tmp_path, _unpaired(4, 4), weight_column="strength")
    assert "weight_column 'strength' is not a column" in line


def test_cli_per_device_batch_below_two(run_cli, no_model_loading, quiet_datasets, tiny_recipe, tmp_path):
    line = _cli_error(run_cli, tiny_recipe, tmp_path, _unpaired(4, 4), per_device_train_batch_size=1)
    assert "per_device_train_batch_size` must be >= 2" in line


@pytest.mark.parametrize("ratio", [0.9, 1.5])
def test_cli_target_ratio_out_of_range(run_cli, no_model_loading, quiet_datasets, tiny_recipe, tmp_path, ratio):
    line = _cli_error(run_cli, tiny_recipe, tmp_path, _unpaired(4, 4), target_ratio=ratio)
    assert "target_ratio` must be in [1, 4/3]" in line


def test_cli_neither_format(run_cli, no_model_loading, quiet_datasets, tiny_recipe, tmp_path):
    rows = [{"prompt": "a", "completion": " b"} for _ in range(4)]
    line = _cli_error(run_cli, tiny_recipe, tmp_path, rows)
    assert "missing column 'label'" in line and "(paired" in line


def test_cli_auto_with_hand_set_weights(run_cli, no_model_loading, quiet_datasets, tiny_recipe, tmp_path):
    line = _cli_error(run_cli, tiny_recipe, tmp_path, _unpaired(4, 4), desirable_weight=2.0)
    assert "set weighting: manual" in line


def test_cli_accepts_paired_and_single_class_eval(run_cli, tiny_recipe, tmp_path):
    code, out, err = run_cli("check-data", "kto-weighted", "--config", tiny_recipe())  # the paired fixture file
    assert code == 0, err
    # auto needs both classes in the training split only
    (tmp_path / "d").mkdir()
    write_jsonl(tmp_path / "d" / "train.jsonl", _unpaired(4, 4))
    write_jsonl(tmp_path / "d" / "test.jsonl", _unpaired(4, 0))
    code, out, err = run_cli("check-data", "kto-weighted", "--config",
                             tiny_recipe({"dataset_name": str(tmp_path / "d"), "eval_strategy": "steps"}))
    assert code == 0, err


def test_cli_trains_and_saves_on_unpaired_data(run_cli, quiet_datasets, tiny_recipe, tmp_path):
    data = write_jsonl(tmp_path / "data.jsonl", _unpaired(4, 12))
    code, out, err = run_cli("train", "kto-weighted", "--config",
                             tiny_recipe({"dataset_name": data, "use_peft": True, "lora_r": 4, "lora_alpha": 8,
                                          "lora_target_modules": ["q_proj", "v_proj"]}))
    assert code == 0, err
    assert "weighting auto: λ_D=3, λ_U=1 for 4 desirable and 12 undesirable rows" in out
    assert "4 of 4 per-device batches of 4 hold both classes" in out
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()


# -- real model ----------------------------------------------------------------------------------------------------------
@pytest.mark.real
def test_smollm2_lora_on_imbalanced_imdb_raises_held_out_reward_gap(smollm2_path, tmp_path):
    """SmolLM2-135M-Instruct + LoRA, 1:4 desirable:undesirable IMDB thumbs data, weighting auto (λ_D = 4): the
    held-out gap between the mean implicit reward of desirable and undesirable reviews grows from 0."""
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_plugins.embedded import load_embedded_dataset
    from trl_plugins.evaluation.heldout import completion_logps

    data = load_embedded_dataset("imdb-kto", "ratio=1:4,n_train=320,n_test=48,max_words=24,prompt_words=6")
    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    model = AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.float32)
    beta = 0.1
    args = KTOWeightedConfig(**trainer_args(tmp_path, per_device_train_batch_size=8, max_length=64, beta=beta,
                                     learning_rate=2e-3, max_steps=16, warmup_steps=2, logging_steps=4))
    trainer = KTOWeightedTrainer(model=model, args=args, train_dataset=data["train"], processing_class=tokenizer,
                                 peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                                                        task_type="CAUSAL_LM"))
    assert trainer.class_counts == (64, 256) and trainer.desirable_weight == pytest.approx(4.0)
    test = data["test"]
    labels = torch.tensor(test["label"])

    def reward_gap():
        policy = completion_logps(trainer.model, tokenizer, test["prompt"], test["completion"], 16, average=False)
        with trainer.model.disable_adapter():
            reference = completion_logps(trainer.model, tokenizer, test["prompt"], test["completion"], 16, average=False)
        rewards = beta * (policy - reference)
        gap = rewards[labels].mean() - rewards[~labels].mean()
        diff = rewards[labels][:, None] - rewards[~labels][None, :]
        auc = ((diff > 0).float() + 0.5 * (diff == 0).float()).mean()  # ties count half
        return gap.item(), auc.item()

    gap_before, auc_before = reward_gap()
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    gap_after, auc_after = reward_gap()
    print(f"\nheld-out implicit reward gap (desirable - undesirable): before {gap_before:.4f} (pairwise AUC "
          f"{auc_before:.3f}), after {gap_after:.4f} (AUC {auc_after:.3f}); {args.max_steps} steps in {seconds:.0f} s")
    assert gap_before == pytest.approx(0.0, abs=1e-4)  # the adapter starts at zero: policy = reference
    assert gap_after > gap_before + 0.05
    assert auc_after > 0.5  # measured (2 shared cores): gap 0.000 -> 0.300, AUC 0.576, 16 steps


# -- shipped recipes ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["demo/kto_weighted", "qwen2.5-1.5b-instruct/kto_weighted/config_qlora",
                                  "llama-3.1-8b-instruct/kto_weighted/config_qlora"])
def test_shipped_recipes_parse_strictly(name, monkeypatch):
    import transformers.training_args as training_args

    from trl_plugins.registry import get_registry
    from trl_plugins.run.recipe import StrictParser, resolve_recipe

    monkeypatch.setattr(training_args, "is_torch_bf16_gpu_available", lambda *a, **k: True)  # bf16 recipes, no GPU
    spec = get_registry().trainer("kto-weighted")
    path = resolve_recipe(spec, name)
    (script_args, args, model_args, _), _ = StrictParser(spec.load()[1]).parse([], path)
    assert isinstance(args, KTOWeightedConfig) and args.weighting == "auto" and args.per_device_train_batch_size >= 2
    assert model_args.use_peft
    if "qlora" in name:
        assert model_args.load_in_4bit and model_args.bnb_4bit_quant_type == "nf4"
