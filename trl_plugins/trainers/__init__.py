"""The trainers: one package per method with helpers of its own (``kto_weighted/``, ``margin_rm/``, ``mdpo/``: config,
trainer and method in ``trainer.py``, its batches, checks, metrics or collator beside it), one module per method without
(``orpo.py``; ``raft.py``, ``rest.py``, ``rejection_sampling.py`` on the sampling engine), shared helpers in ``common/``."""
