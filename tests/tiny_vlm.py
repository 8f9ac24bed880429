"""A tiny LLaVA-style vision-language model and processor built in code (no hub), for fast mDPO tests.

Language model: the 2-layer random Llama of :mod:`tiny` over its word-level tokenizer (+ ``<image>``); vision tower:
a 2-layer random SigLIP on 32x32 images with 8x8 patches (16 image tokens); processor: ``LlavaProcessor`` with a
SigLIP (PIL) image processor configured by hand.
"""

from __future__ import annotations

import os

from trl_plugins.embedded.tiny_llava import IMAGE_TOKEN, llava_from_text_model

from tiny import tiny_causal_lm, tiny_tokenizer

TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                   image_size=32, patch_size=8)


def tiny_vlm(seed: int = 0):
    """``(LlavaForConditionalGeneration, LlavaProcessor)``, about 70k parameters."""
    tokenizer = tiny_tokenizer()
    return llava_from_text_model(tiny_causal_lm(tokenizer, seed=seed), tokenizer, TINY_VISION, seed=seed)


def save_tiny_vlm(path: str | os.PathLike, seed: int = 0) -> str:
    model, processor = tiny_vlm(seed)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)


COLORS = {"red": (220, 30, 30), "green": (30, 180, 30), "blue": (30, 60, 220)}
SHAPES = ("square", "circle", "triangle")


def shape_image(color: str, shape: str, size: int = 32):
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    box = (size // 4, size // 4, 3 * size // 4, 3 * size // 4)
    if shape == "square":
        draw.rectangle(box, fill=COLORS[color])
    elif shape == "circle":
        draw.ellipse(box, fill=COLORS[color])
    else:
        draw.polygon([(size // 2, size // 4), (size // 4, 3 * size // 4), (3 * size // 4, 3 * size // 4)],
                     fill=COLORS[color])
    return image


def vision_rows(n: int = 8, image_as: str = "pil", directory=None) -> list[dict]:
    """Rows over the tiny vocabulary: ``<image> what color ?`` -> chosen the right color, rejected a wrong one.

    ``image_as``: ``pil`` (a PIL image in ``image``), ``path`` (a PNG path string, needs ``directory``)."""
    names = list(COLORS)
    rows = []
    for i in range(n):
        color, shape = names[i % 3], SHAPES[(i // 3) % 3]
        image = shape_image(color, shape)
        if image_as == "path":
            path = os.path.join(directory, f"img{i}.png")
            image.save(path)
            image = path
        rows.append({"image": image, "prompt": f"{IMAGE_TOKEN} what color is the shape ?",
                     "chosen": f" {color}", "rejected": f" {names[(i + 1) % 3]}"})
    return rows
