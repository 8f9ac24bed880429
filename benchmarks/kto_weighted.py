"""kto-weighted vs TRL's KTOTrainer: train-step time side by side in one run.

Same model (SmolLM2-135M-Instruct, LoRA r16 on all linear layers; the reference is the base with the adapter off),
same 1:4 imbalanced IMDB thumbs data, same config (batch 8, max_length 96, fp32 on CPU). TRL runs with the weights
our ``auto`` computes (λ_D = 4), ours with ``weighting: auto`` and ``mix_batches`` (the defaults), so both optimise
the same loss; the only differences are our loss path, the extra metrics and the batch order. Timed runs alternate
between the two trainers; the ratio uses the median step time over all rounds. Target: step time <= 1.03 x TRL.

    python benchmarks/kto_weighted.py [--steps 12] [--rounds 2]
"""

from __future__ import annotations

import argparse
import warnings

from common import median_step, print_table, step_timer, time_trainers


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--model", default="embedded:smollm2-135m-instruct")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import KTOConfig, KTOTrainer

    from trl_plugins.embedded import load_embedded_dataset
    from trl_plugins.models.loading import resolve_model_path
    from trl_plugins.trainers.kto_weighted.trainer import KTOWeightedConfig, KTOWeightedTrainer

    path = resolve_model_path(args.model)
    n_train = -(-args.steps * args.batch // 5) * 5  # a multiple of 5, so 1:4 gives exact counts and λ_D = 4
    data = load_embedded_dataset("imdb-kto", f"ratio=1:4,n_train={n_train},max_words=32,prompt_words=6")["train"]
    common = dict(
        per_device_train_batch_size=args.batch, max_length=96, beta=0.1, learning_rate=1e-3, max_steps=args.steps,
        bf16=False, gradient_checkpointing=False, use_cpu=True, report_to="none", save_strategy="no",
        logging_steps=1000, seed=0, disable_tqdm=True,
    )
    lora = dict(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")

    def build(which):
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        timer = step_timer()
        if which == "trl":
            config = KTOConfig(output_dir="/tmp/bench-kto-trl", desirable_weight=4.0, **common)
            trainer = KTOTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer,
                                 peft_config=LoraConfig(**lora), callbacks=[timer])
        else:
            config = KTOWeightedConfig(output_dir="/tmp/bench-kto-ours", **common)
            trainer = KTOWeightedTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer,
                                         peft_config=LoraConfig(**lora), callbacks=[timer])
            assert trainer.desirable_weight == 4.0 and trainer.undesirable_weight == 1.0
        return trainer, timer

    times, last = time_trainers(build, ("trl", "ours"), args.rounds, skip=2)
    held = {name: info["bytes"] for name, info in last.items()}
    t_trl, t_ours = median_step(times["trl"], 0), median_step(times["ours"], 0)
    print_table(
        f"KTO on {args.model}, LoRA r16, batch {args.batch}, max_length 96, 1:4 IMDB, "
        f"{args.steps} steps x {args.rounds} rounds (CPU)",
        [
            ("median step time (s)", f"{t_trl:.3f}", f"{t_ours:.3f}", f"{t_ours / t_trl:.3f}  (target <= 1.03)"),
            ("parameter bytes held (MB)", f"{held['trl'] / 2**20:.1f}", f"{held['ours'] / 2**20:.1f}",
             f"{held['ours'] / held['trl']:.3f}"),
        ],
    )


if __name__ == "__main__":
    main()
