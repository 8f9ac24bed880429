"""A compare task file (``TASK.yaml``): what every method shares, read strictly. Schema and rules: docs/compare.md.

    shared:   recipe keys every method gets (model, LoRA, precision, device, seed, lengths, learning rate ...)
    dataset:  name, config, train_split, test_split (the held-out prompts come from test_split)
    metric:   the task metric, a list of reward_funcs entries (``vader_sentiment``, ``exact_match``, a callable ...)
    heldout:  prompts, num_generations, temperature, max_new_tokens, top_p, top_k, batch_size
    monitors: held-out monitors beside the metric (``evaluation/monitors.py``; default kl, loglik, distinct2, length, relevance)
    judge:    the judge_* knobs of a ``judge:MODEL`` metric (template, mode, score_range, max_new_tokens, batch_size,
              load_in_4bit); only with one
    budget:   generated samples per sampling method = training examples seen per other method
    methods:  a method's label -> its own recipe keys (``orpo: {dataset_name: embedded:rt-preference}``); the label is
              the registered trainer's name, or any name with ``trainer: NAME`` — then the entry may train on its own
              ``reward_funcs`` (``raft-judge: {trainer: raft, reward_funcs: [judge:...]}``), the metric still scoring it

Unknown keys, keys the compare sets itself and keys that would make the held-out evaluation differ between methods
are one-line errors naming the file and the key (exit 2). No model, no torch here.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..evaluation.monitors import DEFAULT_MONITORS, MONITORS

TOP_KEYS = ("shared", "dataset", "metric", "heldout", "monitors", "judge", "budget", "methods")
DATASET_KEYS = {"name": "dataset_name", "config": "dataset_config", "train_split": "dataset_train_split",
                "test_split": "dataset_test_split"}
HELDOUT_DEFAULTS = {"prompts": None, "num_generations": 1, "temperature": 0.0, "max_new_tokens": 64, "top_p": 1.0,
                    "top_k": 0, "batch_size": 64}
# set by the compare for every method (the budget, the output folder, resume, the metric, the held-out evaluation)
COMPARE_KEYS = ("output_dir", "overwrite_output_dir", "resume_from_checkpoint", "reward_funcs", "reward_weights",
                "heldout_prompts", "heldout_num_generations", "heldout_temperature", "heldout_reward_funcs",
                "include_num_input_tokens_seen", "dataset_test_split", "max_new_tokens", "top_p", "top_k",
                "generation_batch_size", "max_train_samples", "max_eval_samples", "heldout_monitors", "heldout_seed")
BUDGET_KEYS = {"sampling": "prompts_per_iteration", "training": "max_steps"}  # the budget sets one per method
OWN_REWARD_KEYS = ("reward_funcs", "reward_weights")  # a method entry with `trainer:` may set its training reward
# judge: key -> the recipe key it sets for every method's metric judge (a judge: entry in metric)
JUDGE_KEYS = {"template": "judge_template", "mode": "judge_mode", "score_range": "judge_score_range",
              "max_new_tokens": "judge_max_new_tokens", "batch_size": "judge_batch_size",
              "load_in_4bit": "judge_load_in_4bit"}
SHARED_ONLY = ("seed", "model_name_or_path")  # one base and one seed for all: not per method
DATASET_ONLY = tuple(DATASET_KEYS.values())  # in `dataset:`; a method may override all but the test split


@dataclass
class Task:
    path: Path
    shared: dict
    dataset: dict  # recipe keys: dataset_name, dataset_config, dataset_train_split, dataset_test_split
    metric: list[str]
    heldout: dict
    budget: int
    methods: dict[str, dict] = field(default_factory=dict)
    monitors: list[str] = field(default_factory=lambda: list(DEFAULT_MONITORS))
    trainers: dict[str, str] = field(default_factory=dict)  # a method's label -> its registered trainer (trainer:)
    judge: dict = field(default_factory=dict)  # the metric judge's judge_* recipe keys (the task's judge:)

    @property
    def seed(self) -> int:
        return int(self.shared.get("seed", 42))


def sampling_keys(heldout: dict, metric: list[str], monitors: list[str] | None = None,
                  heldout_seed: int | None = None, judge: dict | None = None) -> dict:
    """The recipe keys the compare sets for every sampling method — the metric as the training reward (with the
    ``judge:`` knobs of a judge metric), how the held-out prompts are sampled (seeded ``heldout_seed``: the task's, the
    same for every method and training seed) and the held-out monitors — and so the settings of every other method's
    held-out evaluation (worker.py)."""
    return {"reward_funcs": metric, **(judge or {}), "heldout_prompts": heldout["prompts"],
            "heldout_num_generations": heldout["num_generations"], "heldout_temperature": heldout["temperature"],
            "max_new_tokens": heldout["max_new_tokens"], "top_p": heldout["top_p"], "top_k": heldout["top_k"],
            "generation_batch_size": heldout["batch_size"],
            **({} if monitors is None else {"heldout_monitors": list(monitors)}),
            **({} if heldout_seed is None else {"heldout_seed": heldout_seed})}


def _judge(value, metric: list[str], shared: dict, where: str) -> dict:
    """The ``judge:`` mapping as judge_* recipe keys; it goes with a ``judge:MODEL`` metric, such a metric needs its
    template, and its knobs are set there only (not under shared:)."""
    raw = _mapping(value, f"{where}: judge")
    for key in raw:
        if key not in JUDGE_KEYS:
            raise _unknown(f"{where}: judge", key, JUDGE_KEYS)
    for key in shared:
        _owned_key(key, f"{where}: shared", method=False, judge=raw)
    judged = [m for m in metric if m.startswith("judge:")]
    if raw and not judged:
        raise ConfigError(f"{where}: judge: sets the knobs of a judge:MODEL metric, and metric has none")
    if judged and not raw.get("template"):
        raise ConfigError(f"{where}: metric {judged[0]!r} needs judge.template (a shipped template or a .txt file)")
    if any(m == "judge:policy" for m in judged):
        raise ConfigError(f"{where}: metric 'judge:policy' would judge each method by its own trained model: name a "
                          "model, the same for every method")
    return {JUDGE_KEYS[k]: v for k, v in raw.items()}


def _unknown(where: str, key, known) -> ConfigError:
    close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.75)
    hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(known)})"
    return ConfigError(f"{where}: unknown key {key!r}{hint}")


def _mapping(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping of key: value, got {type(value).__name__}")
    return value


def _positive_int(value, where: str, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
        raise ConfigError(f"{where} must be an integer >= {0 if allow_zero else 1}, got {value!r}")
    return value


def _owned_key(key: str, where: str, method: bool, own_reward: bool = False, judge: dict | None = None) -> None:
    if key in OWN_REWARD_KEYS and own_reward:
        return
    if judge and key in JUDGE_KEYS.values():
        raise ConfigError(f"{where}: {key!r} is set by judge: (the metric's judge), the same for every method")
    if key in OWN_REWARD_KEYS and method:
        raise ConfigError(f"{where}: {key!r} is set by metric:, the same for every method (to train a method on a "
                          "reward of its own, give the entry a name of its own and trainer: NAME)")
    if key in COMPARE_KEYS:
        home = {"reward_funcs": "metric:", "reward_weights": "metric:", "dataset_test_split": "dataset.test_split",
                "max_new_tokens": "heldout.max_new_tokens", "top_p": "heldout.top_p", "top_k": "heldout.top_k",
                "generation_batch_size": "heldout.batch_size"}.get(key, "the compare (budget, output_dir, resume)")
        raise ConfigError(f"{where}: {key!r} is set by {home}, the same for every method")
    if not method and key in BUDGET_KEYS.values():
        raise ConfigError(f"{where}: {key!r} is set by the budget (a sampling method's max_steps per phase can be set "
                          "under its methods: entry)")
    if method and key in SHARED_ONLY:
        raise ConfigError(f"{where}: {key!r} must be the same for every method: set it under shared:")
    if not method and key in DATASET_ONLY:
        raise ConfigError(f"{where}: {key!r} belongs under dataset: (name, config, train_split, test_split)")


def _monitors(value, where: str) -> list[str]:
    """The ``monitors:`` list: names of ``evaluation/monitors.py`` (``[]``: none), each once."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
        raise ConfigError(f"{where} must be a list of monitor names ({', '.join(MONITORS)}), got {value!r}")
    for name in value:
        if name not in MONITORS:
            close = difflib.get_close_matches(name, list(MONITORS), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(MONITORS)})"
            raise ConfigError(f"{where}: unknown monitor {name!r}{hint}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where}: names a monitor twice: {value}")
    return list(value)


def parse_task(data: dict, path: Path, budget: int | None = None) -> Task:
    """A :class:`Task` from the YAML mapping ``data`` of ``path``; ``budget`` (``--budget``) wins over the file's."""
    where = str(path)
    for key in data:
        if key not in TOP_KEYS:
            raise _unknown(where, key, TOP_KEYS)
    shared = _mapping(data.get("shared"), f"{where}: shared")
    for key in shared:
        _owned_key(key, f"{where}: shared", method=False)
    if not shared.get("model_name_or_path"):
        raise ConfigError(f"{where}: shared.model_name_or_path is required (the base every method starts from)")
    raw = _mapping(data.get("dataset"), f"{where}: dataset")
    for key in raw:
        if key not in DATASET_KEYS:
            raise _unknown(f"{where}: dataset", key, DATASET_KEYS)
    if not raw.get("name"):
        raise ConfigError(f"{where}: dataset.name is required (the task's prompts)")
    dataset = {"dataset_train_split": "train", "dataset_test_split": "test"}
    dataset.update({DATASET_KEYS[k]: v for k, v in raw.items() if v is not None})
    metric = data.get("metric")
    if isinstance(metric, str):
        metric = [metric]
    if not metric or not isinstance(metric, list) or not all(isinstance(m, str) and m for m in metric):
        raise ConfigError(f"{where}: metric must be a reward_funcs entry or a list of them (e.g. [exact_match])")
    heldout_raw = _mapping(data.get("heldout"), f"{where}: heldout")
    for key in heldout_raw:
        if key not in HELDOUT_DEFAULTS:
            raise _unknown(f"{where}: heldout", key, HELDOUT_DEFAULTS)
    heldout = {**HELDOUT_DEFAULTS, **heldout_raw}
    judge = _judge(data.get("judge"), metric, shared, where)
    heldout["prompts"] = _positive_int(heldout["prompts"], f"{where}: heldout.prompts")
    for key in ("num_generations", "max_new_tokens", "batch_size"):
        _positive_int(heldout[key], f"{where}: heldout.{key}")
    _positive_int(heldout["top_k"], f"{where}: heldout.top_k", allow_zero=True)
    for key in ("temperature", "top_p"):
        if isinstance(heldout[key], bool) or not isinstance(heldout[key], (int, float)):
            raise ConfigError(f"{where}: heldout.{key} must be a number, got {heldout[key]!r}")
    monitors = _monitors(data.get("monitors", list(DEFAULT_MONITORS)), f"{where}: monitors")
    value = budget if budget is not None else data.get("budget")
    if value is None:
        raise ConfigError(f"{where}: set budget: N (generated samples per sampling method = training examples seen "
                          "per other method), or pass --budget N")
    value = _positive_int(value, "--budget" if budget is not None else f"{where}: budget")
    methods = _mapping(data.get("methods"), f"{where}: methods")
    cleaned, trainers = {}, {}
    for name, overrides in methods.items():
        overrides = dict(_mapping(overrides, f"{where}: methods.{name}"))
        trainer = overrides.pop("trainer", None)
        if trainer is not None:
            if not isinstance(trainer, str) or not trainer:
                raise ConfigError(f"{where}: methods.{name}.trainer must name a registered trainer, got {trainer!r}")
            trainers[str(name)] = trainer
        for key in overrides:
            _owned_key(key, f"{where}: methods.{name}", method=True, own_reward=trainer is not None, judge=judge)
        if "reward_weights" in overrides and "reward_funcs" not in overrides:
            raise ConfigError(f"{where}: methods.{name}: reward_weights without reward_funcs of its own")
        cleaned[str(name)] = overrides
    return Task(path=path, shared=dict(shared), dataset=dataset, metric=list(metric), heldout=heldout, budget=value,
                methods=cleaned, monitors=monitors, trainers=trainers, judge=judge)


def load_task(value: str, budget: int | None = None) -> Task:
    """A task file path, or the name of a shipped one (``compare/arithmetic``: recipes/compare/arithmetic.yaml)."""
    from ..run.recipe import load_yaml

    path = Path(value).expanduser()
    if not path.is_file():
        from ..imports import resource_dir

        root = resource_dir("trl_plugins:recipes")
        name = value.removesuffix(".yaml").removeprefix("compare/")
        shipped = root / "compare" / f"{name}.yaml" if root else None
        if shipped is None or not shipped.is_file():
            known = ", ".join(sorted(f"compare/{p.stem}" for p in (root / "compare").glob("*.yaml"))) if root else ""
            raise ConfigError(f"task file {value!r} not found (shipped: {known or 'none'})")
        path = shipped
    return parse_task(load_yaml(path), path, budget)
