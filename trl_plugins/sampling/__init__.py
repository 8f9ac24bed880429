"""One generate -> score -> select engine shared by the sampling trainers (rejection sampling, RAFT, ReST, ReST-EM).

- :mod:`.generation`: batched sampling from the current policy behind a small backend interface
  (:class:`~.generation.TransformersBackend` ships; a vLLM backend can implement ``generate`` and ``last_stats``);
  its fast decode loop is :mod:`.fast_generation`, LoRA merging for the phase :mod:`.adapter_merge`.
- :mod:`.reward_sources`: ``reward_funcs`` entries resolved and loaded (reward models, registered functions,
  ``module:function`` callables), weighted and combined; ``None`` drops a sample.
- :mod:`.selection`: pure selection rules (best-of-n, global top-alpha, thresholds, binary with a per-prompt cap).
- :mod:`.store`: per-iteration files and resume; :mod:`.report`: summary rows and the reward plot.
- :mod:`.config`: the knobs; :mod:`.method`: the run hooks (rewards resolved once, before any model loads);
  :mod:`.trainer`: the loop.

Docs: docs/methods/sampling_engine.md.
"""
