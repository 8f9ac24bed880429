"""Peak GPU memory of every shipped consumer-GPU recipe: measured vs planned (trl-plugins plan) vs the recipe's tier.

For each ``recipes/<model>/<method>/config_qlora.yaml``: build a random-weight checkpoint of the recipe's architecture
from its config.json (``trl_plugins/planning/memory_configs``; no hub) with a word-level tokenizer sized to the vocabulary (and
an image processor for the vision-language models), write synthetic rows at ``max_length`` (prompt 150 tokens,
completions filling the rest; images of the planner's default size), and run the recipe through the real train flow for
2 optimizer steps with gradient accumulation 1. The sampling trainers run one iteration (no held-out set): one
generate call of ``generation_batch_size`` sequences, scoring, 2 fine-tuning steps. By default the call reaches the
KV cache of its last decode step (150 + ``max_new_tokens`` tokens per sequence) by prefilling 150-token chunks of
a longer prompt and generating 1 token (transformers' ``prefill_chunk_size``): the same largest cache in a few
forwards instead of ``max_new_tokens`` decode steps (``--full-generation`` decodes them all). The peak is
``torch.cuda.max_memory_allocated`` from loading to the last step. The table shows the plan of the recipe as
shipped, the plan of the run as measured (the overrides above) and the measured peak.

    python benchmarks/gpu_memory.py                        # one CUDA GPU; stops starting recipes after --minutes
    python benchmarks/gpu_memory.py --only orpo,raft        # a subset (trainer names or recipe path parts)
    python benchmarks/gpu_memory.py --device cpu --tiny     # smoke test: 2-layer narrow models, GPU columns empty
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PROMPT_TOKENS = 150
LETTERS = "abcdefghijklmnopqrstuvwxyz"
# special tokens the processors and models look up, placed at the ids the configs name (or free ids at the end)
SPECIALS = ["<pad>", "<unk>", "<eos>"]
VISION_TOKENS = {
    "llava": {"<image>": "image_token_index"},
    "qwen2_5_vl": {"<|image_pad|>": "image_token_id", "<|vision_start|>": "vision_start_token_id",
                   "<|vision_end|>": "vision_end_token_id", "<|video_pad|>": "video_token_id"},
    "idefics3": {"<image>": "image_token_id"},
}
IDEFICS3_EXTRA = (["<fake_token_around_image>", "<global-img>", "<end_of_utterance>"]
                  + [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)])
QWEN_VL_IDS = {"image_token_id": 151655, "vision_start_token_id": 151652, "vision_end_token_id": 151653,
               "video_token_id": 151656}


# -- recipes --------------------------------------------------------------------------------------------------------
def shipped_recipes(only: list[str]) -> list[tuple[str, Path, int]]:
    """``(trainer name, recipe path, tier GB)`` of every consumer-GPU recipe, filtered by ``--only``."""
    out = []
    for path in sorted((REPO / "recipes").glob("*/*/config_qlora.yaml")):
        method = path.parent.name.replace("_", "-")
        tier = int(re.search(r"peft_preset:\s*q?lora-(\d+)gb", path.read_text()).group(1))
        if only and not any(o == method or o in str(path.relative_to(REPO)) for o in only):
            continue
        out.append((method, path, tier))
    return out


class SkipRecipe(Exception):
    """A recipe this machine cannot run (a missing optional package), reported in its row."""


# -- checkpoints ----------------------------------------------------------------------------------------------------
def shrink(config: dict) -> dict:
    """``--tiny``: the same architecture with 2 narrow layers, a 2,048-token vocabulary and small images."""
    config = json.loads(json.dumps(config))
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    heads, kv = text["num_attention_heads"], text.get("num_key_value_heads", text["num_attention_heads"])
    # widths stay multiples of 64: bitsandbytes' CPU 4-bit kernels need it
    text.update(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=max(2, 4 * kv // heads), head_dim=32, vocab_size=2048,
                max_position_embeddings=16384)
    if text is not config:
        config["vocab_size"] = 2048
    kind = config.get("model_type")
    if kind == "qwen2_5_vl":
        config.update(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=2048, **{k: 2040 + i for i, k in enumerate(QWEN_VL_IDS)})
        config["vision_config"].update(depth=2, hidden_size=64, intermediate_size=128, num_heads=4,
                                       out_hidden_size=128, fullatt_block_indexes=[1], window_size=56)
        config["rope_scaling"] = {"type": "mrope", "mrope_section": [4, 6, 6]}
    elif kind == "llava":
        config.update(image_token_index=2040, image_seq_length=16)
        config["vision_config"].update(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                       num_attention_heads=4, image_size=56, projection_dim=64)
    elif kind == "idefics3":
        config.update(image_token_id=2040)
        config["vision_config"].update(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                       num_attention_heads=4, image_size=84)
    return config


def _byte_symbols() -> list[str]:
    """The 256 byte-level symbols of GPT-2 style BPE (what ``pre_tokenizers.ByteLevel`` emits)."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = iter(range(256, 512))
    return [chr(b) if b in kept else chr(next(shifted)) for b in range(256)]


def word_tokenizer(specials: dict[str, int]):
    """A byte-level BPE tokenizer in which every " xy" (space + two lowercase letters) is ONE token; ``specials`` sit
    at the ids the model's config names. It is built like Qwen2's tokenizer (regex split + ByteLevel), so it
    tokenizes the same whether transformers loads it as ``TokenizersBackend`` or as the model type's own class."""
    import itertools
    import string

    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    split = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
             r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
    vocab = {**{s: i for i, s in enumerate(SPECIALS)}, **specials}
    free = (i for i in itertools.count() if i not in set(vocab.values()))
    vocab.update({symbol: next(free) for symbol in _byte_symbols()})
    merges = []
    for a in string.ascii_lowercase:
        vocab["Ġ" + a] = next(free)
        merges.append(("Ġ", a))
    for a, b in itertools.product(string.ascii_lowercase, repeat=2):
        vocab["Ġ" + a + b] = next(free)
        merges.append(("Ġ" + a, b))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, continuing_subword_prefix="", end_of_word_suffix="",
                                   fuse_unk=False, byte_fallback=False))
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(split), behavior="isolated"),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>",
                                        unk_token="<unk>")
    if specials:
        tokenizer.add_special_tokens({"additional_special_tokens": list(specials)})
    return tokenizer


def text_of(n: int, rng: random.Random) -> str:
    """``n`` tokens of text: " xy" words."""
    return "".join(" " + rng.choice(LETTERS) + rng.choice(LETTERS) for _ in range(max(n, 1)))


def build_checkpoint(config: dict, target: Path, device: str, classifier: bool = False) -> dict:
    """A random-weight checkpoint of ``config`` (+ tokenizer / processor) in ``target``; returns what the data needs."""
    import torch
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForImageTextToText,
        AutoModelForSequenceClassification,
    )

    kind = config.get("model_type")
    fields = {k: v for k, v in config.items() if k not in ("model_type", "architectures")}
    hf_config = AutoConfig.for_model(kind, **fields)
    vocab = hf_config.get_text_config().vocab_size
    specials = {}
    if kind in VISION_TOKENS:
        for token, key in VISION_TOKENS[kind].items():
            specials[token] = getattr(hf_config, key, None) or QWEN_VL_IDS.get(key)
        if kind == "idefics3":  # the processor's own tokens, on free ids at the top of the vocabulary
            free = (i for i in range(vocab - 1, 0, -1) if i not in specials.values())
            specials.update({token: next(free) for token in IDEFICS3_EXTRA})
    tokenizer = word_tokenizer(specials)
    for key in ("pad_token_id", "eos_token_id", "bos_token_id"):
        value = {"pad_token_id": 0, "eos_token_id": 2, "bos_token_id": None}[key]
        setattr(hf_config.get_text_config(), key, value)
        if hf_config.get_text_config() is not hf_config:
            setattr(hf_config, key, value)
    if classifier:
        hf_config.num_labels = 1
        cls = AutoModelForSequenceClassification
    else:
        cls = AutoModelForImageTextToText if kind in VISION_TOKENS else AutoModelForCausalLM
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = cls.from_config(hf_config, dtype=dtype)
    if not classifier:
        model.generation_config.pad_token_id, model.generation_config.eos_token_id = 0, 2
    model.save_pretrained(target)
    del model
    info = {"image": None, "image_text": "", "image_seq": 0}
    if kind in VISION_TOKENS:
        from PIL import Image

        processor, info["image"], info["image_text"] = vision_processor(kind, hf_config, tokenizer)
        processor.save_pretrained(target)
        encoded = processor(text=[info["image_text"]], images=[Image.new("RGB", info["image"])])
        info["image_seq"] = len(encoded["input_ids"][0])  # image tokens and their markers in the sequence
    else:
        tokenizer.save_pretrained(target)
    return info


def vision_processor(kind: str, config, tokenizer):
    """``(processor, image size (w, h), placeholder text)`` with images of the planner's default token count."""
    vision = config.vision_config
    if kind == "llava":
        from transformers import LlavaProcessor
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

        size = vision.image_size
        image_processor = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
        processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=vision.patch_size,
                                   vision_feature_select_strategy="default", image_token="<image>",
                                   num_additional_image_tokens=1)
        return processor, (size, size), "<image>"
    if kind == "qwen2_5_vl":
        import importlib.util

        if importlib.util.find_spec("torchvision") is None:  # Qwen2.5-VL's processor includes a video processor
            raise SkipRecipe("Qwen2.5-VL's processor needs torchvision (its video processor); pip install torchvision")
        from transformers import Qwen2_5_VLProcessor
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        unit = vision.patch_size * vision.spatial_merge_size
        image_processor = Qwen2VLImageProcessorPil(patch_size=vision.patch_size, merge_size=vision.spatial_merge_size,
                                                   temporal_patch_size=vision.temporal_patch_size)
        tokenizer.image_token, tokenizer.video_token = "<|image_pad|>", "<|video_pad|>"
        processor = Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer)
        grid = (37, 27) if unit == 28 and vision.hidden_size > 100 else (4, 3)  # planner default: 999 image tokens
        return processor, (grid[0] * unit, grid[1] * unit), "<|vision_start|><|image_pad|><|vision_end|>"
    from transformers import Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    size = vision.image_size
    image_processor = Idefics3ImageProcessorPil(size={"longest_edge": 4 * size}, max_image_size={"longest_edge": size})
    per_tile = (size // vision.patch_size) ** 2 // config.scale_factor**2
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=per_tile)
    return processor, (4 * size, 3 * size), "<image>"  # 4x3 tiles + 1 global: the planner's default


# -- data -------------------------------------------------------------------------------------------------------------
def synthetic_rows(method: str, max_length: int, prompt_tokens: int, info: dict, n: int, seed: int = 0) -> list[dict]:
    """Rows of the method's format whose prompt (+ image tokens) + completion fill ``max_length``; prompts only (and an
    ``answer``) for the sampling trainers."""
    from PIL import Image

    rng = random.Random(seed)
    budget = max_length - prompt_tokens - info["image_seq"] - 8
    rows = []
    for i in range(n):
        row = {"prompt": text_of(prompt_tokens, rng)}
        if method in SAMPLING:
            row["answer"] = "42"
        elif method == "kto-weighted":
            row.update(completion=text_of(budget, rng), label=bool(i % 2))
        else:
            row.update(chosen=text_of(budget, rng), rejected=text_of(budget, rng))
            if method == "margin-rm":
                row.update(score_chosen=float(6 + i % 4), score_rejected=float(2 + i % 3))
        if info["image"]:
            row["prompt"] = info["image_text"] + row["prompt"]
            row["image"] = Image.new("RGB", info["image"], (rng.randrange(256), 120, 60))
        rows.append(row)
    return rows


# -- one recipe -------------------------------------------------------------------------------------------------------
SAMPLING = ("raft", "rejection-sampling", "rest", "rest-em")


def run_overrides(method: str, settings, training_args, tiny: bool, device: str, fast: bool):
    """``(flags of the run, flags of its plan)``: a short, self-contained run; the plan "as run" gets the same flags
    except that a fast generation is planned as the decode it stands for."""
    args = ["--max_steps", "2", "--gradient_accumulation_steps", "1", "--eval_strategy", "no", "--save_strategy", "no",
            "--report_to", "none", "--logging_steps", "1", "--overwrite_output_dir", "true"]
    if tiny:
        args += ["--max_length", str(min(settings.max_length, 256)), "--per_device_train_batch_size",
                 str(min(settings.per_device_batch, 2))]
    if device == "cpu":  # bf16 autocast as on a GPU (the recipes' bf16 + 4-bit bf16 compute), on the CPU
        args += ["--use_cpu", "true"]
    if method not in SAMPLING:
        return args, list(args)
    batch = min(settings.generation_batch_size, 8) if tiny else settings.generation_batch_size
    k = training_args.num_generations
    args += ["--num_iterations", "1", "--heldout_prompts", "0", "--prompts_per_iteration", str(max(batch // k, 1)),
             "--generation_batch_size", str(batch)]
    if method == "rest":
        args += ["--improve_steps", "1", "--improve_thresholds", "0.7"]
    new_tokens = 16 if tiny else settings.max_new_tokens
    planned = args + ["--max_new_tokens", str(new_tokens)]
    # fast: prompts of prompt + new - 1 tokens prefilled in prompt-sized chunks, then 1 new token: the KV cache of
    # the last decode step (batch x (prompt + new) tokens) in a few forwards instead of `new` decode steps
    return args + ["--max_new_tokens", str(1 if fast else new_tokens)], planned


def _set_prefill_chunk(path: Path, size: int) -> None:
    from transformers import GenerationConfig

    config = GenerationConfig.from_pretrained(path)
    config.prefill_chunk_size = size
    config.save_pretrained(path)


def _flag(argv: list[str], name: str, default):
    return type(default)(argv[argv.index(name) + 1]) if name in argv else default


def checkpoint(model_id: str, work: Path, device: str, tiny: bool, built: dict, classifier: bool = False):
    """``(path, info)`` of the random-weight checkpoint of ``model_id``, built once per run of this script."""
    from trl_plugins.planning.inputs import load_model_config

    if model_id not in built:
        config = load_model_config(model_id)  # as the file has it; transformers fills the defaults
        path = work / f"model-{len(built)}"
        built[model_id] = (path, build_checkpoint(shrink(config) if tiny else config, path, device, classifier))
    return built[model_id]


def measure(method: str, recipe: Path, tier: int, work: Path, device: str, tiny: bool, built: dict,
            fast: bool = True) -> dict:
    from trl_plugins.cli.plan import plan_run

    name = str(recipe.relative_to(REPO / "recipes"))
    shipped, shipped_run = plan_run(method, ["--config", str(recipe), "--gpu", str(tier)])
    try:
        return _measure(method, recipe, tier, work, device, tiny, built, name, shipped, shipped_run, fast)
    except SkipRecipe as exc:
        return {"recipe": name, "tier": tier, "planned": shipped["peak_gib"], "planned_as_run": float("nan"),
                "measured": None, "status": f"skipped: {exc}", "seconds": 0.0}


def _measure(method, recipe, tier, work, device, tiny, built, name, shipped, shipped_run, fast) -> dict:
    import torch

    from trl_plugins.cli.plan import plan_run
    from trl_plugins.planning.inputs import as_on_a_gpu
    from trl_plugins.registry import get_registry
    from trl_plugins.run import flow
    from trl_plugins.run.recipe import StrictParser

    spec = get_registry().trainer(method)
    with as_on_a_gpu():
        (_, training_args, model_args, _), _ = StrictParser(spec.load()[1]).parse([], recipe)
    overrides, planned = run_overrides(method, shipped_run["settings"], training_args, tiny, device, fast)
    path, info = checkpoint(model_args.model_name_or_path, work, device, tiny, built)
    extra = ["--model_name_or_path", str(path), "--output_dir", str(work / "out" / method)]
    if method in SAMPLING and method != "rest-em":
        rm_path, _ = checkpoint(training_args.reward_funcs[0], work, device, tiny, built, classifier=True)
        extra += ["--reward_funcs", str(rm_path)]
    max_length = _flag(overrides, "--max_length", shipped_run["settings"].max_length)
    prompt_tokens = min(PROMPT_TOKENS, max_length // 4)
    as_run, _ = plan_run(method, ["--config", str(recipe), *planned, *extra, "--prompt_length", str(prompt_tokens),
                                  "--gpu", str(tier)])
    if method in SAMPLING and fast:  # the generated tokens but one become prompt tokens, prefilled in chunks
        new_tokens = _flag(planned, "--max_new_tokens", 1)
        _set_prefill_chunk(path, prompt_tokens)
        prompt_tokens += new_tokens - 1
    data_dir = work / "data" / name.replace("/", "--")
    from datasets import Dataset, DatasetDict

    rows = synthetic_rows(method, max_length, prompt_tokens, info, n=64)
    DatasetDict(train=Dataset.from_list(rows), test=Dataset.from_list(rows[:8])).save_to_disk(str(data_dir))
    extra += ["--dataset_name", str(data_dir)]
    row = {"recipe": name, "tier": tier, "planned": shipped["peak_gib"], "planned_as_run": as_run["peak_gib"],
           "measured": None, "status": "ok"}
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer = run = None
    try:
        run = flow.prepare_run(spec, ["--config", str(recipe), *overrides, *extra], check_output=False)
        trainer = flow.build_trainer(run)
        trainer.train()
        if device == "cuda":
            row["measured"] = torch.cuda.max_memory_allocated() / 1024**3
    except Exception as exc:  # noqa: BLE001 - one failing recipe must not hide the other rows
        first = str(exc).splitlines()[0][:160] if str(exc) else ""
        row["status"] = f"failed: {type(exc).__name__}: {first}"
    finally:
        del trainer, run
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
    row["seconds"] = time.perf_counter() - start
    return row


def print_rows(rows: list[dict], device: str) -> None:
    header = ("recipe", "tier", "planned (recipe)", "planned (as run)", "measured (as run)", "measured/planned",
              "measured/tier", "s", "status")
    table = []
    for r in rows:
        measured = r["measured"]
        table.append((r["recipe"], f"{r['tier']} GB", f"{r['planned']:.2f} GiB ({r['planned'] / r['tier']:.0%})",
                      f"{r['planned_as_run']:.3f} GiB",
                      f"{measured:.2f} GiB" if measured is not None else "—",
                      f"{measured / r['planned_as_run']:.2f}" if measured is not None else "—",
                      f"{measured / r['tier']:.0%}" if measured is not None else "—",
                      f"{r.get('seconds', 0):.0f}", r["status"]))
    widths = [max(len(str(t[i])) for t in table + [header]) for i in range(len(header))]
    print(f"\npeak memory per recipe ({device}; measured = torch.cuda.max_memory_allocated, GiB = 2^30 bytes)")
    for t in [header] + table:
        print("  ".join(str(c).ljust(w) for c, w in zip(t, widths)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--tiny", action="store_true", help="2-layer narrow models, short rows (a smoke test)")
    parser.add_argument("--only", default="", help="comma-separated trainer names or recipe path parts")
    parser.add_argument("--minutes", type=float, default=7.5, help="start no new recipe after this many minutes")
    parser.add_argument("--full-generation", action="store_true",
                        help="sampling recipes: decode every new token (slow: ~75 s per 8B generate call) instead of "
                        "reaching the same largest KV cache by chunked prefill")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA GPU here; use --device cpu --tiny for the smoke test", file=sys.stderr)
        return 2
    recipes = shipped_recipes([o for o in args.only.split(",") if o])
    recipes.sort(key=lambda r: (r[0] in SAMPLING, r[1]))  # the sampling recipes (generate calls) last
    rows, built, start = [], {}, time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-memory-") as tmp:
        for method, recipe, tier in recipes:
            if time.perf_counter() - start > 60 * args.minutes:
                rows.append({"recipe": str(recipe.relative_to(REPO / "recipes")), "tier": tier, "planned": 0.0,
                             "planned_as_run": 0.0, "measured": None, "status": "not run (time budget; --only)"})
                continue
            rows.append(measure(method, recipe, tier, Path(tmp), args.device, args.tiny, built,
                                not args.full_generation))
            print(f"{rows[-1]['recipe']}: {rows[-1]['status']} ({rows[-1]['seconds']:.0f} s)", flush=True)
    print_rows(rows, args.device if not args.tiny else f"{args.device}, --tiny")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0 if all(not r["status"].startswith("failed") for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
