"""The sampling engine: generate -> score -> select or pair -> train -> evaluate held-out -> store, shared by the
sampling trainers (rejection sampling, RAFT, ReST, ReST-EM) and the iterative preference trainers (iterative DPO/ORPO).

- :mod:`.engine`: the loop as named stages over one record per sample, sharding over processes, and the one held-out
  evaluation (:func:`~.engine.evaluate_heldout`, also compare's and the demos'); :mod:`.records`: the per-sample record,
  the held-out scores and the iteration summary, and how each maps to the run's files.
- :mod:`.trainer`: the select -> SFT update (``SFTTrainer``); :mod:`.preference`: the pair -> DPO/ORPO update.
- :mod:`.generation`: batched sampling behind a small backend interface (``transformers`` is registered like any
  plugin's backend, ``register_generation_backends``); its fast decode loop is :mod:`.fast_generation`, LoRA merging
  for the phase :mod:`.adapter_merge`.
- :mod:`.reward_sources`: ``reward_funcs`` entries resolved and loaded (reward models, registered functions,
  ``module:function`` callables, ``loglik:``), weighted and combined; ``None`` drops a sample.
- :mod:`.selection` and :mod:`.pairs`: the pure rules (best-of-n, top-alpha, thresholds, binary with a cap; best vs
  worst, all pairs, correct vs incorrect).
- :mod:`.store`: per-iteration files and resume; :mod:`.report`: the table and the reward plot.
- :mod:`.config`: the knobs; :mod:`.method` / :mod:`.preference_method`: the run hooks (rewards resolved once, before
  any model loads).

Docs: docs/methods/sampling_engine.md.
"""
