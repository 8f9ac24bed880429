"""``embedded:shapes-preference``: generated images of one coloured shape, with preference pairs about them.

Each image (PIL, drawn in code, seeded) holds one shape (circle, square, triangle, diamond) of one colour (red, green,
blue, yellow, purple, orange) at a random position and size on a light background. Each row asks either the colour
or the shape; ``chosen`` is the right one-word answer, ``rejected`` a wrong one. The text alone cannot tell them
apart (every answer is equally likely across the data), so a model can only prefer ``chosen`` by looking at the image.

Options (``dataset_config: "key=value,..."``): ``n_train`` (600), ``n_test`` (100, a held-out split of new images),
``size`` (64 px), ``seed`` (0), ``conversational`` (true: chat messages, the image placeholder is added by the
processor's chat template; false: plain text prompts starting with ``image_token``), ``image_token`` ("<image>").
"""

from __future__ import annotations

COLORS = {
    "red": (215, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 205, 30),
    "purple": (140, 60, 180),
    "orange": (240, 130, 20),
}
SHAPES = ("circle", "square", "triangle", "diamond")
QUESTIONS = {
    "color": "What color is the shape?",
    "shape": "What shape is it?",
}


def draw_shape(color: str, shape: str, size: int, rng):
    """A ``size`` x ``size`` RGB image with one ``shape`` of ``color`` at a random place and scale."""
    from PIL import Image, ImageDraw

    background = tuple(int(v) for v in rng.integers(225, 256, size=3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    extent = int(size * rng.uniform(0.35, 0.6))
    left = int(rng.integers(2, size - extent - 1))
    top = int(rng.integers(2, size - extent - 1))
    box = (left, top, left + extent, top + extent)
    fill = COLORS[color]
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(left + extent // 2, top), (left, top + extent), (left + extent, top + extent)], fill=fill)
    else:  # diamond
        mid_x, mid_y = left + extent // 2, top + extent // 2
        draw.polygon([(mid_x, top), (left + extent, mid_y), (mid_x, top + extent), (left, mid_y)], fill=fill)
    return image


def _rows(n: int, size: int, rng, conversational: bool, image_token: str) -> dict:
    columns = {"image": [], "prompt": [], "chosen": [], "rejected": [], "question": []}
    colors = list(COLORS)
    for i in range(n):
        color = colors[int(rng.integers(len(colors)))]
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        asked = "color" if i % 2 == 0 else "shape"
        options = colors if asked == "color" else list(SHAPES)
        right = color if asked == "color" else shape
        wrong = [o for o in options if o != right][int(rng.integers(len(options) - 1))]
        question = QUESTIONS[asked]
        columns["image"].append(draw_shape(color, shape, size, rng))
        if conversational:
            columns["prompt"].append([{"role": "user", "content": question}])
            columns["chosen"].append([{"role": "assistant", "content": right.capitalize() + "."}])
            columns["rejected"].append([{"role": "assistant", "content": wrong.capitalize() + "."}])
        else:
            columns["prompt"].append(f"{image_token}\n{question}\nAnswer:")
            columns["chosen"].append(f" {right.capitalize()}.")
            columns["rejected"].append(f" {wrong.capitalize()}.")
        columns["question"].append(asked)
    return columns


def shapes_preference(
    n_train: int = 600,
    n_test: int = 100,
    size: int = 64,
    seed: int = 0,
    conversational: bool = True,
    image_token: str = "<image>",
):
    import datasets
    import numpy as np

    features = {"image": datasets.Image()}
    splits = {}
    for split, n, offset in (("train", n_train, 0), ("test", n_test, 1)):
        rng = np.random.default_rng([seed, offset])
        columns = _rows(int(n), int(size), rng, bool(conversational), str(image_token))
        dataset = datasets.Dataset.from_dict(columns)
        splits[split] = dataset.cast_column("image", features["image"])
    return datasets.DatasetDict(splits)
