"""The `trl-plugins` command line: one module per command and the dispatcher (`main.py`); see `main.py` for usage."""

from .main import main

__all__ = ["main"]
