"""`trl-plugins plan`: peak GPU memory from config.json (`memory_plan.py`), the architectures it reads
(`memory_architectures.py`) and shipped config.json copies (`memory_configs/`). Docs: docs/memory.md."""
