"""The ``judge:MODEL`` reward source: a causal LM asked about each sample through a template (``judge_prompts.py``).

- ``judge_mode: yes_probability`` (default): one forward pass per sample, no generation; the reward is
  P(Yes) / (P(Yes) + P(No)) of the judge's next token after the filled template (the template asks a yes/no question;
  chat models see it as a user message with the assistant's turn opened). "Yes" is every single-token spelling the
  judge's tokenizer has ("Yes", " Yes", "yes", " yes", ...), "No" likewise.
- ``judge_mode: score``: the judge writes greedily (``judge_max_new_tokens``) and the score it states is parsed
  (``Score: N`` in ``judge_score_range``, Self-Rewarding's rubric); unparseable -> ``None`` (the sample is dropped).

MODEL is ``policy`` (the policy judges its own samples: Self-Rewarding), the policy's base model (a LoRA policy is
reused with its adapter switched off: no second copy), or any other causal LM, loaded frozen on first use on the
policy's device. :func:`pairwise_preferences` compares two samples the same way (P(A) / (P(A) + P(B))), for
``pairs.judge_pairwise``. Docs: docs/methods/judges.md.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .judge_prompts import JudgeSpec, as_text, fill, parse_score


@dataclass
class PolicyHandle:
    """The training policy, as the engine hands it to the reward sources: its (unwrapped) model, its tokenizer and
    the name it was loaded from (``model_name_or_path``; default: the model's ``config.name_or_path``)."""

    model: object
    tokenizer: object
    name: str | None = None


def _same_model(a: str, b: str | None) -> bool:
    from ..models.loading import EMBEDDED_PREFIX

    if not b:
        return False
    if a == b:
        return True
    if a.startswith(EMBEDDED_PREFIX):  # the embedded model's converted folder, if it was built
        from ..models.loading import cache_root

        a = str(cache_root() / "models" / a.removeprefix(EMBEDDED_PREFIX))
    paths = [Path(os.path.expanduser(x)) for x in (a, b)]
    return all(p.exists() for p in paths) and paths[0].resolve() == paths[1].resolve()


class JudgeModel:
    """The model a judge runs: ``kind`` is ``policy`` (the policy as it is), ``policy-base`` (a LoRA policy with its
    adapter off, when the judge names the policy's base) or ``separate`` (its own frozen copy, loaded on first use:
    float32 on a CPU, bfloat16 on a GPU, or 4-bit NF4 with ``load_in_4bit``)."""

    def __init__(self, target: str, device=None, policy: PolicyHandle | None = None, load_in_4bit: bool = False):
        self.target, self.device, self.policy, self.load_in_4bit = target, device, policy, load_in_4bit
        self.model = self.tokenizer = None
        if target == "policy":
            if policy is None:
                raise ValueError("judge:policy needs the policy (reward_sources.build(..., policy=PolicyHandle(...)))")
            self.kind = "policy"
        elif policy is not None and hasattr(policy.model, "disable_adapter") and _same_model(
                target, policy.name or getattr(getattr(policy.model, "config", None), "name_or_path", None)):
            self.kind = "policy-base"
        else:
            self.kind = "separate"

    def _load(self):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ..models.loading import resolve_model_path

        path = resolve_model_path(self.target)
        device = torch.device(self.device or "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        kwargs = {"dtype": torch.float32 if device.type == "cpu" else torch.bfloat16}
        if self.load_in_4bit:
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=torch.float32 if device.type == "cpu" else torch.bfloat16)
            kwargs["device_map"] = {"": device}
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        if not self.load_in_4bit:
            model = model.to(device)
        self.model = model.eval().requires_grad_(False)

    @contextlib.contextmanager
    def active(self):
        """``(model, tokenizer)`` ready to judge: eval mode (no dropout), the adapter off for ``policy-base``; the
        policy's training mode is restored afterwards."""
        if self.kind == "separate":
            if self.model is None:
                self._load()
            yield self.model, _text_tokenizer(self.tokenizer)
            return
        model = self.policy.model
        was_training = model.training
        model.eval()
        try:
            with model.disable_adapter() if self.kind == "policy-base" else contextlib.nullcontext():
                yield model, _text_tokenizer(self.policy.tokenizer)
        finally:
            model.train(was_training)


def _text_tokenizer(tokenizer):
    return getattr(tokenizer, "tokenizer", tokenizer)  # a processor's tokenizer


def judge_input(tokenizer, text: str):
    """What the judge reads for a filled template: a user message with the assistant's turn opened (chat models), or
    the text itself (models without a chat template)."""
    if getattr(tokenizer, "chat_template", None):
        return [{"role": "user", "content": text}]
    return text


def _input_ids(tokenizer, text: str) -> list[int]:
    from .generation import prompt_text

    judged = judge_input(tokenizer, text)
    rendered = prompt_text(tokenizer, judged)  # the same rendering as generation
    return list(tokenizer(rendered, add_special_tokens=isinstance(judged, str))["input_ids"])


def answer_token_ids(tokenizer, word: str) -> list[int]:
    """Token ids that spell ``word`` as the judge's next token: ``word`` with and without a leading space and, for
    words of two or more letters, in lower case, capitalized and upper case; only spellings that are one known token."""
    spellings = {word}
    if len(word) > 1 and word.isalpha():
        spellings |= {word.lower(), word.capitalize(), word.upper()}
    ids = set()
    for spelling in spellings:
        for text in (spelling, " " + spelling):
            encoded = tokenizer.encode(text, add_special_tokens=False)
            if len(encoded) == 1 and encoded[0] != tokenizer.unk_token_id:
                ids.add(encoded[0])
    if not ids:
        raise ValueError(f"the judge's tokenizer spells {word!r} with no single token")
    return sorted(ids)


def choice_probabilities(model, tokenizer, texts: list[str], first: str, second: str,
                         batch_size: int = 8) -> list[float]:
    """For each filled template: P(first) / (P(first) + P(second)) of the next token, each answer's probability
    summed over its spellings (:func:`answer_token_ids`). One forward pass per text (batched, left-padded with
    matching position ids, logits of the last position only), so a text's value does not depend on its batch."""
    yes, no = answer_token_ids(tokenizer, first), answer_token_ids(tokenizer, second)
    if set(yes) & set(no):
        raise ValueError(f"the judge's tokenizer spells {first!r} and {second!r} with a common token")
    ids = [_input_ids(tokenizer, text) for text in texts]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id  # masked out
    device = next(model.parameters()).device
    out: list[float] = [0.0] * len(ids)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            width = max(len(ids[i]) for i in batch)
            input_ids = torch.tensor([[pad] * (width - len(ids[i])) + ids[i] for i in batch], device=device)
            mask = torch.tensor([[0] * (width - len(ids[i])) + [1] * len(ids[i]) for i in batch], device=device)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=False,
                           logits_to_keep=1).logits[:, -1].float()
            logps = logits.log_softmax(-1)
            margin = logps[:, yes].logsumexp(-1) - logps[:, no].logsumexp(-1)
            for i, value in zip(batch, torch.sigmoid(margin).tolist()):
                out[i] = value
    return out


def _filled(spec_template: str, prompts, completions, columns: dict[str, list], names: tuple[str, ...]) -> list[str]:
    texts = []
    for i, (prompt, completion) in enumerate(zip(prompts, completions)):
        values = {"prompt": as_text(prompt), "completion": as_text(completion)}
        values.update({name: columns[name][i] for name in names if name in columns})
        texts.append(fill(spec_template, values))
    return texts


class JudgeReward:
    """A ``reward_funcs`` source for a ``judge:MODEL`` entry (:mod:`reward_sources` builds it; ``model``: a
    :class:`JudgeModel` shared with the run's other judges of the same model). ``seconds``: the time spent judging
    since it was built; ``last_stats`` of the last call (``samples``, ``seconds``, ``unparsed``)."""

    def __init__(self, entry, device=None, batch_size: int = 16, policy: PolicyHandle | None = None,
                 model: JudgeModel | None = None):
        spec: JudgeSpec = entry.judge
        self.entry, self.spec = entry, spec
        self.judge = model or JudgeModel(spec.model, device, policy, spec.load_in_4bit)
        self.seconds = 0.0
        self.last_stats: dict = {}

    def __call__(self, prompts, completions, columns) -> list[float | None]:
        missing = [name for name in self.spec.columns if name not in columns]
        if missing:
            raise ValueError(f"judge template {self.spec.template_name!r} needs the column(s) {', '.join(missing)}")
        start = time.perf_counter()
        texts = _filled(self.spec.template, prompts, completions, columns, self.spec.columns)
        with self.judge.active() as (model, tokenizer):
            if self.spec.mode == "yes_probability":
                values = choice_probabilities(model, tokenizer, texts, "Yes", "No", self.spec.batch_size)
            else:
                values = self._scores(model, tokenizer, texts)
        seconds = time.perf_counter() - start
        self.seconds += seconds
        self.last_stats = {"samples": len(texts), "seconds": seconds,
                           "unparsed": sum(v is None for v in values)}
        return values

    def _scores(self, model, tokenizer, texts: list[str]) -> list[float | None]:
        from .generation import SamplingParams, TransformersBackend

        params = SamplingParams(max_new_tokens=self.spec.max_new_tokens, temperature=0.0,
                                batch_size=self.spec.batch_size)
        out = TransformersBackend(model, tokenizer).generate([judge_input(tokenizer, t) for t in texts], 1, params,
                                                             seed=0)
        low, high = self.spec.score_range
        return [parse_score(gens[0].text, low, high) for gens in out]


class PairwiseJudge:
    """``pair_rule: judge_pairwise``'s judge: a pairwise :class:`~.judge_prompts.JudgeSpec` run on a
    :class:`JudgeModel` (shared with a ``judge:`` reward of the same model, so it is never loaded twice); called like
    :func:`pairwise_preferences`. ``seconds``: the time spent judging since it was built."""

    def __init__(self, spec: JudgeSpec, device=None, policy: PolicyHandle | None = None, model: JudgeModel | None = None,
                 labels: tuple[str, str] = ("A", "B")):
        self.spec, self.labels = spec, tuple(labels)
        self.judge = model or JudgeModel(spec.model, device, policy, spec.load_in_4bit)
        self.seconds = 0.0

    def __call__(self, prompts, firsts, seconds, columns=None) -> tuple[list[float], list[float]]:
        start = time.perf_counter()
        with self.judge.active() as (model, tokenizer):
            out = pairwise_preferences(model, tokenizer, self.spec.template, prompts, firsts, seconds, columns,
                                       self.spec.batch_size, self.labels)
        self.seconds += time.perf_counter() - start
        return out


def pairwise_preferences(model, tokenizer, template: str, prompts, firsts, seconds, columns=None,
                         batch_size: int = 8, labels: tuple[str, str] = ("A", "B")) -> tuple[list[float], list[float]]:
    """RLAIF's position-debiased comparison: for each prompt, P(A) / (P(A) + P(B)) with ``firsts[i]`` shown as
    response A and ``seconds[i]`` as B, and again with the two swapped — one forward pass per order (``labels``: the
    words the template asks the judge to answer with, e.g. ``("1", "2")`` for RLAIF's own wording). Returns
    ``(forward, backward)``: ``forward[i]`` is the preference for ``firsts[i]`` in the first order, ``backward[i]``
    the preference for ``seconds[i]`` in the second; both orders agree when ``forward > 0.5 > backward`` or
    ``forward < 0.5 < backward`` (``pairs.judge_pairwise``)."""
    from .judge_prompts import check_template

    names = check_template("pairwise template", template, pairwise=True)
    columns = columns or {}

    def texts(a_side, b_side):
        out = []
        for i, prompt in enumerate(prompts):
            values = {"prompt": as_text(prompt), "completion_a": as_text(a_side[i]), "completion_b": as_text(b_side[i])}
            values.update({name: columns[name][i] for name in names if name in columns})
            out.append(fill(template, values))
        return out

    forward = choice_probabilities(model, tokenizer, texts(firsts, seconds), *labels, batch_size)
    backward = choice_probabilities(model, tokenizer, texts(seconds, firsts), *labels, batch_size)
    return forward, backward
