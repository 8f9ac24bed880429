"""mDPO vs TRL's DPOTrainer on the same vision-language model and data: train-step time, side by side in one run.

Same model (embedded:smollm2-tiny-llava: SmolLM2-135M-Instruct + a small SigLIP tower; LoRA r16 on the language
model's linear layers, projector trained), same shapes-preference pairs, same config (batch 4 pairs, fp32 on CPU).
mDPO scores three sequences per pair (chosen, rejected, chosen with a corrupted image) where DPO scores two, in one
policy and one reference forward each, so the expected ratio is about 1.5. Target: <= 1.6 x TRL's DPO step.
Timed runs alternate between the two trainers; the ratio uses the median step time over all rounds.

    python benchmarks/mdpo.py [--steps 8] [--rounds 2] [--batch 4] [--tiny]   # --tiny: the 70k-parameter test VLM

The like-for-like ratio times mDPO with TRL's fused LM head (what DPOTrainer always uses); a second row shows mDPO's
CPU default (full logits), which is faster on a CPU than the fused head's fallback.
"""

from __future__ import annotations

import argparse
import warnings

from common import median_step, print_table, step_timer, time_trainers


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default="embedded:smollm2-tiny-llava")
    parser.add_argument("--batch", type=int, default=4, help="pairs per step")
    parser.add_argument("--tiny", action="store_true", help="use the tiny random test VLM instead of --model")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    import torch
    from peft import LoraConfig
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import DPOConfig, DPOTrainer

    from trl_plugins.embedded import load_embedded_dataset
    from trl_plugins.models.loading import resolve_model_path
    from trl_plugins.trainers.mdpo.trainer import MDPOConfig, MDPOTrainer

    if args.tiny:
        from tiny_vlm import save_tiny_vlm

        path, args.model = save_tiny_vlm("/tmp/bench-mdpo-tiny-vlm"), "tiny test VLM"
        data = load_embedded_dataset("shapes-preference", f"n_train={args.steps * args.batch},n_test=1,size=32")["train"]
        data = data.map(lambda row: {"prompt": [{"role": "user", "content": "what color ?"}],
                                     "chosen": [{"role": "assistant", "content": "red"}],
                                     "rejected": [{"role": "assistant", "content": "blue"}]})
    else:
        path = resolve_model_path(args.model)
        data = load_embedded_dataset("shapes-preference", f"n_train={args.steps * args.batch},n_test=1")["train"]
    common = dict(
        per_device_train_batch_size=args.batch, beta=0.1, learning_rate=5e-4, max_steps=args.steps, bf16=False,
        gradient_checkpointing=False, use_cpu=True, report_to="none", save_strategy="no", logging_steps=1000,
        seed=0, disable_tqdm=True, max_length=None,
    )

    def build(which):
        processor = AutoProcessor.from_pretrained(path)
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
        # the same adapters for both: LoRA on the language model only, the projector trained in full
        lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                          exclude_modules=r".*\bvision_tower\b.*", modules_to_save=["multi_modal_projector"])
        timer = step_timer()
        if which == "trl":
            trainer = DPOTrainer(model=model, args=DPOConfig(output_dir="/tmp/bench-mdpo-trl", **common),
                                 train_dataset=data, processing_class=processor, peft_config=lora, callbacks=[timer])
        else:  # "ours-fused": TRL's fused LM head, the same scoring path as DPOTrainer; "ours": the CPU default
            fused = {"fused_lm_head": True} if which == "ours-fused" else {}
            trainer = MDPOTrainer(model=model, args=MDPOConfig(output_dir="/tmp/bench-mdpo-ours", **common, **fused),
                                  train_dataset=data, processing_class=processor, peft_config=lora, callbacks=[timer])
        return trainer, timer

    times, _ = time_trainers(build, ("trl", "ours-fused", "ours"), args.rounds, skip=1)  # step 1 warms up caches
    t_trl, t_fused, t_ours = (median_step(times[k], 0) for k in ("trl", "ours-fused", "ours"))
    print_table(
        f"mDPO vs DPO on {args.model}, LoRA r16, batch {args.batch} pairs, {args.steps} steps x {args.rounds} "
        "rounds (CPU)",
        [
            ("sequences scored per pair", "2", "3", "1.500"),
            ("median step time (s), fused LM head both", f"{t_trl:.3f}", f"{t_fused:.3f}",
             f"{t_fused / t_trl:.3f}  (target <= 1.6)"),
            ("median step time (s), mDPO CPU default", f"{t_trl:.3f}", f"{t_ours:.3f}",
             f"{t_ours / t_trl:.3f}  (full logits: TRL's fused head has no fast CPU path)"),
        ],
    )


if __name__ == "__main__":
    main()
