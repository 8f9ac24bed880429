"""Recipes: a strict ``TrlParser`` over (run arguments, the method's config, ``ModelConfig``, dataset mixture), the
shipped recipes of a trainer, and the output-directory rule.

Precedence, lowest first: dataclass defaults < ``peft_preset`` < YAML recipe < ``--key value`` on the command line.
Unknown YAML keys, values of the wrong type or outside their choices, and unknown flags are one-line
:class:`ConfigError` s naming the key and the file, with a "did you mean" suggestion.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, UsageError
from .field_changes import FIELD_CHANGES
from .field_types import field_annotations, list_item, one_or_more, record_fields, takes_mapping, takes_none

META_KEYS = ("env",)  # TrlParser: `env:` sets environment variables


def _run_arguments_class():
    from trl import ScriptArguments

    @dataclass
    class RunArguments(ScriptArguments):
        """TRL's script arguments plus what trl-plugins adds to every run."""

        peft_preset: str | None = field(
            default=None,
            metadata={"help": "LoRA/QLoRA preset for one consumer GPU: qlora-8gb/12gb/16gb/24gb, lora-8gb/.../24gb."},
        )
        overwrite_output_dir: bool = field(
            default=False,
            metadata={"help": "Allow training into an output_dir that already holds files (they may be overwritten)."},
        )
        max_train_samples: int | None = field(
            default=None, metadata={"help": "Use only the first N rows of the training split."}
        )
        max_eval_samples: int | None = field(
            default=None, metadata={"help": "Use only the first N rows of the evaluation split."}
        )
        dataset_mixture: dict[str, Any] | None = field(
            default=None,
            metadata={"help": "alignment-handbook's dataset mixture: {datasets: [{id, config, split, columns, weight}], "
                      "seed, test_split_size}; weight keeps that share of each dataset (docs/plugins.md)."},
        )
        chat_template: str | None = field(
            default=None,
            metadata={"help": "A Jinja chat template set on the tokenizer before anything is tokenized "
                      "(alignment-handbook's key)."},
        )

    return RunArguments


class _OneOrMore(argparse.Action):
    """``--report_to tensorboard wandb`` -> a list; ``--report_to wandb`` -> the value alone (as TRL's parser gives)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values[0] if len(values) == 1 else list(values))


class StrictParser:
    """Builds the TrlParser lazily (it imports transformers) and turns argparse exits into one-line errors. A recipe's
    keys are checked against each field's annotation as written (``field_types.py``): every YAML form TRL's parser
    accepts, with the same meaning. Keys for the launcher (``num_processes``, ``accelerate_config``, ...) are kept
    apart in :attr:`launch`; renamed keys are read under their new name with one printed line (``field_changes.py``).
    """

    def __init__(self, config_cls: type, prog: str | None = None):
        from trl import DatasetMixtureConfig, ModelConfig, TrlParser

        from .distributed import launch_options

        class _Parser(TrlParser):
            def error(self, message):  # argparse would print usage and exit; we want one line
                raise UsageError(message)

        self.dataclass_types = (_run_arguments_class(), config_cls, ModelConfig, DatasetMixtureConfig)
        self.annotations = field_annotations(self.dataclass_types)  # before TrlParser narrows the field types
        self.parser = _Parser(self.dataclass_types, prog=prog)
        self.fields = {f.name: f for dc in self.dataclass_types for f in dataclasses.fields(dc)}
        self.actions: dict[str, Any] = {}
        for action in self.parser._actions:
            if action.dest in ("help",):
                continue
            current = self.actions.get(action.dest)
            if current is None or (current.type is None and action.type is not None):
                self.actions[action.dest] = action
        for name, action in self.actions.items():
            if action.nargs is None and name in self.annotations and one_or_more(self.annotations[name]):
                action.nargs, action.__class__ = "+", _OneOrMore  # TRL's parser takes one value only
        self.launch_names = {name: act for name, act in launch_options().items() if name not in self.actions}
        self.launch: dict[str, Any] = {}  # the recipe's launcher keys (read by `train` before it launches)
        self.launch_argv: list[str] = []  # the command line's launcher flags

    # -- YAML values ---------------------------------------------------------------------------------------------
    def _convert(self, key: str, value: Any) -> Any:
        """``value`` as TRL's parser passes it on, after checking it fits the field; raises ``_Problem``."""
        action = self.actions[key]
        annotation = self.annotations.get(key, Any)
        if value is None:
            if takes_none(annotation) or self.fields.get(key) is None or self.fields[key].default is None:
                return None
            raise _Problem(f"{key!r} cannot be null")
        if isinstance(value, dict):
            if takes_mapping(annotation):
                return value
            raise _Problem(f"{key!r} expects {self._expects(key)}, got a mapping")
        if isinstance(value, list):
            item = list_item(annotation)
            if item is None and action.nargs not in ("+", "*"):
                raise _Problem(f"{key!r} expects one value ({self._expects(key)}), got a list")
            record = record_fields(item)
            if record is not None:
                return [self._record(key, i, entry, record) for i, entry in enumerate(value)]
            return [self._convert_scalar(key, entry) for entry in value]
        return self._convert_scalar(key, value)

    def _record(self, key: str, index: int, entry: Any, fields: dict) -> dict:
        """One entry of a list of records (TRL's ``datasets:`` items): a mapping of the record's fields."""
        where = f"{key}[{index}]"
        if not isinstance(entry, dict):
            raise _Problem(f"{where} must be a mapping of {', '.join(fields)}, got {entry!r}")
        problems = [f"{where}: {_unknown(name, fields)}" for name in entry if name not in fields]
        problems += [f"{where}: {name!r} is required" for name, f in fields.items()
                     if name not in entry and f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING]
        if problems:
            raise _Problem(*problems)
        return entry

    def _expects(self, key: str) -> str:
        action = self.actions[key]
        if action.choices:
            return "one of " + ", ".join(map(str, action.choices))
        type_name = getattr(action.type, "__name__", "")
        return {"string_to_bool": "true/false", "float": "a number", "int": "an integer", "str": "text"}.get(
            type_name, "a value"
        )

    def _convert_scalar(self, key: str, value: Any) -> Any:
        action = self.actions[key]
        convert = action.type
        if action.nargs == 0:  # a store_true/false flag without a typed twin
            if isinstance(value, bool):
                return value
            raise _Problem(f"{key!r} expects true/false, got {value!r}")
        if convert is None:
            return value
        type_name = getattr(convert, "__name__", "")
        if isinstance(value, bool) and type_name != "string_to_bool" and not action.choices:
            raise _Problem(f"{key!r} expects {self._expects(key)}, got {str(value).lower()}")
        text = value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)
        try:
            converted = convert(value) if type_name == "string_to_bool" else convert(text)
        except (TypeError, ValueError, Exception) as exc:  # noqa: BLE001 - argparse type functions raise anything
            raise _Problem(f"{key!r} expects {self._expects(key)}, got {value!r}") from exc
        if action.choices and converted not in action.choices and str(converted) not in map(str, action.choices):
            raise _Problem(f"{key!r} must be {self._expects(key)}, got {value!r}")
        if type_name == "str" and not isinstance(value, str):
            return text
        return value if isinstance(value, (int, float)) and type_name in ("int", "float") else converted

    def check_keys(self, config: dict, where: str) -> dict:
        """Convert and check every value of a recipe layer; renamed keys are read under their new name (one printed
        line each), launcher keys go to :attr:`launch`. Every unknown key and bad value is one :class:`ConfigError`
        (one line, or a header and one line per key). Returns the cleaned mapping."""
        cleaned, problems, migrated = {}, [], []
        for key, value in config.items():
            key = str(key)
            change = FIELD_CHANGES.get(key)
            try:
                if key in self.actions and not (change and change.alias):
                    cleaned[key] = self._convert(key, value)
                elif change and change.new in self.actions and change.migrates(value):
                    cleaned[change.new] = self._convert(change.new, value)
                    migrated.append((key, change))
                elif key in self.launch_names:
                    self.launch[key] = value
                else:
                    raise _Problem(_unknown(key, self.actions))
            except _Problem as problem:
                problems += problem.args
        _raise_all(where, problems)
        if "dataset_mixture" in cleaned and cleaned["dataset_mixture"] is not None:
            from ..checks.mixtures import handbook_mixture_problems

            _raise_all(where, handbook_mixture_problems(cleaned["dataset_mixture"]))
        for key, change in migrated:  # said once the layer is known good: an error stays one line
            _note_migration(where, key, change)
        return cleaned

    def _current_names(self, argv: list[str], where: str = "command line") -> list[str]:
        """argv with renamed flags written as their current ones (one printed line each), so that the layers'
        precedence holds whichever name each layer uses (transformers lets the new name win over the old)."""
        out = []
        for i, arg in enumerate(argv):
            name, eq, rest = arg.partition("=")
            change = FIELD_CHANGES.get(name[2:]) if name.startswith("--") else None
            value = rest if eq else (argv[i + 1] if i + 1 < len(argv) else None)
            if change and change.new in self.actions and change.migrates(value):
                _note_migration(where, name[2:], change)
                arg = f"--{change.new}{eq}{rest}"
            out.append(arg)
        return out

    # -- the whole command line ----------------------------------------------------------------------------------
    def parse(self, argv: list[str], recipe: Path | None):
        from .distributed import DEEPSPEED_MISSING, deepspeed_installed, split_launch_flags

        config: dict = {}
        where = str(recipe) if recipe else "command line"
        if recipe is not None:
            config = load_yaml(recipe)
            env = config.pop("env", {}) or {}
            if not isinstance(env, dict):
                raise ConfigError(f"{where}: 'env' must be a mapping of environment variables")
            for name, value in env.items():
                os.environ[str(name)] = str(value)
            config = self.check_keys(config, where)
        self.launch_argv, argv = split_launch_flags(argv, self.launch_names)  # the launcher's, as `trl dpo` reads them
        argv = self._current_names(argv)
        preset_name = _flag_value(argv, "peft_preset") or config.get("peft_preset")
        defaults = {}
        if preset_name:
            from ..models.peft_presets import preset_values

            defaults.update(self.check_keys(preset_values(preset_name), f"preset {preset_name!r}"))
        defaults.update(config)
        if (_flag_value(argv, "deepspeed") or defaults.get("deepspeed")) and not deepspeed_installed():
            raise ConfigError(f"{where}: deepspeed is set (a DeepSpeed config): {DEEPSPEED_MISSING}")
        self.parser.set_defaults_with_config(**defaults)
        try:
            *parsed, remaining = self.parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
        except UsageError:
            raise
        except (ValueError, TypeError) as exc:  # a dataclass __post_init__ refused a combination of values
            lines = str(exc).strip().splitlines()
            raise ConfigError(f"{where}: {lines[0] if lines else exc}") from exc
        if remaining:
            flags = [word for word in remaining if word.startswith("--")] or remaining[:1]
            problems = [f"unknown argument {flag!r}" + _flag_hint(flag, self.actions) for flag in flags]
            if len(problems) == 1:
                raise UsageError(problems[0])
            raise ConfigError(f"command line: {len(problems)} unknown arguments", [f"  {p}" for p in problems])
        explicit = set(config) | {a.lstrip("-").split("=")[0] for a in argv if a.startswith("--")}
        return parsed, explicit


class _Problem(Exception):
    """One or more problems with recipe keys (each a line without the recipe's name)."""


def _unknown(key: str, known) -> str:
    """``unknown key 'x'`` with its best hint: what replaced a renamed or removed field, or the closest known key."""
    change = FIELD_CHANGES.get(key)
    if change is not None:
        return f"{key!r}: {change.message()}"
    close = _closest(key, known)
    return f"unknown key {key!r}" + (f"; did you mean {close!r}?" if close else "")


def _flag_hint(flag: str, actions) -> str:
    name = flag.lstrip("-").split("=")[0]
    change = FIELD_CHANGES.get(name)
    if change is not None:
        return f" ({change.message()})"
    close = _closest(name, actions)
    return f"; did you mean '--{close}'?" if close else ""


def _closest(name: str, known) -> str | None:
    """The known name closest to a misspelt one; an old name that matches best is given as its current name."""
    close = difflib.get_close_matches(name, [*known, *FIELD_CHANGES], n=1, cutoff=0.75)
    if not close:
        return None
    change = FIELD_CHANGES.get(close[0])
    return change.new if change is not None and change.new in known else close[0]


def _raise_all(where: str, problems: list[str]) -> None:
    if len(problems) == 1:
        raise ConfigError(f"{where}: {problems[0]}")
    if problems:
        raise ConfigError(f"{where}: {len(problems)} keys to fix (nothing was loaded)", [f"  {p}" for p in problems])


def _note_migration(where: str, old: str, change) -> None:
    """The one line a migrated key prints (by the main process only: every process parses the recipe)."""
    if os.environ.get("RANK", "0") in ("0", ""):
        print(f"trl-plugins: {where}: {old!r} is read as {change.new!r} (renamed in {change.since})", file=sys.stderr)


def _flag_value(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


def load_yaml(path: Path) -> dict:
    import yaml

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read recipe {str(path)!r}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{at}: invalid YAML ({problem})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a YAML mapping of key: value, got {type(data).__name__}")
    return data


def split_config_flag(argv: list[str]) -> tuple[str | None, list[str]]:
    """Remove ``--config PATH`` (or ``--config=PATH``) from argv."""
    rest, value = [], None
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == "--config":
            if i + 1 >= len(argv):
                raise UsageError("--config needs a recipe path")
            value, skip = argv[i + 1], True
        elif arg.startswith("--config="):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return value, rest


def resolve_recipe(spec, value: str) -> Path:
    """A recipe path, or the name of a recipe the trainer ships (``demo/orpo``, ``qwen2.5-0.5b-instruct/orpo/...``)."""
    path = Path(os.path.expanduser(value))
    if path.is_file():
        return path
    shipped = shipped_recipes(spec)
    key = value.removesuffix(".yaml").strip("/")
    if key in shipped:  # an exact name wins over a folder of the same name (demo/margin_rm vs demo/margin_rm/...)
        return shipped[key]
    for name, recipe in shipped.items():
        if key == name.split("/")[0] or name.startswith(key + "/"):
            return recipe
    listing = ", ".join(shipped) or "none"
    raise ConfigError(f"recipe {value!r} not found: no such file, and {spec.name!r} ships no such recipe ({listing})")


def shipped_recipes(spec) -> dict[str, Path]:
    """The YAML recipes a trainer ships, by name (path under its recipes folder, without ``.yaml``): files named
    after the trainer (``-`` written ``_``) or under a folder named after it."""
    from ..imports import resource_dir

    root = resource_dir(spec.recipes) if spec.recipes else None
    if root is None or not root.is_dir():
        return {}
    stem = spec.name.replace("-", "_")
    found = {}
    for path in sorted(root.rglob("*.yaml")):
        rel = path.relative_to(root)
        if path.stem == stem or stem in rel.parts[:-1]:
            found[str(rel.with_suffix(""))] = path
    return found


def check_output_dir(script_args, training_args, resume) -> None:
    """Refuse to train into a directory that already holds files unless told to overwrite or resume."""
    out = Path(training_args.output_dir)
    if not out.is_dir() or not any(out.iterdir()):
        return
    if script_args.overwrite_output_dir or resume:
        return
    raise ConfigError(
        f"output_dir {str(out)!r} already holds a previous run ({sum(1 for _ in out.iterdir())} entries); "
        "pass --overwrite_output_dir true to write over it, --resume_from_checkpoint true to continue it, "
        "or choose another --output_dir"
    )


def resume_value(training_args):
    """``resume_from_checkpoint``: ``true``/``last`` means the newest checkpoint in output_dir."""
    value = training_args.resume_from_checkpoint
    if isinstance(value, str) and value.strip().lower() in ("true", "last", "latest", "yes", "1"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "no", "0", "none", ""):
        return None
    return value


@dataclass
class ParsedRun:
    """A run's arguments as every command reads them: the recipe file and the four parsed dataclasses."""

    recipe: Path | None
    script_args: Any  # trl.ScriptArguments plus RunArguments
    training_args: Any  # an instance of the trainer's config class
    model_args: Any  # trl.ModelConfig
    dataset_args: Any  # trl.DatasetMixtureConfig

    @property
    def where(self) -> str:
        return str(self.recipe or "command line")

    def require_model(self, example: str = "") -> None:
        """``model_name_or_path`` must be set (``example``: a hint appended to the one-line error)."""
        if not self.model_args.model_name_or_path:
            raise ConfigError(f"{self.where}: set model_name_or_path{example}")


def parse_run(spec, argv: list[str], prog: str | None = None, config_cls: type | None = None) -> ParsedRun:
    """The one way ``train``, ``check-data``, ``plan`` and the accelerate relaunch read a run: ``--config`` resolved
    against the trainer's shipped recipes, then the strict parser over (run arguments, the trainer's config,
    ``ModelConfig``, dataset mixture) with the command-line flags on top."""
    recipe_value, rest = split_config_flag(argv)
    recipe = resolve_recipe(spec, recipe_value) if recipe_value else None
    config_cls = config_cls or spec.load()[1]
    (script_args, training_args, model_args, dataset_args), _ = StrictParser(config_cls, prog=prog).parse(rest, recipe)
    return ParsedRun(recipe, script_args, training_args, model_args, dataset_args)
