"""A generation backend registered through the ``register_generation_backends`` hook (tests/test_generation_backends.py)."""
