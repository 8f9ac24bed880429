"""ORPO vs TRL's experimental ORPOTrainer: train-step time and parameter bytes held, side by side in one run.

Same model (SmolLM2-135M-Instruct, LoRA r16 on all linear layers), same Rotten Tomatoes pairs, same config
(batch 4, max_length 128, fp32 on CPU). Timed runs alternate between the two trainers; the ratio uses the median
step time over all rounds. Targets: step time <= 1.03 x TRL; one copy of the base weights (no reference model).

    python benchmarks/orpo.py [--steps 12] [--rounds 2]
"""

from __future__ import annotations

import argparse
import warnings

from common import median_step, print_table, step_timer, time_trainers


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default="embedded:smollm2-135m-instruct")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.experimental.orpo import ORPOConfig as TRLConfig
    from trl.experimental.orpo import ORPOTrainer as TRLTrainer

    from trl_plugins.embedded import load_embedded_dataset
    from trl_plugins.models.loading import resolve_model_path
    from trl_plugins.trainers.orpo import ORPOConfig, ORPOTrainer

    torch.set_num_threads(max(1, torch.get_num_threads()))
    path = resolve_model_path(args.model)
    data = load_embedded_dataset("rt-preference", f"n_train={args.steps * 4 * 2}")["train"]
    common = dict(
        per_device_train_batch_size=4, max_length=128, beta=0.1, learning_rate=5e-4, max_steps=args.steps,
        bf16=False, gradient_checkpointing=False, use_cpu=True, report_to="none", save_strategy="no",
        logging_steps=1000, seed=0, disable_tqdm=True,
    )
    lora = dict(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")

    def build(which):
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        timer = step_timer()
        if which == "trl":
            trainer = TRLTrainer(model=model, args=TRLConfig(output_dir="/tmp/bench-orpo-trl", **common),
                                 train_dataset=data, processing_class=tokenizer, peft_config=LoraConfig(**lora),
                                 callbacks=[timer])
        else:
            trainer = ORPOTrainer(model=model, args=ORPOConfig(output_dir="/tmp/bench-orpo-ours", **common),
                                  train_dataset=data, processing_class=tokenizer, peft_config=LoraConfig(**lora),
                                  callbacks=[timer])
        return trainer, timer

    times, last = time_trainers(build, ("trl", "ours"), args.rounds, skip=2)
    held = {name: info["bytes"] for name, info in last.items()}
    t_trl, t_ours = median_step(times["trl"], 0), median_step(times["ours"], 0)
    print_table(
        f"ORPO on {args.model}, LoRA r16, batch 4, max_length 128, {args.steps} steps x {args.rounds} rounds (CPU)",
        [
            ("median step time (s)", f"{t_trl:.3f}", f"{t_ours:.3f}", f"{t_ours / t_trl:.3f}  (target <= 1.03)"),
            ("parameter bytes held (MB)", f"{held['trl'] / 2**20:.1f}", f"{held['ours'] / 2**20:.1f}",
             f"{held['ours'] / held['trl']:.3f}  (one copy of base weights, no reference model)"),
        ],
    )


if __name__ == "__main__":
    main()
