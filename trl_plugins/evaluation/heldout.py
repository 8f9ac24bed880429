"""Held-out evaluation helpers shared by the demos and the real-model tests.

- :func:`completion_logps`: log-probability of completions given prompts (standard or conversational), batched.
- :func:`preference_accuracy`: fraction of held-out pairs where the chosen completion is more likely than the
  rejected one (per-token average log-prob, the quantity ORPO's odds are built on; sums are length-biased).
- :func:`image_conditional_margin`: mDPO's held-out check, ``logp(chosen | image) - logp(chosen | corrupted image)``.

Sampling completions is :func:`trl_plugins.sampling.generation.generate`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..formats import is_conversational


def encode_pair(tokenizer, prompt, completion) -> tuple[list[int], int]:
    """Token ids of prompt + completion and the index where the completion starts (as TRL tokenizes them)."""
    if is_conversational(prompt):
        prompt_str = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
        full_str = tokenizer.apply_chat_template(prompt + completion, tokenize=False)
        prompt_ids = tokenizer(prompt_str, add_special_tokens=False)["input_ids"]
        full_ids = tokenizer(full_str, add_special_tokens=False)["input_ids"]
    else:
        prompt_ids = tokenizer(prompt)["input_ids"]
        full_ids = tokenizer(prompt + completion + (tokenizer.eos_token or ""))["input_ids"]
    start = 0
    while start < min(len(prompt_ids), len(full_ids)) and prompt_ids[start] == full_ids[start]:
        start += 1
    return full_ids, start


@torch.no_grad()
def completion_logps(
    model,
    tokenizer,
    prompts: Sequence,
    completions: Sequence,
    batch_size: int = 16,
    average: bool = True,
    max_length: int | None = None,
) -> torch.Tensor:
    """Per-example log P(completion | prompt): token average (``average=True``) or sum, as a float tensor [N]."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    results = []
    for i in range(0, len(prompts), batch_size):
        encoded = [encode_pair(tokenizer, p, c) for p, c in zip(prompts[i : i + batch_size], completions[i : i + batch_size])]
        if max_length is not None:
            encoded = [(ids[:max_length], start) for ids, start in encoded]
        width = max(len(ids) for ids, _ in encoded)
        input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)
        attention = torch.zeros_like(input_ids)
        completion = torch.zeros_like(input_ids)
        for row, (ids, start) in enumerate(encoded):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention[row, : len(ids)] = 1
            completion[row, start : len(ids)] = 1
        logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits[:, :-1].float()
        targets = input_ids[:, 1:].to(device)
        mask = completion[:, 1:].to(device).float()
        token_logps = torch.gather(logits.log_softmax(-1), 2, targets.unsqueeze(-1)).squeeze(-1) * mask
        total = token_logps.sum(1)
        results.append((total / mask.sum(1).clamp(min=1) if average else total).cpu())
    if was_training:
        model.train()
    return torch.cat(results) if results else torch.zeros(0)


def preference_accuracy(model, tokenizer, dataset, batch_size: int = 16, max_length: int | None = None) -> dict:
    """``accuracy``: fraction of pairs with avg logp(chosen) > avg logp(rejected); ``margin``: mean difference;
    ``margins``: the difference of every pair (for standard errors and paired intervals)."""
    prompts = list(dataset["prompt"])
    chosen = completion_logps(model, tokenizer, prompts, list(dataset["chosen"]), batch_size, True, max_length)
    rejected = completion_logps(model, tokenizer, prompts, list(dataset["rejected"]), batch_size, True, max_length)
    return {
        "accuracy": (chosen > rejected).float().mean().item(),
        "margin": (chosen - rejected).mean().item(),
        "margins": (chosen - rejected).tolist(),
        "n": len(prompts),
    }


@torch.no_grad()
def image_conditional_margin(model, processor, dataset, corruption: str = "crop", crop_scale=(0.01, 0.2),
                             seed: int = 0, batch_size: int = 8, max_length: int | None = None) -> dict:
    """Held-out ``logp(chosen | image) - logp(chosen | corrupted image)`` (summed over the completion tokens), and
    the fraction of rows where it is positive; also ``logp(chosen) - logp(rejected)`` given the image.

    The corruptions are seeded, so calling it before and after training scores the same corrupted images."""
    from trl.trainer.utils import selective_log_softmax

    from ..trainers.mdpo.collator import DataCollatorForMDPO

    collator = DataCollatorForMDPO(processor=processor, max_length=max_length, corruption=corruption,
                                   crop_scale=tuple(crop_scale), seed=seed)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    columns = [c for c in ("prompt", "chosen", "rejected", "image", "images") if c in dataset.column_names]
    dataset = dataset.select_columns(columns)
    margins, preferences = [], []
    for start in range(0, len(dataset), batch_size):
        batch = collator([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        mask = batch.pop("completion_mask")
        batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
        logits = model(**batch, use_cache=False).logits[:, :-1].float()
        targets = batch["input_ids"][:, 1:]
        token_logps = selective_log_softmax(logits, targets) * mask[:, 1:].to(device)
        chosen, rejected, corrupted = token_logps.sum(1).chunk(3)
        margins.append((chosen - corrupted).cpu())
        preferences.append((chosen - rejected).cpu())
    if was_training:
        model.train()
    margin, preference = torch.cat(margins), torch.cat(preferences)
    return {
        "image_margin": margin.mean().item(),
        "image_accuracy": (margin > 0).float().mean().item(),
        "preference_margin": preference.mean().item(),
        "preference_accuracy": (preference > 0).float().mean().item(),
        "image_margins": margin.tolist(),
        "preference_margins": preference.tolist(),
        "n": len(margin),
    }
