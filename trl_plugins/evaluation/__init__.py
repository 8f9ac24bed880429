"""Held-out evaluation shared by the demos and the real-model tests (`heldout.py`) and the noise of a held-out
mean or change (`intervals.py`)."""
