"""Input checks that run before any model loads: dataset formats (`data.py`), per-row problem reporting
(`problems.py`), token lengths against the trainer's limit (`lengths.py`, measured by `token_lengths.py`)."""
