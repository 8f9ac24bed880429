"""The simplest backend the sampling engine accepts: ``model.generate`` once per prompt, K sequences each, the global
RNG seeded per prompt; completions end at the first end-of-sequence token. ``calls`` counts ``generate`` calls."""

from __future__ import annotations

import time

from trl_plugins.sampling.generation import Generation, prompt_text


class PlainGenerateBackend:
    name = "plain-generate"

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, getattr(tokenizer, "tokenizer", tokenizer)
        self.last_stats: dict = {}
        self.calls = 0

    def generate(self, prompts, num_return_sequences, params, seed, progress=False, chat_kwargs=None):
        import torch

        self.calls += 1
        tok, model, start, tokens = self.tokenizer, self.model, time.perf_counter(), 0
        eos, results = tok.eos_token_id, []
        sampling = {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p,
                    "top_k": params.top_k} if params.temperature > 0 else {"do_sample": False}
        training = model.training
        model.eval()
        with torch.no_grad():
            for i, prompt in enumerate(prompts):
                text = prompt_text(tok, prompt, chat_kwargs[i] if chat_kwargs else None)
                ids = tok(text, return_tensors="pt", add_special_tokens=isinstance(prompt, str))
                ids = {k: v.to(next(model.parameters()).device) for k, v in ids.items()}
                torch.manual_seed(seed * 1_000 + i)
                out = model.generate(**ids, **sampling, max_new_tokens=params.max_new_tokens,
                                     num_return_sequences=num_return_sequences, pad_token_id=tok.pad_token_id)
                gens = []
                for row in out[:, ids["input_ids"].shape[1]:].tolist():
                    end = row.index(eos) + 1 if eos in row else len(row)
                    gens.append(Generation(text=tok.decode(row[:end], skip_special_tokens=True).strip(),
                                           num_tokens=end, finished=eos in row))
                    tokens += end
                results.append(gens)
        model.train(training)
        self.last_stats = {"generated_tokens": tokens, "seconds": time.perf_counter() - start, "path": self.name}
        return results
