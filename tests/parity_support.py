"""Shared pieces of the parity suite (tests/test_parity_*.py): TRL's trainer tests, run on the TRL parent and on our
subclass, offline, on the tiny random Llama of tests/tiny.py and small hand-made datasets with the columns of TRL's
"zen" test datasets. Table of the cases: docs/parity.md (regenerate: python tests/parity_table.py).

A case passes on a side when training moves every trainable parameter (and logs a train loss) or when evaluating
returns an eval loss, as in TRL's tests; a case listed in REFUSED must be refused by our subclass in one line that
names the option, before any model loads (the config or the method's data check), and the parent must pass it.
"""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from helpers import PROMPTS, TOOLS_TEMPLATE, trainable

pytestmark = pytest.mark.parity

GOOD = ["a great movie .", "a wonderful film .", "the best story .", "brilliant acting , very fun ."]
BAD = ["a boring movie .", "an awful film .", "the worst plot .", "terrible acting , very dull ."]
# The tools block and a system line from chat_template_kwargs (`mood`), rendered before the messages as Qwen does
TOOLS = json.dumps([{"type": "function", "function": {"name": "answer", "description": "answer the question",
                                                      "parameters": {"type": "object", "properties": {}}}}])
CPU = {"bf16": False, "use_cpu": True, "report_to": "none", "save_strategy": "no", "disable_tqdm": True,
       "logging_steps": 1, "seed": 0}


def _user(text):
    return [{"role": "user", "content": text}]


def _assistant(text):
    return [{"role": "assistant", "content": text}]


def rows(kind: str, n: int = 8) -> list[dict]:
    """``n`` rows of one of TRL's zen dataset configurations (same columns), over the tiny vocabulary."""
    out = []
    for i in range(n):
        prompt, good, bad = PROMPTS[i % len(PROMPTS)], GOOD[i % len(GOOD)], BAD[(i + 1) % len(BAD)]
        row = {
            "standard_preference": lambda: {"prompt": prompt, "chosen": " " + good, "rejected": " " + bad},
            "conversational_preference": lambda: {"prompt": _user(prompt), "chosen": _assistant(good),
                                                  "rejected": _assistant(bad)},
            "standard_implicit_prompt_preference": lambda: {"chosen": f"{prompt} {good}",
                                                            "rejected": f"{prompt} {bad}"},
            "conversational_implicit_prompt_preference": lambda: {"chosen": _user(prompt) + _assistant(good),
                                                                  "rejected": _user(prompt) + _assistant(bad)},
            "standard_unpaired_preference": lambda: {"prompt": prompt, "completion": " " + (good if i % 2 else bad),
                                                     "label": bool(i % 2)},
            "conversational_unpaired_preference": lambda: {"prompt": _user(prompt),
                                                           "completion": _assistant(good if i % 2 else bad),
                                                           "label": bool(i % 2)},
            "standard_language_modeling": lambda: {"text": f"{prompt} {good}"},
            "conversational_language_modeling": lambda: {"messages": _user(prompt) + _assistant(good)},
            "standard_prompt_completion": lambda: {"prompt": prompt, "completion": " " + good},
            "conversational_prompt_completion": lambda: {"prompt": _user(prompt), "completion": _assistant(good)},
            "standard_prompt_only": lambda: {"prompt": prompt},
            "conversational_prompt_only": lambda: {"prompt": _user(prompt)},
        }[kind]()
        out.append(row)
    return out


def dataset(kind: str, n: int = 8, variant: str = "dataset", **columns):
    """A datasets object of ``rows(kind)`` (extra ``columns``: name -> per-row function of i) as ``variant``:
    dataset, iterable_dataset, dataset_dict, iterable_dataset_dict, dict_of_dataset, dict_of_iterable_dataset."""
    from datasets import Dataset, DatasetDict, IterableDatasetDict

    data = rows(kind, n)
    for name, value in columns.items():
        for i, row in enumerate(data):
            row[name] = value(i)
    base = Dataset.from_list(data)
    streaming = "iterable" in variant
    one = base.to_iterable_dataset() if streaming else base
    if variant in ("dataset", "iterable_dataset"):
        return one
    if variant in ("dataset_dict", "iterable_dataset_dict"):
        return (IterableDatasetDict if streaming else DatasetDict)({"data1": one, "data2": one})
    return {"data1": one, "data2": one}


def lora(task_type: str = "CAUSAL_LM"):
    """A small LoRA adapter on the attention projections (B starts at zero: A moves from the second step on)."""
    from peft import LoraConfig

    return LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type=task_type)


def with_tools_template(tokenizer):
    tokenizer.chat_template = TOOLS_TEMPLATE
    return tokenizer


def assert_trains(trainer, unused: str | None = None) -> None:
    """TRL's check: a train loss is logged and every trainable parameter moved (but those matching ``unused``, the
    modules the forward does not reach, as TRL's VLM tests skip the vision tower's unused layers)."""
    import re

    before = trainable(trainer.model)
    assert before, "nothing to train"
    out = trainer.train()
    assert out.global_step > 0 and math.isfinite(out.training_loss)  # optimizer steps, and their loss
    assert any(log.get("train_loss") is not None for log in trainer.state.log_history)  # logged as TRL logs it
    after = trainable(trainer.model)
    unchanged = [n for n in before if torch.equal(before[n], after[n]) and not (unused and re.search(unused, n))]
    assert not unchanged, f"{len(unchanged)} of {len(before)} parameters did not change, e.g. {unchanged[0]}"


def assert_evaluates(metrics: dict, variant: str = "dataset") -> None:
    """An eval loss per evaluated set: ``eval_loss``, or ``eval_data1_loss`` and ``eval_data2_loss`` for a dict."""
    prefixes = ("eval",) if variant in ("dataset", "iterable_dataset") else ("eval_data1", "eval_data2")
    for prefix in prefixes:
        assert f"{prefix}_loss" in metrics, sorted(metrics)


def assert_refused(build_config, option: str) -> None:
    """Our config (or check) refuses the combination in one line naming ``option``; recorded for the table
    (``PARITY_REFUSED``: a file that parity_table.py reads)."""
    with pytest.raises(ValueError) as error:
        build_config()
    message = str(error.value)
    assert option in message and "\n" not in message, message
    if os.environ.get("PARITY_REFUSED"):
        with open(os.environ["PARITY_REFUSED"], "a") as f:
            f.write(json.dumps({"test": os.environ["PYTEST_CURRENT_TEST"].rsplit(" ", 1)[0], "message": message})
                    + "\n")
