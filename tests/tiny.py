"""Tiny random models and a word-level tokenizer built in code (no hub), for fast trainer tests."""

from __future__ import annotations

import os

WORDS = (
    "the a an is was be to of and in that it for on with as at by this from or not but what all were we when "
    "your can said there use each which she do how their if will up other about out many then them these so "
    "some her would make like him into time has look two more write go see number no way could people my than "
    "first water been call who oil its now find long down day did get come made may part good bad great awful "
    "movie film story plot actor acting scene review love hate best worst fun boring funny dull brilliant "
    "terrible wonderful horrible happy sad yes red green blue square circle triangle color shape answer "
    "question plus minus equals zero one three four five six seven eight nine ten hello world you i me our "
    "very really quite much less most just too also again never always every here where why because"
).split()
PUNCT = list(".,!?;:'\"()-")
SPECIAL = ["<pad>", "<unk>", "<eos>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }} {{ message['content'] }}<|im_end|> "
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant {% endif %}"
)


def tiny_tokenizer():
    """A word-level fast tokenizer: every test word is one token, with <eos>/<pad> and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL + WORDS + PUNCT + [str(d) for d in range(10)])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)]
    )
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        eos_token="<eos>",
        unk_token="<unk>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_llama_config(vocab_size: int, **overrides):
    from transformers import LlamaConfig

    kwargs = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        pad_token_id=0,
        eos_token_id=2,
        bos_token_id=None,
    )
    kwargs.update(overrides)
    return LlamaConfig(**kwargs)


def tiny_causal_lm(tokenizer=None, seed: int = 0, **overrides):
    """A 2-layer random Llama over :func:`tiny_tokenizer` (about 30k parameters)."""
    import torch
    from transformers import LlamaForCausalLM

    tokenizer = tokenizer or tiny_tokenizer()
    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_llama_config(len(tokenizer), **overrides))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def save_tiny_causal_lm(path: str | os.PathLike, seed: int = 0) -> str:
    """Write a tiny causal LM + tokenizer to ``path`` so it loads by path like any checkpoint."""
    tokenizer = tiny_tokenizer()
    model = tiny_causal_lm(tokenizer, seed=seed)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


REVIEW_NOUNS = ("movie", "film", "story", "plot", "acting", "scene")
REVIEW_POSITIVE = ("great", "fun", "brilliant", "wonderful", "good", "funny")
REVIEW_NEGATIVE = ("dull", "boring", "awful", "terrible", "bad", "horrible")
REVIEW_PROMPTS = ("write a review of the movie .", "what was the film like ?", "how was the story ?",
                  "tell me about the plot .", "was the acting good ?", "how was the movie ?",
                  "what was the scene like ?", "tell me about the film .")
STOCK_LINE = "yes yes yes yes ."  # what the review model says now and then instead of a review


def review_sentence(rng, stock: float = 0.08) -> str:
    """One sentence of the review model's language: a short review sentence of either polarity, or (``stock`` of
    the time) the stock line."""
    if rng.random() < stock:
        return STOCK_LINE
    adjective = rng.choice(REVIEW_POSITIVE if rng.random() < 0.5 else REVIEW_NEGATIVE)
    noun = rng.choice(REVIEW_NOUNS)
    return rng.choice([f"the {noun} was {adjective} .", f"a {adjective} {noun} .", f"the {noun} was really {adjective} ."])


def save_review_lm(path: str | os.PathLike, steps: int = 100, seed: int = 0) -> str:
    """The tiny Llama trained for ``steps`` steps (a few seconds) on prompts of :data:`REVIEW_PROMPTS` answered by one
    or two :func:`review_sentence` s: a base model with a language of its own — fluent review sentences of both
    polarities, and a stock line it says now and then — so that its log-likelihood and the variety of its samples mean
    something. Saved to ``path`` like any checkpoint."""
    import random

    import torch

    rng = random.Random(seed)
    tokenizer = tiny_tokenizer()
    model = tiny_causal_lm(tokenizer, seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        texts = [f"{rng.choice(REVIEW_PROMPTS)} {' '.join(review_sentence(rng) for _ in range(rng.randint(1, 2)))} "
                 f"{tokenizer.eos_token}" for _ in range(32)]
        batch = tokenizer(texts, return_tensors="pt", padding=True)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def preference_rows(n: int = 16, conversational: bool = False) -> list[dict]:
    """Deterministic prompt/chosen/rejected rows over the tiny vocabulary."""
    goods = ["a great movie", "a wonderful film", "the best story", "brilliant acting , very fun"]
    bads = ["a boring movie", "an awful film", "the worst plot", "terrible acting , very dull"]
    prompts = ["write a review of the movie .", "what was the film like ?", "how was the story ?"]
    rows = []
    for i in range(n):
        prompt, chosen, rejected = prompts[i % len(prompts)], goods[i % len(goods)], bads[(i + 1) % len(bads)]
        if conversational:
            rows.append(
                {
                    "prompt": [{"role": "user", "content": prompt}],
                    "chosen": [{"role": "assistant", "content": chosen}],
                    "rejected": [{"role": "assistant", "content": rejected}],
                }
            )
        else:
            rows.append({"prompt": prompt, "chosen": " " + chosen, "rejected": " " + rejected})
    return rows
