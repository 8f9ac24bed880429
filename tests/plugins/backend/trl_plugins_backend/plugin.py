"""Registers through the `trl_plugins` entry point; imports nothing heavy."""

from trl_plugins import hookimpl


@hookimpl
def register_generation_backends(register):
    register(
        "plain-generate",
        backend="trl_plugins_backend.backend:PlainGenerateBackend",
        summary="model.generate with num_return_sequences=K, one call per prompt (a third-party example).",
    )
