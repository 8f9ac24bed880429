"""Reward sources for the sampling trainers, combined with weights.

A recipe lists them in ``reward_funcs`` (as TRL's GRPO does); each entry is one of

- the name of a registered reward function (``register_reward_functions`` hook), e.g. ``vader_sentiment``,
  ``exact_match``; ``trl-plugins list --rewards`` shows them;
- ``package.module:function``, any callable with TRL's signature
  ``f(prompts, completions, **columns) -> list[float | None]`` (so ``trl.rewards`` functions work);
- a local directory (or hub id) of an ``AutoModelForSequenceClassification`` reward model, e.g. a ``margin-rm``
  output; it is scored in batches on the policy's device and its first logit is the reward;
- ``loglik:MODEL``: a reference causal LM's mean log-likelihood per token of the completion (a fluency monitor for
  ``heldout_reward_funcs``; ``loglik_reward.py``);
- ``judge:MODEL``: a causal LM asked about each sample through ``judge_template`` — P(Yes) / (P(Yes) + P(No)) of its
  answer (``judge_mode: yes_probability``) or the score it writes (``score``). MODEL is a local path, a hub id,
  ``embedded:NAME`` or ``policy`` (the policy judges its own samples); the policy's own base model is the LoRA
  policy with its adapter off (``judge.py``, ``judge_prompts.py``, docs/methods/judges.md).

``reward_weights`` (default all 1) weight them; the total is the weighted sum. A ``None`` from any source drops
the sample (it is counted in the iteration summary). :func:`resolve` checks every entry without loading a model
or torch, so a bad entry stops the run before the policy loads.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..imports import import_string, is_import_string

LOGLIK = "loglik:"
JUDGE = "judge:"
_HUB_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class RewardEntry:
    """One ``reward_funcs`` entry, resolved: what to load and how to weight it."""

    kind: str  # "function" (registered or module:function), "model" (reward model), "loglik" (reference LM), "judge"
    target: str  # import string, or model path / hub id ("policy" for judge:policy)
    name: str  # short name used in files and logs
    weight: float = 1.0
    reads_columns: tuple[str, ...] = ()  # dataset columns a registered function or a judge's template reads
    judge: object = None  # a judge's JudgeSpec (judge_prompts.py): template, mode, ...


def _check_reward_model(path: Path, entry: str, key: str) -> None:
    config = path / "config.json"
    if not config.is_file():
        raise ConfigError(f"{key}: {entry!r} is a directory without config.json, not a reward model")
    try:
        architectures = json.loads(config.read_text()).get("architectures") or []
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{key}: cannot read {config}: {exc}") from exc
    if not any(str(a).endswith("ForSequenceClassification") for a in architectures):
        raise ConfigError(
            f"{key}: {entry!r} is not a sequence-classification reward model "
            f"(architectures: {', '.join(architectures) or 'none'}); use a margin-rm / RewardTrainer output"
        )


_TRAIN_HINT = "; train one first, e.g. trl-plugins train margin-rm --config demo/margin_rm"


def _check_hub_reward_model(entry: str, key: str) -> None:
    """``owner/name``: a local path whose first folder exists here but the rest does not is a missing path, not a hub
    id; offline (``HF_HUB_OFFLINE=1``) the model must be in the Hugging Face cache, and its cached config.json is
    checked like a local one. Online, the hub model is checked when it loads."""
    first, rest = entry.split("/", 1)
    if Path(first).is_dir():
        raise ConfigError(f"{key}: reward model path {entry!r} does not exist ({first}/ has no {rest!r}){_TRAIN_HINT}")
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in ("1", "true", "yes", "on"):
        return
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(entry, "config.json")
    if not isinstance(cached, str):
        raise ConfigError(f"{key}: {entry!r} is not a local folder and not in the Hugging Face cache "
                          "(HF_HUB_OFFLINE=1): give the path of a trained reward model")
    _check_reward_model(Path(cached).parent, entry, key)


def names_a_model(entry: str) -> bool:
    """Whether a ``reward_funcs`` entry names a reward model (a folder path or a hub id) rather than a function, by
    its form alone: nothing is imported or looked up (``trl-plugins plan`` counts reward models this way)."""
    if Path(os.path.expanduser(entry)).is_dir() or entry.startswith((".", "/", "~")):
        return True
    return not is_import_string(entry) and bool(_HUB_RE.match(entry))


def resolve(entries: list[str] | None, weights: list[float] | None = None,
            key: str = "reward_funcs", options=None, required: bool = True) -> list[RewardEntry]:
    """Check and resolve ``reward_funcs`` entries (imports callables, reads config.json and judge templates; loads no
    model); ``key`` is the config field named in error messages, ``options`` anything with the ``judge_*`` knobs
    (the trainer's config); ``required=False`` accepts an empty list (a pair rule that reads no reward). Runs once per
    run, in the sampling method's ``check_run`` (before any model loads); the trainer receives the result."""
    from ..registry import get_registry

    entries = list(entries or [])
    if not entries and required:
        raise ConfigError(f"{key}: give at least one reward (a registered name, module:function or a model path)")
    if weights is not None and len(weights) != len(entries):
        raise ConfigError(f"reward_weights has {len(weights)} values but {key} has {len(entries)} entries")
    specs = []
    for index, entry in enumerate(entries):
        weight = float(weights[index]) if weights is not None else 1.0
        path = Path(os.path.expanduser(entry))
        if entry.startswith(LOGLIK):
            specs.append(RewardEntry("loglik", _check_causal_lm(entry.removeprefix(LOGLIK), entry, key), "loglik",
                                     weight))
        elif entry.startswith(JUDGE):
            specs.append(_resolve_judge(entry, weight, key, options))
        elif path.is_dir():
            _check_reward_model(path, entry, key)
            specs.append(RewardEntry("model", str(path), path.name or entry, weight))
        elif is_import_string(entry):
            try:
                function = import_string(entry, f"{key} entry {entry!r}")
            except Exception as exc:  # noqa: BLE001 - PluginError already one line
                raise ConfigError(str(exc).splitlines()[0]) from exc
            if not callable(function):
                raise ConfigError(f"{key}: {entry!r} is not callable")
            specs.append(RewardEntry("function", entry, entry.rsplit(":", 1)[1], weight))
        elif entry.startswith((".", "/", "~")):
            raise ConfigError(f"{key}: reward model path {entry!r} does not exist{_TRAIN_HINT}")
        elif _HUB_RE.match(entry):  # a hub reward model id
            _check_hub_reward_model(entry, key)
            specs.append(RewardEntry("model", entry, entry.rsplit("/", 1)[1], weight))
        else:
            try:
                spec = get_registry().reward_function(entry)
            except Exception as exc:  # noqa: BLE001 - UsageError with a suggestion
                raise ConfigError(f"{key}: {exc}") from exc
            specs.append(RewardEntry("function", spec.function, spec.name, weight, spec.reads_columns))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"{key}: the same reward is listed twice ({', '.join(names)})")
    return specs


class FunctionReward:
    def __init__(self, entry: RewardEntry):
        self.entry = entry
        self.function = import_string(entry.target, f"reward {entry.name!r}")

    def __call__(self, prompts, completions, columns: dict[str, list]) -> list[float | None]:
        values = self.function(prompts=prompts, completions=completions, **columns)
        values = list(values)
        if len(values) != len(completions):
            raise RuntimeError(f"reward {self.entry.name!r} returned {len(values)} values for {len(completions)} completions")
        return [None if v is None else float(v) for v in values]


class ModelReward:
    """A sequence-classification reward model, loaded on first use and scored in batches."""

    def __init__(self, entry: RewardEntry, device=None, batch_size: int = 16, max_length: int = 2048):
        self.entry, self.device, self.batch_size, self.max_length = entry, device, batch_size, max_length
        self.model = self.tokenizer = None

    def _load(self):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        device = torch.device(self.device or "cpu")
        dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
        self.tokenizer = AutoTokenizer.from_pretrained(self.entry.target)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model = AutoModelForSequenceClassification.from_pretrained(self.entry.target, dtype=dtype)
        if model.config.pad_token_id is None:
            model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model = model.to(device).eval()

    def __call__(self, prompts, completions, columns) -> list[float | None]:
        import torch

        if self.model is None:
            self._load()
        ids = [reward_model_input_ids(self.tokenizer, p, c)[-self.max_length :] for p, c in zip(prompts, completions)]
        pad = self.tokenizer.pad_token_id
        scores: list[float | None] = []
        with torch.no_grad():
            for i in range(0, len(ids), self.batch_size):
                batch = ids[i : i + self.batch_size]
                width = max(len(row) for row in batch)
                input_ids = torch.tensor([row + [pad] * (width - len(row)) for row in batch])
                attention = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in batch])
                logits = self.model(input_ids=input_ids.to(self.model.device),
                                    attention_mask=attention.to(self.model.device)).logits
                scores += [float(x) for x in logits[:, 0].float().cpu()]
        return scores


def reward_model_input_ids(tokenizer, prompt, completion) -> list[int]:
    """The token ids of ``prompt + completion`` exactly as TRL's ``RewardTrainer`` tokenizes a training pair, so the
    reward is read where it was trained: conversational rows through the chat template; standard rows as text with
    the EOS token appended (unless already there) and the tokenizer's own special tokens (e.g. a BOS).
    Over-long inputs keep their end (where the reward is read)."""
    from ..formats import is_conversational

    if is_conversational(prompt):
        out = tokenizer.apply_chat_template(list(prompt) + list(completion), tokenize=True, return_dict=True)
        return list(out["input_ids"])
    text = prompt + completion
    eos = tokenizer.eos_token
    if eos and not text.endswith(eos):
        text += eos
    return list(tokenizer(text=text)["input_ids"])


def build(entries: list[RewardEntry], device=None, batch_size: int = 16, policy=None,
          judge_models: dict | None = None) -> list:
    """The reward sources of resolved entries (models load on first use). ``policy``: the training policy as a
    :class:`~trl_plugins.sampling.judge.PolicyHandle`, for judges that are the policy or its base model;
    ``judge_models``: ``(model, load_in_4bit) -> JudgeModel`` shared by every judge of a run (one copy per model,
    however many entries name it), filled here."""
    from .loglik_reward import LoglikReward

    kinds = {"model": ModelReward, "loglik": LoglikReward}
    judge_models = {} if judge_models is None else judge_models
    sources = []
    for e in entries:
        if e.kind == "judge":
            from .judge import JudgeModel, JudgeReward

            key = (e.judge.model, e.judge.load_in_4bit)
            if key not in judge_models:
                judge_models[key] = JudgeModel(e.judge.model, device, policy, e.judge.load_in_4bit)
            sources.append(JudgeReward(e, device, batch_size, policy=policy, model=judge_models[key]))
        else:
            sources.append(kinds[e.kind](e, device, batch_size) if e.kind in kinds else FunctionReward(e))
    return sources


def _resolve_judge(entry: str, weight: float, key: str, options) -> RewardEntry:
    """``judge:MODEL``: the model checked like ``loglik:``'s (or ``policy``), the template and mode by
    :func:`~trl_plugins.sampling.judge_prompts.judge_spec`; the template's columns are checked against the data by
    the method's ``check_run``."""
    from .judge_prompts import judge_spec

    model = _check_judge_model(entry.removeprefix(JUDGE), entry, key)
    spec = judge_spec(model, options, key)
    name = "judge_policy" if model == "policy" else f"judge_{Path(model.removeprefix('embedded:')).name or model}"
    return RewardEntry("judge", model, name, weight, spec.columns, judge=spec)


def pairwise_judge(options, rewards: list[RewardEntry], key: str = "judge_pairwise_model"):
    """``pair_rule: judge_pairwise``'s judge, checked before any model loads: a
    :class:`~trl_plugins.sampling.judge_prompts.JudgeSpec` (mode ``pairwise``) of ``judge_pairwise_model`` (default:
    the model of the first ``judge:`` entry in ``rewards``) and ``judge_pairwise_template`` (a template with
    ``{completion_a}`` and ``{completion_b}``), with the run's ``judge_batch_size`` and ``judge_load_in_4bit``."""
    from .judge_prompts import JudgeSpec, check_template, load_template

    model = getattr(options, "judge_pairwise_model", None)
    if model:
        model = _check_judge_model(model, model, key)
    else:
        model = next((r.judge.model for r in rewards if r.kind == "judge"), None)
        if model is None:
            raise ConfigError(f"{key}: pair_rule judge_pairwise needs a judge: set judge_pairwise_model (a model path, "
                              "hub id, embedded:NAME or policy) or list a judge:MODEL in reward_funcs")
    name, text = load_template(getattr(options, "judge_pairwise_template", None), "judge_pairwise_template")
    columns = check_template(name, text, pairwise=True, key="judge_pairwise_template")
    return JudgeSpec(model=model, template_name=name, template=text, columns=columns, mode="pairwise",
                     batch_size=int(getattr(options, "judge_batch_size", 8) or 8),
                     load_in_4bit=bool(getattr(options, "judge_load_in_4bit", False)))


def _check_judge_model(model: str, entry: str, key: str) -> str:
    """A judge's model: ``policy``, or a causal LM checked like ``loglik:``'s (not a sequence classifier)."""
    if model != "policy":
        model = _check_causal_lm(model, entry, key, example="judge:embedded:smollm2-135m-instruct or judge:policy")
        config = Path(os.path.expanduser(model)) / "config.json"
        if config.is_file():
            try:
                architectures = json.loads(config.read_text()).get("architectures") or []
            except (OSError, ValueError) as exc:
                raise ConfigError(f"{key}: cannot read {config}: {exc}") from exc
            if any(str(a).endswith("ForSequenceClassification") for a in architectures):
                raise ConfigError(f"{key}: {entry!r} is a sequence-classification reward model, not a causal LM to "
                                  f"ask: list it without judge: ({model!r})")
    return model


def _check_causal_lm(model: str, entry: str, key: str, example: str = "loglik:embedded:smollm2-135m-instruct"
                        ) -> str:
    """``loglik:MODEL``'s (or ``judge:MODEL``'s) model: an embedded one (its package installed), a local checkpoint
    or a hub id."""
    from ..errors import ModelSourceError
    from ..models.loading import check_model_source

    if not model:
        raise ConfigError(f"{key}: {entry!r} names no model (e.g. {example})")
    if not model.startswith("embedded:") and not Path(os.path.expanduser(model)).is_dir() and not _HUB_RE.match(model):
        raise ConfigError(f"{key}: {entry!r}: {model!r} is no local checkpoint, hub id or embedded model")
    try:
        check_model_source(model)
    except ModelSourceError as exc:
        raise ConfigError(f"{key}: {entry!r}: {exc}") from exc
    return model


def score(sources, prompts, completions, rows: list[dict], progress: bool = False, chunk: int = 256):
    """Score every sample with every source: ``(totals, components)``; ``totals[i]`` is None if any source is."""
    from tqdm.auto import tqdm

    columns = sorted({key for row in rows for key in row})
    components: dict[str, list[float | None]] = {s.entry.name: [] for s in sources}
    bar = tqdm(total=len(completions) * len(sources), desc="scoring", unit="sample", disable=not progress, leave=True)
    for start in range(0, len(completions), chunk):
        stop = start + chunk
        batch_columns = {c: [row.get(c) for row in rows[start:stop]] for c in columns}
        for source in sources:
            components[source.entry.name] += source(prompts[start:stop], completions[start:stop], batch_columns)
            bar.update(len(completions[start:stop]))
    bar.close()
    totals: list[float | None] = []
    for i in range(len(completions)):
        values = [(components[s.entry.name][i], s.entry.weight) for s in sources]
        totals.append(None if any(v is None for v, _ in values) else sum(v * w for v, w in values))
    return totals, components
