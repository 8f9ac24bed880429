"""The length check (trl_plugins/checks/lengths.py) on 20,000 rows vs TRL's own dataset preparation of the same rows.

The check runs before the model loads, on every `train` and `check-data`, so it must cost no more than the
tokenization TRL does anyway. Rows: ~100-token prompts, ~200-token chosen/rejected (prompt + completion ~300
tokens), tokenizer of the embedded SmolLM2-135M-Instruct. For each trainer the check's wall time is printed next
to its TRL parent's ``_prepare_dataset`` (``dataset_num_proc`` unset, as the recipes leave it).
Target: check <= 1.0 x TRL's preparation.

    python benchmarks/length_check.py [--rows 20000] [--conversational]
"""

from __future__ import annotations

import argparse
import random
import time
from types import SimpleNamespace

from common import print_table

WORDS = ("the movie was a long and careful study of people who live in a small town by the sea where nothing "
         "much happens until one summer a stranger arrives with a story that nobody believes at first but which "
         "slowly changes how everyone sees their neighbours their work and their own past").split()


def text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def make_rows(n: int, conversational: bool, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        prompt, chosen, rejected = text(rng, rng.randint(60, 110)), text(rng, rng.randint(120, 230)), \
            text(rng, rng.randint(120, 230))
        if conversational:
            rows.append({"prompt": [{"role": "user", "content": prompt}],
                         "chosen": [{"role": "assistant", "content": chosen}],
                         "rejected": [{"role": "assistant", "content": rejected}]})
        else:
            rows.append({"prompt": prompt, "chosen": " " + chosen, "rejected": " " + rejected})
    return rows


def trl_prepare(name: str, dataset, tokenizer, config):
    """TRL's own preparation on a bare trainer object (only the attributes ``_prepare_dataset`` reads)."""
    from trl import DPOTrainer, KTOTrainer, RewardTrainer

    cls = {"orpo": DPOTrainer, "kto-weighted": KTOTrainer, "margin-rm": RewardTrainer}[name]
    trainer = cls.__new__(cls)
    trainer._tokenizer = tokenizer
    trainer.calculate_KL, trainer.desirable_weight, trainer.undesirable_weight = True, 1.0, 1.0
    return cls._prepare_dataset(trainer, dataset, tokenizer, config, "train")


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--conversational", action="store_true")
    parser.add_argument("--trainers", default="orpo,margin-rm,kto-weighted,raft")
    args = parser.parse_args()

    from datasets import Dataset, disable_caching

    from trl_plugins.checks.lengths import length_report
    from trl_plugins.models.loading import load_processing_class
    from trl_plugins.registry import get_registry

    def method_of(name):
        spec = get_registry().trainer(name)
        return spec.load_method()(spec)

    disable_caching()  # TRL's map must tokenize, not read a cache of an earlier run
    tokenizer = load_processing_class(SimpleNamespace(model_name_or_path="embedded:smollm2-135m-instruct",
                                                      model_revision=None))
    dataset = Dataset.from_list(make_rows(args.rows, args.conversational))
    config = SimpleNamespace(max_length=1024, truncation_mode="keep_start", dataset_num_proc=None, seed=0,
                             per_device_train_batch_size=8, max_new_tokens=512)
    table, lines = [], []
    names = args.trainers.split(",")
    for name in [n for n in names if n != "raft"]:
        ours = timed(lambda: lines.append(length_report(name, config, dataset, tokenizer, method_of(name)).line()))
        theirs = timed(lambda: trl_prepare(name, dataset, tokenizer, config))
        for i, kind in enumerate(("wall", "CPU")):
            table.append((f"{name}: {kind} seconds, {args.rows:,} rows", f"{theirs[i]:.2f}", f"{ours[i]:.2f}",
                          f"{ours[i] / theirs[i]:.3f}"))
    if "raft" in names:
        prompts = dataset.select_columns(["prompt"])
        ours = timed(lambda: lines.append(length_report("raft", config, prompts, tokenizer, method_of("raft"), model_context=8192).line()))
        table.append((f"raft (prompts only): wall/CPU seconds, {args.rows:,} rows", "-",
                      f"{ours[0]:.2f}/{ours[1]:.2f}", "-"))
    print_table(f"length check vs TRL's _prepare_dataset ({'conversational' if args.conversational else 'standard'}"
                f" rows, SmolLM2 tokenizer)", table,
                header=("metric", "TRL _prepare_dataset", "trl-plugins check", "ratio (ours / TRL)"))
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
