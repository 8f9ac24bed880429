"""A fluency monitor for the sampling trainers: a fixed reference LM's mean log-likelihood per token of a completion.

``heldout_reward_funcs: [vader_sentiment, "loglik:embedded:smollm2-135m-instruct"]`` scores every held-out sample
with ``mean_t log p_ref(y_t | x, y_<t)`` under the named model (``loglik:`` followed by a local checkpoint, a hub id
or an ``embedded:`` model), loaded once in float32 and kept frozen. Under the base model of the run it answers "did
training make the samples less like fluent text?": the table and summaries show it before/after ± SE with a paired
95% interval like any monitor. Higher is more likely under the reference; text that the policy learned to produce
but the base finds odd (fragments, repeated words) scores lower. Costs one forward of the reference model per sample
and its memory (a second copy of the base on the GPU for a large model). Docs: docs/methods/sampling_engine.md.
"""

from __future__ import annotations


class LoglikReward:
    """Scores with :func:`trl_plugins.evaluation.heldout.completion_logps` (token average, TRL's tokenization)."""

    def __init__(self, entry, device=None, batch_size: int = 16):
        self.entry, self.device, self.batch_size = entry, device, batch_size
        self.model = self.tokenizer = None

    def _load(self):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ..models.loading import resolve_model_path

        path = resolve_model_path(self.entry.target)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        self.model = model.to(torch.device(self.device or "cpu")).eval().requires_grad_(False)

    def __call__(self, prompts, completions, columns) -> list[float | None]:
        from ..evaluation.heldout import completion_logps

        if self.model is None:
            self._load()
        values = completion_logps(self.model, self.tokenizer, list(prompts), list(completions),
                                  batch_size=self.batch_size, average=True)
        return [float(v) for v in values]
