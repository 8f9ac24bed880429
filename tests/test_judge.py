"""The ``judge:MODEL`` reward source: templates checked before any model loads (one line, exit 2), P(Yes) against a
hand computation on a tiny model, score parsing, the LoRA policy reused with its adapter off (no second copy),
``judge:policy`` judging with the adapter, and values that do not depend on how samples are batched or shared out
over processes.

    python -m pytest tests/test_judge.py -q
"""

from __future__ import annotations

import types

import pytest
import torch

from trl_plugins.errors import ConfigError
from trl_plugins.sampling import reward_sources
from trl_plugins.sampling.judge_prompts import (
    SHIPPED,
    check_template,
    fill,
    load_template,
    parse_score,
    placeholders,
)

from helpers import write_jsonl, write_recipe

PROMPTS = ["write a review of the movie .", "how was the story ?", "what was the film like ?",
           "tell me about the plot .", "was the acting good ?", "what is one plus two ?"]
COMPLETIONS = [" a great movie", " the worst plot , very dull", " fun", " brilliant acting , really wonderful",
               " boring", " three"]
YES_NO = "review : {completion} . is it good ? yes or no ?"  # every word is one token of the tiny tokenizer


def options(**knobs):
    return types.SimpleNamespace(**knobs)


def judge_source(target, template=YES_NO, policy=None, tmp_path=None, **knobs):
    if template not in SHIPPED:
        path = tmp_path / "template.txt"
        path.write_text(template)
        template = str(path)
    entries = reward_sources.resolve([f"judge:{target}"], options=options(judge_template=template, **knobs))
    (source,) = reward_sources.build(entries, policy=policy)
    return source


# -- templates and parsing (no model) ---------------------------------------------------------------------------
def test_placeholders_and_fill():
    template = "{prompt} {{literal}} {completion} {answer} {prompt}"
    assert placeholders(template) == ["prompt", "completion", "answer"]
    assert fill(template, {"prompt": "p", "completion": "c", "answer": 3}) == "p {literal} c 3 p"
    with pytest.raises(KeyError, match="answer"):
        fill(template, {"prompt": "p", "completion": "c"})


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_template_shows_what_it_judges(name):
    loaded, text = load_template(name)
    assert loaded == name and text
    pairwise = SHIPPED[name] == "pairwise"
    columns = check_template(name, text, pairwise=pairwise)
    assert columns == (("answer",) if name == "answer_correct" else ())


def test_self_rewarding_template_is_the_papers_rubric():
    _, text = load_template("self_rewarding")
    assert text.count("point") >= 5 and 'Conclude with the score using the format: "Score: <total points>"' in text
    assert "User: {prompt}" in text and "<response>{completion}</response>" in text


@pytest.mark.parametrize("text, pairwise, message", [
    ("is {prompt} good ?", False, "has no {completion}"),
    ("which is better ? {completion_a}", True, "has no {completion_b}"),
    ("{completion_a} {completion_b} {completion}", True, "also has {completion}"),
])
def test_template_without_what_it_judges_is_refused(text, pairwise, message):
    with pytest.raises(ConfigError, match=message):
        check_template("mine.txt", text, pairwise=pairwise)


@pytest.mark.parametrize("value, message", [
    (None, "a judge needs a template"),
    ("no_such_template", "unknown template 'no_such_template' (shipped: answer_correct"),
    ("./missing.txt", "template file './missing.txt' does not exist"),
])
def test_unknown_templates_are_one_line(value, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_template(value)


@pytest.mark.parametrize("text, expected", [
    ("The response is relevant. Score: 4", 4.0),
    ("Score: 2 at first, then on reflection Score: 5", 5.0),  # the last stated score
    ("score = 3.5", 3.5),
    ("I would give it 3 points.", 3.0),  # one number without a marker
    ("Score: 7", None),  # out of range
    ("Score: -1", None),
    ("between 3 and 4 points", None),  # several numbers, no marker: ambiguous
    ("a fine answer", None),  # no number
    ("", None),
])
def test_parse_score(text, expected):
    assert parse_score(text, 0.0, 5.0) == expected


def test_judge_knobs_are_range_checked_by_the_config(tmp_path):
    from trl_plugins.trainers.raft import RAFTConfig

    common = dict(output_dir=str(tmp_path), reward_funcs=["vader_sentiment"], use_cpu=True, report_to="none")
    with pytest.raises(ValueError, match="judge_mode must be one of yes_probability, score"):
        RAFTConfig(judge_mode="vote", **common)
    with pytest.raises(ValueError, match="judge_score_range must be"):
        RAFTConfig(judge_score_range=[5, 1], **common)
    assert RAFTConfig(**common).judge_mode == "yes_probability"


# -- resolve: before any model loads --------------------------------------------------------------------------
def test_resolves_without_loading(tiny_model_dir, no_model_loading):
    (policy, other) = reward_sources.resolve(
        ["judge:policy", f"judge:{tiny_model_dir}"], options=options(judge_template="answer_correct"))
    assert (policy.kind, policy.target, policy.name, policy.reads_columns) == ("judge", "policy", "judge_policy",
                                                                               ("answer",))
    assert other.target == tiny_model_dir and other.judge.template_name == "answer_correct"


@pytest.mark.parametrize("entry, knobs, message", [
    ("judge:policy", {}, "judge_template: a judge needs a template"),
    ("judge:", {"judge_template": "sentiment_positive"}, "names no model (e.g. judge:embedded"),
    ("judge:./nowhere", {"judge_template": "sentiment_positive"}, "no local checkpoint, hub id or embedded model"),
    ("judge:embedded:nope", {"judge_template": "sentiment_positive"}, "unknown embedded model 'nope'"),
    ("judge:policy", {"judge_template": "self_rewarding"}, "written for judge_mode score, not yes_probability"),
    ("judge:policy", {"judge_template": "rlaif_helpful_pairwise"}, "is a pairwise template"),
])
def test_bad_judge_entries_are_one_line(entry, knobs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        reward_sources.resolve([entry], options=options(**knobs))


def test_a_reward_model_is_not_a_judge(tmp_path):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from tiny import tiny_llama_config

    LlamaForSequenceClassification(tiny_llama_config(64, num_labels=1)).save_pretrained(tmp_path)
    assert isinstance(LlamaConfig.from_pretrained(tmp_path), LlamaConfig)
    with pytest.raises(ConfigError, match="is a sequence-classification reward model, not a causal LM"):
        reward_sources.resolve([f"judge:{tmp_path}"], options=options(judge_template="sentiment_positive"))


@pytest.mark.parametrize("template, data_columns, message", [
    ("is it good ? {prompt}", ["prompt"], "has no {completion}"),
    ("answer_correct", ["prompt"], "reward 'judge:TINY' needs a column 'answer' in the training split"),
    ("{completion} fits {topic} ?", ["prompt", "answer"], "needs a column 'topic'"),
])
def test_bad_templates_stop_the_run_in_one_line_before_model_load(template, data_columns, message, tmp_path,
                                                                  tiny_model_dir, run_cli, no_model_loading):
    if template not in SHIPPED:
        (tmp_path / "mine.txt").write_text(template)
        template = str(tmp_path / "mine.txt")
    rows = [{c: "what is one plus two ?" if c == "prompt" else "3" for c in data_columns}] * 4
    recipe = write_recipe(tmp_path / "recipe.yaml", {
        "model_name_or_path": tiny_model_dir, "dataset_name": write_jsonl(tmp_path / "data.jsonl", rows),
        "output_dir": str(tmp_path / "out"), "reward_funcs": [f"judge:{tiny_model_dir}"], "judge_template": template,
        "num_iterations": 1, "max_new_tokens": 4, "max_steps": 1, "max_length": 64})
    code, out, err = run_cli("train", "raft", "--config", recipe)
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1, err
    assert message.replace("TINY", tiny_model_dir) in lines[0], err


# -- on a tiny model ----------------------------------------------------------------------------------------------
def hand_yes_probability(model, tokenizer, text: str) -> float:
    """P(yes) / (P(yes) + P(no)) of the next token, by a plain unpadded forward over the chat-rendered question."""
    ids = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                        tokenize=True, return_dict=True)["input_ids"]
    with torch.no_grad():
        probs = model(torch.tensor([ids])).logits[0, -1].float().softmax(-1)
    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")  # "Yes"/"No": unknown
    return (probs[yes] / (probs[yes] + probs[no])).item()


@pytest.fixture
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


def test_yes_probability_is_the_hand_computed_one(tiny_model_dir, tiny, tmp_path):
    model, tokenizer = tiny
    source = judge_source(tiny_model_dir, tmp_path=tmp_path, judge_batch_size=4)  # 6 samples: padded batches
    values = source(PROMPTS, COMPLETIONS, {})
    expected = [hand_yes_probability(model, tokenizer, YES_NO.replace("{completion}", c)) for c in COMPLETIONS]
    assert values == pytest.approx(expected, abs=1e-5)
    assert max(expected) - min(expected) > 1e-3  # the samples differ by more than the tolerance
    assert source.last_stats["samples"] == 6 and source.seconds > 0


def test_left_padding_keeps_absolute_positions(tmp_path, tok):
    """A model with absolute position embeddings (GPT-2; RoPE models are shift-invariant) reads a left-padded
    sample at the positions it has alone."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4, n_positions=256,
                                       pad_token_id=tok.pad_token_id)).eval()
    model.save_pretrained(tmp_path / "gpt2")
    tok.save_pretrained(tmp_path / "gpt2")
    values = judge_source(tmp_path / "gpt2", tmp_path=tmp_path, judge_batch_size=6)(PROMPTS, COMPLETIONS, {})
    expected = [hand_yes_probability(model, tok, YES_NO.replace("{completion}", c)) for c in COMPLETIONS]
    assert values == pytest.approx(expected, abs=1e-5)


def test_values_do_not_depend_on_batches_or_process_shares(tiny_model_dir, tmp_path):
    """The engine shares scoring over processes (process r of N takes samples r, r + N, ...): each sample's value
    is the same whichever share and batch it lands in, so two processes score what one does."""
    source = judge_source(tiny_model_dir, tmp_path=tmp_path, judge_batch_size=4)
    together = source(PROMPTS, COMPLETIONS, {})
    shares = {r: source(PROMPTS[r::2], COMPLETIONS[r::2], {}) for r in (0, 1)}
    gathered = [shares[i % 2][i // 2] for i in range(len(PROMPTS))]
    one_by_one = judge_source(tiny_model_dir, tmp_path=tmp_path, judge_batch_size=1)(PROMPTS, COMPLETIONS, {})
    assert gathered == pytest.approx(together, abs=1e-6)
    assert one_by_one == pytest.approx(together, abs=1e-6)


def test_template_columns_reach_the_judge(tiny_model_dir, tiny, tmp_path):
    model, tokenizer = tiny
    source = judge_source(tiny_model_dir, "{completion} equals {answer} ? yes or no", tmp_path=tmp_path)
    assert source.entry.reads_columns == ("answer",)
    values = source(PROMPTS[:2], [" three", " three"], {"answer": ["three", "four"]})
    expected = [hand_yes_probability(model, tokenizer, f"three equals {a} ? yes or no") for a in ("three", "four")]
    assert values == pytest.approx(expected, abs=1e-5)


def test_score_mode_parses_what_the_judge_writes(tiny_model_dir, tmp_path, monkeypatch):
    """The judge generates greedily (temperature 0, judge_max_new_tokens) and what it writes is parsed; unparseable
    -> None, counted in last_stats."""
    from trl_plugins.sampling.generation import Generation, TransformersBackend

    seen = {}

    def fake_generate(self, prompts, k, params, seed, progress=False, chat_kwargs=None):
        seen.update(prompts=prompts, temperature=params.temperature, max_new_tokens=params.max_new_tokens)
        texts = ["fine . Score: 4", "no idea", "Score: 9"]
        return [[Generation(text, 3, True)] for text in texts[: len(prompts)]]

    monkeypatch.setattr(TransformersBackend, "generate", fake_generate)
    source = judge_source(tiny_model_dir, "rate {completion} . Score :", tmp_path=tmp_path, judge_mode="score",
                          judge_max_new_tokens=12)
    assert source(PROMPTS[:3], COMPLETIONS[:3], {}) == [4.0, None, None]
    assert source.last_stats["unparsed"] == 2
    assert seen["temperature"] == 0.0 and seen["max_new_tokens"] == 12
    assert seen["prompts"][0] == [{"role": "user", "content": "rate  a great movie . Score :"}]


def test_score_mode_generates_on_the_tiny_model(tiny_model_dir, tmp_path):
    source = judge_source(tiny_model_dir, "rate {completion} from 0 to 5 . Score :", tmp_path=tmp_path,
                          judge_mode="score", judge_max_new_tokens=6)
    values = source(PROMPTS, COMPLETIONS, {})
    assert len(values) == 6 and all(v is None or 0 <= v <= 5 for v in values)
    assert values == source(PROMPTS, COMPLETIONS, {})  # greedy: the same again


# -- the policy as its own judge, and its base under LoRA -----------------------------------------------------------
@pytest.fixture
def lora_policy(tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.1))
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


def train_the_adapter(model) -> None:
    """What a fine-tuning phase does to the policy, in short: the adapter's weights move away from zero."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)


def test_base_judge_reuses_the_lora_policy_with_its_adapter_off(tiny_model_dir, lora_policy, tiny, tmp_path):
    from trl_plugins.sampling.judge import PolicyHandle

    model, tokenizer = lora_policy
    train_the_adapter(model)
    model.train()
    handle = PolicyHandle(model, tokenizer, name=tiny_model_dir)
    reused = judge_source(tiny_model_dir, tmp_path=tmp_path, policy=handle)
    values = reused(PROMPTS, COMPLETIONS, {})
    assert reused.judge.kind == "policy-base" and reused.judge.model is None  # no second copy was loaded
    separate = judge_source(tiny_model_dir, tmp_path=tmp_path)(PROMPTS, COMPLETIONS, {})
    assert values == pytest.approx(separate, abs=1e-6)  # the base's numbers
    assert model.training  # the policy goes back to training mode
    base_model, _ = tiny
    assert values == pytest.approx([hand_yes_probability(base_model, tokenizer, YES_NO.replace("{completion}", c))
                                    for c in COMPLETIONS], abs=1e-5)
    # without a name the policy's own config says where it was loaded from
    assert judge_source(tiny_model_dir, tmp_path=tmp_path, policy=PolicyHandle(model, tokenizer)).judge.kind == \
        "policy-base"


def test_policy_judge_uses_the_adapter(tiny_model_dir, lora_policy, tmp_path):
    from trl_plugins.sampling.judge import PolicyHandle

    model, tokenizer = lora_policy
    source = judge_source("policy", tmp_path=tmp_path, policy=PolicyHandle(model, tokenizer))
    before = source(PROMPTS, COMPLETIONS, {})  # lora_B = 0: the policy is still its base
    base = judge_source(tiny_model_dir, tmp_path=tmp_path)(PROMPTS, COMPLETIONS, {})
    assert before == pytest.approx(base, abs=1e-6)
    train_the_adapter(model)
    after = source(PROMPTS, COMPLETIONS, {})
    assert max(abs(a - b) for a, b in zip(after, before)) > 1e-3
    model.eval()
    assert after == pytest.approx([hand_yes_probability(model, tokenizer, YES_NO.replace("{completion}", c))
                                   for c in COMPLETIONS], abs=1e-5)


def test_policy_judge_without_the_policy_is_refused(tmp_path):
    with pytest.raises(ValueError, match="judge:policy needs the policy"):
        judge_source("policy", tmp_path=tmp_path)


# -- pairwise comparisons -------------------------------------------------------------------------------------------
PAIRWISE = "which is better ? response one : {completion_a} . response two : {completion_b} . one or two ?"


def test_pairwise_preferences_in_both_orders(tiny):
    from trl_plugins.sampling.judge import choice_probabilities, pairwise_preferences

    model, tokenizer = tiny
    a, b = COMPLETIONS[:3], COMPLETIONS[3:]
    forward, backward = pairwise_preferences(model, tokenizer, PAIRWISE, PROMPTS[:3], a, b, labels=("one", "two"))
    swapped_forward, swapped_backward = pairwise_preferences(model, tokenizer, PAIRWISE, PROMPTS[:3], b, a,
                                                             labels=("one", "two"))
    assert swapped_forward == pytest.approx(backward, abs=1e-6) and swapped_backward == pytest.approx(forward, abs=1e-6)
    one, two = tokenizer.convert_tokens_to_ids("one"), tokenizer.convert_tokens_to_ids("two")
    for x, y, value in zip(a, b, forward):
        text = PAIRWISE.replace("{completion_a}", x).replace("{completion_b}", y)
        ids = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                            tokenize=True, return_dict=True)["input_ids"]
        with torch.no_grad():
            probs = model(torch.tensor([ids])).logits[0, -1].softmax(-1)
        assert value == pytest.approx((probs[one] / (probs[one] + probs[two])).item(), abs=1e-5)
    with pytest.raises(ValueError, match="spells 'A' with no single token"):
        choice_probabilities(model, tokenizer, ["x"], "A", "B")


# -- the real judge (SmolLM2-135M-Instruct) -------------------------------------------------------------------------
@pytest.mark.real
def test_smollm2_sentiment_judge_orders_clear_cases():
    (source,) = reward_sources.build(reward_sources.resolve(
        ["judge:embedded:smollm2-135m-instruct"], options=options(judge_template="sentiment_positive")))
    good, bad = source(["Continue this movie review:"] * 2, [
        "It was a wonderful film, I loved every minute of it and the acting was brilliant.",
        "It was a terrible film, boring and badly acted; I hated every minute of it."], {})
    assert 0 < bad < good < 1


def test_an_embedded_judge_is_the_policy_loaded_from_its_converted_folder(tmp_path, monkeypatch):
    import trl_plugins.models.loading as loading
    from trl_plugins.sampling.judge import _same_model

    monkeypatch.setattr(loading, "cache_root", lambda: tmp_path)
    (tmp_path / "models" / "smollm2-135m-instruct").mkdir(parents=True)
    assert _same_model("embedded:smollm2-135m-instruct", str(tmp_path / "models" / "smollm2-135m-instruct"))
    assert _same_model("Qwen/Qwen2.5-1.5B-Instruct", "Qwen/Qwen2.5-1.5B-Instruct")
    assert not _same_model("embedded:smollm2-135m-instruct", str(tmp_path))
    assert not _same_model("Qwen/Qwen2.5-1.5B-Instruct", None)


@pytest.mark.slow
def test_a_4bit_judge_loads_quantized_and_judges_like_the_full_one(tmp_path):
    """judge_load_in_4bit: the judge's linear layers are bitsandbytes NF4 (CPU kernels: dimensions of 64 or more),
    its values those of the float32 judge up to the quantization error."""
    from tiny import tiny_causal_lm, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    tiny_causal_lm(tokenizer, hidden_size=64, intermediate_size=128).save_pretrained(tmp_path / "judge")
    tokenizer.save_pretrained(tmp_path / "judge")
    full = judge_source(tmp_path / "judge", tmp_path=tmp_path)
    quantized = judge_source(tmp_path / "judge", tmp_path=tmp_path, judge_load_in_4bit=True)
    expected, values = full(PROMPTS, COMPLETIONS, {}), quantized(PROMPTS, COMPLETIONS, {})
    assert type(quantized.judge.model.model.layers[0].mlp.up_proj).__name__ == "Linear4bit"
    assert values == pytest.approx(expected, abs=0.01) and values != pytest.approx(expected, abs=1e-6)
