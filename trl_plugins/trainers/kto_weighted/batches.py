"""kto-weighted's batches: the seeded order that gives every per-device batch both classes (``mix_batches``), and the
collator wrapper that carries per-example weights (``weight_column``). Docs: docs/methods/kto_weighted.md."""

from __future__ import annotations

import math
import random

import torch

EXAMPLE_WEIGHT_KEY = "kto_example_weight"  # batch key of the per-example weights (never passed to the model)


def mixed_batch_order(labels, batch_size: int, seed: int) -> tuple[list[int], int, int]:
    """A seeded order of ``range(len(labels))`` whose consecutive chunks of ``batch_size`` rows hold both classes.

    The rarer class is spread over the chunks in proportion to their sizes (cumulative rounding), so a full chunk
    gets at least one rare row whenever there are at least as many rare rows as chunks; rows are shuffled inside
    each class and inside each chunk. Returns ``(order, mixed_chunks, chunks)``.
    """
    labels = [bool(x) for x in labels]
    n = len(labels)
    rng = random.Random(seed)
    desirable = [i for i, label in enumerate(labels) if label]
    undesirable = [i for i, label in enumerate(labels) if not label]
    rng.shuffle(desirable)
    rng.shuffle(undesirable)
    rare, common = (desirable, undesirable) if len(desirable) <= len(undesirable) else (undesirable, desirable)
    sizes = [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])
    order: list[int] = []
    seen = taken = mixed = 0
    for size in sizes:
        seen += size
        m = min(size, max(0, math.floor(len(rare) * seen / n + 0.5) - taken))
        chunk = rare[taken : taken + m] + common[len(order) - taken : len(order) - taken + size - m]
        taken += m
        mixed += 0 < m < size
        rng.shuffle(chunk)
        order += chunk
    assert sorted(order) == list(range(n)), "mixed_batch_order lost rows"
    return order, mixed, len(sizes)


class ExampleWeightsCollator:
    """Wraps a collator: adds the ``weight_column`` values of the examples as a float tensor under
    ``EXAMPLE_WEIGHT_KEY`` (when the examples have that column; the evaluation set may not)."""

    def __init__(self, collator, column: str):
        self.collator = collator
        self.column = column

    def __call__(self, examples):
        batch = self.collator(examples)
        if examples and self.column in examples[0]:
            batch[EXAMPLE_WEIGHT_KEY] = torch.tensor([float(e[self.column]) for e in examples], dtype=torch.float32)
        return batch


