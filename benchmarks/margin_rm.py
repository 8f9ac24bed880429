"""margin-rm vs TRL's RewardTrainer: train-step time and parameter bytes held, side by side in one run.

Same model (SmolLM2-135M-Instruct as a sequence classifier, LoRA r16 on all linear layers + the score head), same
IMDB pairs (embedded:imdb-rm-pairs), same config (batch 8 pairs, max_length 96, fp32 on CPU) and the same margins:
ours derives them from the `rating` column (Llama 2 "small" scale), TRL gets the identical values as a precomputed
`margin` column. Timed runs alternate between the two trainers; the ratio uses the median step time over all rounds.
Target: step time <= 1.03 x TRL.

    python benchmarks/margin_rm.py [--steps 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import warnings

from common import median_step, print_table, step_timer, time_trainers


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--model", default="embedded:smollm2-135m-instruct")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    import torch
    from peft import LoraConfig
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer
    from trl.trainer.reward_trainer import suppress_seqcls_warning

    from trl_plugins.embedded import load_embedded_dataset
    from trl_plugins.models.loading import resolve_model_path
    from trl_plugins.trainers.margin_rm.trainer import MarginRewardConfig, MarginRewardTrainer

    path = resolve_model_path(args.model)
    n = args.steps * args.batch
    data = load_embedded_dataset("imdb-rm-pairs", f"n_train={n},n_test=8,max_words=40,conversational=false")["train"]
    table = MarginRewardConfig("/tmp/x", margin_source="rating", use_cpu=True, bf16=False).margin_table()
    data_trl = data.map(lambda ex: {"margin": table[ex["rating"]]})
    common = dict(
        per_device_train_batch_size=args.batch, max_length=96, learning_rate=5e-4, max_steps=args.steps,
        center_rewards_coefficient=0.01, bf16=False, gradient_checkpointing=False, use_cpu=True, report_to="none",
        save_strategy="no", logging_steps=1000, seed=0, disable_tqdm=True,
    )
    lora = dict(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="SEQ_CLS")

    def build(which):
        tokenizer = AutoTokenizer.from_pretrained(path)
        torch.manual_seed(0)  # the same random score head for both trainers
        with suppress_seqcls_warning():
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
        model.config.pad_token_id = tokenizer.pad_token_id
        timer = step_timer()
        if which == "trl":
            trainer = RewardTrainer(model=model, args=RewardConfig("/tmp/bench-rm-trl", **common),
                                    train_dataset=data_trl, processing_class=tokenizer,
                                    peft_config=LoraConfig(**lora), callbacks=[timer])
        else:
            trainer = MarginRewardTrainer(
                model=model, args=MarginRewardConfig("/tmp/bench-rm-ours", margin_source="rating", **common),
                train_dataset=data, processing_class=tokenizer, peft_config=LoraConfig(**lora), callbacks=[timer])
        return trainer, timer

    times, last = time_trainers(build, ("trl", "ours"), args.rounds, skip=1)
    held = {name: info["bytes"] for name, info in last.items()}
    losses = {name: info["loss"] for name, info in last.items()}
    t_trl, t_ours = median_step(times["trl"], 0), median_step(times["ours"], 0)
    print_table(
        f"margin-rm on {args.model}, LoRA r16, {args.batch} pairs/step, max_length 96, "
        f"{args.steps} steps x {args.rounds} rounds (CPU)",
        [
            ("median step time (s)", f"{t_trl:.3f}", f"{t_ours:.3f}", f"{t_ours / t_trl:.3f}  (target <= 1.03)"),
            ("parameter bytes held (MB)", f"{held['trl'] / 2**20:.1f}", f"{held['ours'] / 2**20:.1f}",
             f"{held['ours'] / held['trl']:.3f}"),
            ("mean training loss (same margins)", f"{losses['trl']:.5f}", f"{losses['ours']:.5f}",
             f"{losses['ours'] - losses['trl']:+.1e}  (difference)"),
        ],
    )


if __name__ == "__main__":
    main()
