"""Helpers shared by several trainers: config resolution, paper records, per-token log-probs and metrics, LoRA
checkpoint merging."""
