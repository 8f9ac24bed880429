"""The judge's prompts, without torch: templates (shipped or a recipe's own file), their checks, filling, and the
parsing of a judge's written score. ``judge.py`` runs them on a model. Docs: docs/methods/judges.md.

A template is text with ``{placeholder}``s: ``{prompt}`` (the sample's prompt as text), ``{completion}`` (the
sample), any other ``{name}`` a column of the dataset row; ``{{`` and ``}}`` are literal braces. A pairwise template
has ``{completion_a}`` and ``{completion_b}`` instead of ``{completion}``. Shipped templates live in
``judge_templates/NAME.txt`` (:data:`SHIPPED`, with the mode each is written for).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

TEMPLATE_DIR = Path(__file__).parent / "judge_templates"
MODES = ("yes_probability", "score")
# shipped template -> the mode (or "pairwise") it is written for
SHIPPED = {
    "self_rewarding": "score",  # Yuan et al. 2024, the additive 5-point LLM-as-a-Judge prompt (Figure 2)
    "helpful_harmless": "yes_probability",  # after Lee et al. 2023's helpfulness and harmlessness preambles
    "sentiment_positive": "yes_probability",  # is a movie-review continuation positive (the IMDB demo's VADER task)
    "answer_correct": "yes_probability",  # the answer against the row's `answer` column (embedded:arithmetic)
    "rlaif_helpful_pairwise": "pairwise",  # Lee et al. 2023's helpfulness preamble, responses labelled A and B
}
PER_SAMPLE = ("prompt", "completion")  # what the engine fills in; every other placeholder is a dataset column
PAIRWISE = ("prompt", "completion_a", "completion_b")
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_]\w*)\}")
_SCORE = re.compile(r"score\s*[:=]\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])")


@dataclass(frozen=True)
class JudgeSpec:
    """A ``judge:MODEL`` reward entry, resolved before any model loads."""

    model: str  # "policy", or a local path / hub id / embedded:NAME
    template_name: str  # the shipped NAME or the file's path, for messages
    template: str  # the template text
    columns: tuple[str, ...] = ()  # dataset columns the template reads
    mode: str = "yes_probability"
    score_range: tuple[float, float] = (0.0, 5.0)
    max_new_tokens: int = 160
    batch_size: int = 8
    load_in_4bit: bool = False


def placeholders(template: str) -> list[str]:
    """The ``{name}`` placeholders of a template, in order of first appearance (``{{``/``}}`` are not)."""
    seen: list[str] = []
    for match in _PLACEHOLDER.finditer(template):
        if match.group(1) and match.group(1) not in seen:
            seen.append(match.group(1))
    return seen


def fill(template: str, values: dict) -> str:
    """The template with each placeholder replaced by ``str(values[name])``; ``{{``/``}}`` become ``{``/``}``."""
    def replace(match):
        name = match.group(1)
        if name is None:
            return match.group(0)[0]
        if name not in values:
            raise KeyError(f"judge template needs {name!r}, which this sample does not have")
        return str(values[name])

    return _PLACEHOLDER.sub(replace, template)


def as_text(value) -> str:
    """A prompt or completion as the text a judge reads: a string as it is; chat messages as their contents (one
    message) or ``role: content`` lines (several)."""
    if isinstance(value, list):
        messages = [m for m in value if isinstance(m, dict)]
        if len(messages) == 1:
            return str(messages[0].get("content", ""))
        return "\n".join(f"{m.get('role', '')}: {m.get('content', '')}" for m in messages)
    return str(value)


def load_template(value: str | None, key: str = "judge_template") -> tuple[str, str]:
    """``(name, text)`` of a shipped template NAME or a template file PATH (relative to the working directory)."""
    shipped = ", ".join(sorted(SHIPPED))
    if not value:
        raise ConfigError(f"{key}: a judge needs a template: a shipped name ({shipped}) or the path of a .txt file")
    if value in SHIPPED:
        return value, (TEMPLATE_DIR / f"{value}.txt").read_text().strip()
    path = Path(os.path.expanduser(value))
    if path.is_file():
        try:
            return str(path), path.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{key}: cannot read {value!r}: {exc}") from exc
    if "/" in value or value.endswith(".txt"):
        raise ConfigError(f"{key}: template file {value!r} does not exist")
    raise ConfigError(f"{key}: unknown template {value!r} (shipped: {shipped}; or the path of a .txt file)")


def check_template(name: str, text: str, pairwise: bool = False, key: str = "judge_template") -> tuple[str, ...]:
    """The dataset columns a template reads; a ConfigError if it lacks what the judge fills in (``{completion}``, or
    ``{completion_a}`` and ``{completion_b}`` for a pairwise one)."""
    names = placeholders(text)
    needed = ("completion_a", "completion_b") if pairwise else ("completion",)
    for placeholder in needed:
        if placeholder not in names:
            what = "a pairwise template" if pairwise else "a judge template"
            raise ConfigError(f"{key}: {name!r} has no {{{placeholder}}}: {what} must show the judged "
                              f"{'completions' if pairwise else 'completion'}")
    if pairwise and "completion" in names:
        raise ConfigError(f"{key}: {name!r} is pairwise ({{completion_a}}, {{completion_b}}) but also has {{completion}}")
    fixed = PAIRWISE if pairwise else PER_SAMPLE
    return tuple(n for n in names if n not in fixed)


def judge_spec(model: str, options=None, key: str = "reward_funcs") -> JudgeSpec:
    """A ``judge:MODEL`` entry's spec from the run's ``judge_*`` options (any object with those attributes, e.g. the
    trainer's config; None: the defaults, which lack a template). Checks the template and the mode."""
    def option(name, default):
        value = getattr(options, name, None) if options is not None else None
        return default if value is None else value

    mode = option("judge_mode", "yes_probability")
    check_judge_options(mode, option("judge_score_range", (0.0, 5.0)), option("judge_max_new_tokens", 160),
                        option("judge_batch_size", 8))
    name, text = load_template(option("judge_template", None))
    made_for = SHIPPED.get(name)
    if made_for == "pairwise":
        raise ConfigError(f"judge_template: {name!r} is a pairwise template (for pair_rule: judge_pairwise), not one "
                          f"that scores one sample for {key}")
    if made_for is not None and made_for != mode:
        raise ConfigError(f"judge_template: {name!r} is written for judge_mode {made_for}, not {mode}")
    columns = check_template(name, text)
    low, high = (float(v) for v in option("judge_score_range", (0.0, 5.0)))
    return JudgeSpec(model=model, template_name=name, template=text, columns=columns, mode=mode,
                     score_range=(low, high), max_new_tokens=int(option("judge_max_new_tokens", 160)),
                     batch_size=int(option("judge_batch_size", 8)),
                     load_in_4bit=bool(option("judge_load_in_4bit", False)))


def check_judge_options(mode, score_range, max_new_tokens, batch_size) -> None:
    """The ``judge_*`` knobs' own ranges (ValueError, as a config's ``__post_init__`` raises)."""
    if mode not in MODES:
        raise ValueError(f"judge_mode must be one of {', '.join(MODES)}, got {mode!r}")
    if len(list(score_range)) != 2 or float(score_range[0]) >= float(score_range[1]):
        raise ValueError(f"judge_score_range must be [low, high] with low < high, got {list(score_range)}")
    if int(max_new_tokens) < 1 or int(batch_size) < 1:
        raise ValueError("judge_max_new_tokens and judge_batch_size must be >= 1")


def parse_score(text: str, low: float, high: float) -> float | None:
    """The score a judge wrote: the number after the last ``Score:`` (any case); without one, the text's only
    number. ``None`` when there is none, when several numbers stand without a ``Score:``, or when the number is
    outside ``[low, high]``."""
    marked = _SCORE.findall(text)
    if marked:
        value = float(marked[-1])
    else:
        numbers = _NUMBER.findall(text)
        if len(numbers) != 1:
            return None
        value = float(numbers[0])
    return value if low <= value <= high else None
