"""kto-weighted keeps what its parent KTOTrainer accepts: a streamed training set with the default ``weighting: auto``
(λ_D = λ_U = 1, said in one line), TRL's own precompute-on-a-stream error, and a training set left with one class
after TRL drops the rows whose prompt fills ``max_length``. Docs: docs/methods/kto_weighted.md ("Streaming")."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset, IterableDataset

from trl_plugins.trainers.kto_weighted import KTOWeightedConfig, KTOWeightedTrainer

from helpers import trainer_args
from tiny import tiny_causal_lm, tiny_tokenizer

LONG_PROMPT = " ".join(["the movie was"] * 30) + " ?"  # 91 tokens: fills max_length=64 on its own


def _rows(n_desirable: int, n_undesirable: int, long_undesirable: bool = False) -> list[dict]:
    good = ["a great movie", "a wonderful film", "the best story", "brilliant acting"]
    bad = ["a boring movie", "an awful film", "the worst plot", "terrible acting"]
    rows = [{"prompt": "write a review .", "completion": " " + good[i % 4], "label": True} for i in range(n_desirable)]
    prompt = LONG_PROMPT if long_undesirable else "how was the film ?"
    rows += [{"prompt": prompt, "completion": " " + bad[i % 4], "label": False} for i in range(n_undesirable)]
    return rows


def _stream(rows):
    return IterableDataset.from_generator(lambda: iter(rows))


def _trainer(tmp_path, data, trainer_class=KTOWeightedTrainer, config_class=KTOWeightedConfig, **extra):
    tokenizer = tiny_tokenizer()
    args = config_class(**trainer_args(tmp_path, **{"max_steps": 4, **extra}))
    return trainer_class(model=tiny_causal_lm(tokenizer, seed=0), ref_model=tiny_causal_lm(tokenizer, seed=0),
                         args=args, train_dataset=data, processing_class=tokenizer)


def _trains(trainer) -> list[dict]:
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert any(not torch.equal(before[n], p.detach()) for n, p in trainer.model.named_parameters())
    return [h for h in trainer.state.log_history if "loss" in h]


def test_streamed_training_set_with_default_auto_weighting_trains_with_unit_weights(tmp_path, capsys):
    trainer = _trainer(tmp_path, _stream(_rows(4, 12)))
    assert trainer.args.weighting == "auto"
    assert (trainer.desirable_weight, trainer.undesirable_weight) == (1.0, 1.0)
    out = capsys.readouterr().out
    assert out.count("the training set is streamed") == 1
    logs = _trains(trainer)
    assert all(h["weights/desirable"] == 1.0 and h["weights/undesirable"] == 1.0 for h in logs)


def test_streamed_training_set_with_precompute_raises_trls_own_error(tmp_path):
    from trl import KTOConfig, KTOTrainer

    messages = []
    for trainer_class, config_class in ((KTOTrainer, KTOConfig), (KTOWeightedTrainer, KTOWeightedConfig)):
        with pytest.raises(ValueError) as error:
            _trainer(tmp_path, _stream(_rows(4, 4)), trainer_class, config_class, precompute_ref_log_probs=True)
        messages.append(str(error.value))
    assert "not supported with IterableDataset" in messages[0]
    assert messages[1] == messages[0]


@pytest.mark.parametrize("weighting", ["auto", "manual"])
def test_one_class_left_after_trl_drops_fully_truncated_rows_trains_like_the_parent(tmp_path, capsys, weighting):
    from trl import KTOConfig, KTOTrainer

    data = Dataset.from_list(_rows(8, 8, long_undesirable=True))
    parent = _trainer(tmp_path / "parent", data, KTOTrainer, KTOConfig)
    assert set(parent.train_dataset["label"]) == {True}  # TRL dropped every undesirable row
    _trains(parent)
    ours = _trainer(tmp_path / "ours", data, weighting=weighting)
    assert ours.class_counts == (8, 0)
    assert (ours.desirable_weight, ours.undesirable_weight) == (1.0, 1.0)
    assert "only desirable rows are left" in capsys.readouterr().out
    logs = _trains(ours)
    assert all(h["count/undesirable"] == 0 for h in logs)
