"""Workarounds for the libraries underneath: messages a user cannot act on (`quiet.py`), bitsandbytes on CPU
(`bnb_cpu.py`)."""
