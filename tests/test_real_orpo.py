"""ORPO on the real SmolLM2-135M-Instruct (CPU, LoRA): held-out preference accuracy and margin must rise.

Uses the shipped demo recipe with fewer steps; about 3 minutes on 2 cores. Marked ``real``."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.real


def test_orpo_learns_to_prefer_positive_reviews(smollm2_path, tmp_path):
    from trl_plugins.evaluation.heldout import preference_accuracy
    from trl_plugins.registry import get_registry
    from trl_plugins.run import flow

    spec = get_registry().trainer("orpo")
    run = flow.prepare_run(spec, ["--config", "demo/orpo", "--output_dir", str(tmp_path / "out"),
                                    "--max_steps", "40", "--logging_steps", "5", "--disable_tqdm", "true"])
    test = run.datasets["test"].select(range(120))
    tokenizer = run.load_processing_class()
    before = preference_accuracy(run.load_model(), tokenizer, test, batch_size=24, max_length=128)
    trainer = flow.train(run)
    after = preference_accuracy(trainer.model, tokenizer, test, batch_size=24, max_length=128)
    print(f"held-out accuracy {before['accuracy']:.3f} -> {after['accuracy']:.3f}, "
          f"margin {before['margin']:.3f} -> {after['margin']:.3f} nats/token")
    assert after["margin"] > before["margin"] + 0.03
    assert after["accuracy"] > before["accuracy"]
