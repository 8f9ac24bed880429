"""Image helpers for vision-language trainers (no torchvision: PIL + numpy), and their input checks.

- :func:`corrupt_image`: the corrupted image of mDPO's conditional term (``crop`` = RandomResizedCrop, ``blank``,
  ``noise``), seeded through a ``numpy`` generator.
- :func:`open_image`: a dataset image value (PIL image, file path string, ``{"bytes", "path"}``) as RGB.
- :func:`check_vision_data`: the ``check_data`` of vision preference trainers (images present and readable).
- :func:`check_vision_model`: checks that read the model's config and processor files only, never its weights: the
  model is vision-language, and standard-format prompts carry the model's image placeholder once per image.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

CORRUPTIONS = ("crop", "blank", "noise")
VISION_MODULES = ("vision_tower", "visual", "vision_model")  # LLaVA/Gemma3, Qwen2-VL/2.5-VL, Idefics3/SmolVLM
IMAGE_COLUMNS = ("image", "images")


# --------------------------------------------------------------------------------------------------------------------
# corruption
# --------------------------------------------------------------------------------------------------------------------
def crop_box(
    width: int, height: int, scale: tuple[float, float], rng: np.random.Generator,
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """torchvision's ``RandomResizedCrop.get_params``: a box ``(left, top, w, h)`` covering a ``scale`` fraction of
    the area with aspect ratio in ``ratio`` (10 tries, then a centre crop of the whole image)."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        w, h = int(round(height * ratio[1])), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def corrupt_image(
    image: Image.Image, kind: str = "crop", rng: np.random.Generator | None = None,
    crop_scale: tuple[float, float] = (0.01, 0.2),
) -> Image.Image:
    """The corrupted image ``m'`` of mDPO, same size and mode as ``image``.

    ``crop``: keep a random ``crop_scale`` fraction of the area, resized back (bilinear) — the paper's choice;
    ``blank``: an all-black image; ``noise``: uniform random pixels."""
    rng = rng if rng is not None else np.random.default_rng()
    width, height = image.size
    if kind == "crop":
        left, top, w, h = crop_box(width, height, crop_scale, rng)
        return image.crop((left, top, left + w, top + h)).resize((width, height), Image.BILINEAR)
    if kind == "blank":
        return Image.new(image.mode, image.size)
    if kind == "noise":
        channels = len(image.getbands())
        pixels = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
        return Image.fromarray(pixels[..., 0] if channels == 1 else pixels).convert(image.mode)
    raise ValueError(f"unknown corruption {kind!r} (known: {', '.join(CORRUPTIONS)})")


def open_image(value) -> Image.Image:
    """A dataset image value (PIL image, file path, or ``{"bytes", "path"}``) as an RGB PIL image."""
    if isinstance(value, Image.Image):
        return value if value.mode == "RGB" else value.convert("RGB")
    if isinstance(value, dict) and (value.get("bytes") or value.get("path")):
        value = io.BytesIO(value["bytes"]) if value.get("bytes") else value["path"]
    if isinstance(value, (str, os.PathLike, io.BytesIO)):
        with Image.open(value) as image:
            return image.convert("RGB")
    raise TypeError(f"cannot read an image from {type(value).__name__}")


# --------------------------------------------------------------------------------------------------------------------
# data checks (before any model loads)
# --------------------------------------------------------------------------------------------------------------------
def _undecoded(dataset, column: str):
    """The dataset with ``column`` cast to undecoded images (``{"bytes", "path"}``) when it is an Image feature."""
    import datasets

    feature = (dataset.features or {}).get(column)
    if isinstance(feature, datasets.Image):
        return dataset.cast_column(column, datasets.Image(decode=False))
    if isinstance(feature, (datasets.Sequence, datasets.List)) and isinstance(feature.feature, datasets.Image):
        return dataset.cast_column(column, datasets.List(datasets.Image(decode=False)))
    return dataset


def _image_problem(value) -> str | None:
    if isinstance(value, Image.Image):
        return None
    if isinstance(value, dict) and (value.get("bytes") or value.get("path")):
        source = io.BytesIO(value["bytes"]) if value.get("bytes") else value["path"]
    elif isinstance(value, str):
        source = value
    else:
        return f"expected an image (PIL image, file path or {{bytes, path}}), got {type(value).__name__}"
    if isinstance(source, str) and not Path(source).is_file():
        return "image file not found"
    try:
        with Image.open(source) as image:
            image.verify()
    except Exception:  # noqa: BLE001 - any decoder failure means the same thing to the user
        return "unreadable image"
    return None


def image_counts(dataset) -> tuple[str | None, list[int]]:
    """``(image column, number of images per row)``; ``(None, [])`` when the dataset has no image column."""
    from ..checks.data import iter_rows

    column = next((c for c in IMAGE_COLUMNS if c in (dataset.column_names or [])), None)
    if column is None:
        return None, []
    counts = []
    for _, row in iter_rows(_undecoded(dataset, column), [column]):
        value = row[column]
        counts.append(0 if value is None else len(value) if isinstance(value, list) else 1)
    return column, counts


def check_vision_data(dataset, split: str, config) -> list[str]:
    """Every row has at least one image and every image opens (file paths as strings are accepted)."""
    from ..checks.data import iter_rows
    from ..checks.problems import RowProblems

    column = next((c for c in IMAGE_COLUMNS if c in (dataset.column_names or [])), None)
    if column is None:
        return [f"no 'image' or 'images' column (found: {', '.join(dataset.column_names or [])}); "
                "a vision preference trainer scores every answer given its image"]
    problems = RowProblems()
    for row_index, row in iter_rows(_undecoded(dataset, column), [column]):
        value = row[column]
        values = value if isinstance(value, list) else [] if value is None else [value]
        if not values:
            problems.add(column, "row without an image", row_index)
        for item in values:
            problem = _image_problem(item)
            if problem:
                problems.add(column, problem, row_index)
    return problems.lines()


def _model_files(name: str) -> tuple[dict | None, str | None]:
    """``(config dict, image placeholder)`` of a model from its files only (no weights); ``None`` where unknown."""
    import json

    from .loading import EMBEDDED_PREFIX, embedded_model_info

    if name.startswith(EMBEDDED_PREFIX):
        info = embedded_model_info(name.removeprefix(EMBEDDED_PREFIX))
        return {"model_type": info["model_type"], "vision": info["kind"] == "vision-language"}, info.get("image_token")
    path = Path(os.path.expanduser(name))
    config = None
    try:
        if path.is_dir():
            config = json.loads((path / "config.json").read_text())
        else:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(name).to_dict()
    except Exception:  # noqa: BLE001 - not readable offline: the loader reports it later
        return None, None
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    vision = "vision_config" in config or config.get("model_type") in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
    config = {"model_type": config.get("model_type"), "vision": vision}
    if not vision:
        return config, None
    try:
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(name)  # tokenizer + image processor files, no weights
    except Exception:  # noqa: BLE001
        return config, None
    token = getattr(processor, "image_token", None) or getattr(getattr(processor, "tokenizer", None), "image_token", None)
    return config, token


def check_vision_model(run) -> None:
    """Run-level checks of a vision preference trainer, before the model loads: a vision-language model, and
    standard (plain text) prompts with exactly one image placeholder of that model per image."""
    from ..checks.data import iter_rows
    from ..checks.problems import rows_text
    from ..errors import ConfigError, DataError

    name = run.model_args.model_name_or_path
    config, token = _model_files(name)
    if config is not None and not config["vision"]:
        raise ConfigError(
            f"model {name!r} is text-only (model_type {config['model_type']!r}); {run.spec.name!r} needs a "
            "vision-language model (e.g. llava-hf/llava-1.5-7b-hf, Qwen/Qwen2.5-VL-3B-Instruct, "
            "embedded:smollm2-tiny-llava)"
        )
    if not token:
        return
    problems = []
    source = getattr(run.datasets, "source_name", run.script_args.dataset_name)
    splits = [run.script_args.dataset_train_split]
    if run.eval_dataset is not None:
        splits.append(run.script_args.dataset_test_split)
    for split in splits:
        dataset = run.datasets[split]
        _, counts = image_counts(dataset)
        bad = []
        for row_index, row in iter_rows(dataset, ["prompt"]):
            prompt = row["prompt"]
            if isinstance(prompt, str) and prompt.count(token) != counts[row_index]:
                bad.append((row_index, prompt.count(token), counts[row_index]))
        if bad:
            _, found, expected = bad[0]
            problems.append(
                f"dataset {source!r} split {split!r}, column 'prompt': the model's image placeholder {token!r} must "
                f"appear once per image (row {bad[0][0]}: {found} for {expected} image{'s' if expected != 1 else ''}) "
                f"in {rows_text([r for r, _, _ in bad])}; or use conversational prompts, where it is added"
            )
    if problems:
        raise DataError(problems)
