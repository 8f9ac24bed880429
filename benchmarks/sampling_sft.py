"""The sampling trainers' SFT phase vs TRL's SFTTrainer on the same selected data: step time side by side.

Both train SmolLM2-135M-Instruct with LoRA r16 on all linear layers, batch 8, max_length 160, completion-only loss,
on the same (prompt, completion) rows — by default 'selected samples' built from IMDB openings and the reviews'
next words (or a ``selection.jsonl`` from a real run with ``--selection``). Ours is a RAFTTrainer running one
``sft_phase``; TRL's is a plain ``SFTTrainer.train()``. Timed runs alternate; the ratio uses the median step time.
Target: <= 1.03 x TRL.

    python benchmarks/sampling_sft.py [--steps 10] [--rounds 2] [--selection outputs/raft-demo/iteration_1/selection.jsonl]
"""

from __future__ import annotations

import argparse
import json
import warnings

from common import alternate_rounds, median_step, print_table, step_timer


def selected_rows(n: int, selection: str | None) -> list[dict]:
    if selection:
        with open(selection) as f:
            rows = [json.loads(line) for line in f]
        return [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows][:n]
    from trl_plugins.embedded.reviews import clean_review, load_reviews

    rows = []
    for text, _, source in load_reviews():
        words = clean_review(text).split()
        if source != "imdb" or len(words) < 40:
            continue
        prompt = [{"role": "user", "content": f'Continue this movie review: "{" ".join(words[:8])}'}]
        rows.append({"prompt": prompt, "completion": [{"role": "assistant", "content": " ".join(words[8:40])}]})
        if len(rows) == n:
            break
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--selection", default=None)
    parser.add_argument("--model", default="embedded:smollm2-135m-instruct")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from trl_plugins.models.loading import resolve_model_path
    from trl_plugins.trainers.raft import RAFTConfig, RAFTTrainer

    path = resolve_model_path(args.model)
    rows = selected_rows(args.steps * 8, args.selection)
    common = dict(per_device_train_batch_size=8, max_length=160, learning_rate=3e-4, max_steps=args.steps,
                  completion_only_loss=True, bf16=False, gradient_checkpointing=False, use_cpu=True,
                  report_to="none", save_strategy="no", logging_steps=1000, seed=0, disable_tqdm=True)
    lora = dict(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")

    def run(which):
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        timer = step_timer()
        if which == "trl":
            trainer = SFTTrainer(model=model, args=SFTConfig(output_dir="/tmp/bench-sft-trl", **common),
                                 train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                                 peft_config=LoraConfig(**lora), callbacks=[timer])
            trainer.train()
        else:
            prompts = Dataset.from_list([{"prompt": r["prompt"]} for r in rows])
            trainer = RAFTTrainer(model=model, args=RAFTConfig(output_dir="/tmp/bench-sft-ours",
                                                               reward_funcs=["vader_sentiment"], **common),
                                  train_dataset=prompts, processing_class=tokenizer, peft_config=LoraConfig(**lora),
                                  callbacks=[timer])
            trainer.sft_phase(rows, "benchmark", seed=0)
        return timer.times[2:]

    times = alternate_rounds(("trl", "ours"), args.rounds, run)
    t_trl, t_ours = median_step(times["trl"], 0), median_step(times["ours"], 0)
    print_table(
        f"SFT phase on {args.model}, LoRA r16, batch 8, max_length 160, {args.steps} steps x {args.rounds} rounds (CPU)",
        [("median step time (s)", f"{t_trl:.3f}", f"{t_ours:.3f}", f"{t_ours / t_trl:.3f}  (target <= 1.03)")],
    )


if __name__ == "__main__":
    main()
