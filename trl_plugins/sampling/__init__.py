"""One generate -> score -> select engine shared by the sampling trainers (rejection sampling, RAFT, ReST, ReST-EM).

- :mod:`.generation`: batched sampling from the current policy behind a small backend interface
  (:class:`~.generation.TransformersBackend` ships; a vLLM backend can implement ``generate`` and ``last_stats``);
  its fast decode loop is :mod:`.fast_generation`, LoRA merging for the phase :mod:`.adapter_merge`.
- :mod:`.rewards`: reward sources (sequence-classification reward model, registered functions, ``module:function``
  callables with TRL's signature), weighted and combined; ``None`` drops a sample.
- :mod:`.selection`: pure selection rules (best-of-n, global top-alpha, thresholds, binary with a per-prompt cap).
- :mod:`.store`: per-iteration files (generations, rewards, selection, summary) and resume.
- :mod:`.trainer`: :class:`~.trainer.SamplingTrainer`, the ``SFTTrainer`` subclass running the outer loop.

Nothing here imports torch at module import time except :mod:`.generation`, :mod:`.fast_generation`,
:mod:`.adapter_merge`, :mod:`.rewards` and :mod:`.trainer`.
"""
