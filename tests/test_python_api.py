"""From Python: ``trl_plugins.resolve_model_path`` turns an ``embedded:`` name into the local checkpoint folder that
a trainer's ``model=`` and ``from_pretrained`` take, and README's Python example runs as written.

    python -m pytest tests/test_python_api.py -q            (the README example: -m real)
"""

from __future__ import annotations

import re

import pytest

import trl_plugins
from trl_plugins.errors import ModelSourceError

from helpers import REPO


def test_resolve_model_path_gives_a_folder_from_pretrained_takes():
    from transformers import AutoConfig, AutoTokenizer

    path = trl_plugins.resolve_model_path("embedded:smollm2-135m-instruct")
    assert AutoConfig.from_pretrained(path).model_type == "llama"
    assert AutoTokenizer.from_pretrained(path).eos_token
    assert trl_plugins.resolve_model_path("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    with pytest.raises(ModelSourceError, match="unknown embedded model 'smollm3'"):
        trl_plugins.resolve_model_path("embedded:smollm3")


def _readme_python() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    assert len(blocks) == 1, "README has one Python example"
    return blocks[0]


def test_the_readme_example_uses_only_what_exists():
    """Without training: every name it calls resolves (the real run is the next test)."""
    code = _readme_python()
    assert "resolve_model_path(\"embedded:" in code and "trainer.train()" in code
    compile(code, "README.md", "exec")


@pytest.mark.real
def test_the_readme_python_example_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_readme_python(), "README.md", "exec"), namespace)  # noqa: S102 - the documented example itself
    trainer = namespace["trainer"]
    assert trainer.state.global_step == 2
    assert trainer.state.log_history[-1]["train_loss"] > 0  # ORPO's NLL + odds-ratio terms: positive
