"""`trl-plugins list` wall time vs importing a TRL trainer, side by side in one run.

Listing plugins must not import torch, transformers or trl (simonw/llm#732: plugins importing torch at load made
every command slow). Target: `trl-plugins list` <= 0.1 x `python -c "from trl import DPOTrainer"` (importing a
trainer pulls torch and transformers; `import trl` alone is lazy and proves nothing).

    python benchmarks/cli_list.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import print_table


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    script = Path(sys.executable).with_name("trl-plugins")
    commands = {
        "trl-plugins list": [str(script), "list"],
        "trl-plugins list --json": [str(script), "list", "--json"],
        "from trl import DPOTrainer": [sys.executable, "-c", "from trl import DPOTrainer"],
    }
    for cmd in commands.values():  # warm the file cache once
        wall(cmd)
    times = {name: [] for name in commands}
    for _ in range(args.repeats):  # alternate so that machine load hits both alike
        for name, cmd in commands.items():
            times[name].append(wall(cmd))
    base = statistics.median(times["from trl import DPOTrainer"])
    rows = []
    for name in ("trl-plugins list", "trl-plugins list --json"):
        t = statistics.median(times[name])
        rows.append((f"{name} (s, median of {args.repeats})", f"{base:.3f}", f"{t:.3f}", f"{t / base:.3f}  (target <= 0.1)"))
    print_table("CLI start-up: listing plugins vs importing a TRL trainer", rows,
                header=("", "from trl import DPOTrainer", "trl-plugins", "ratio"))


if __name__ == "__main__":
    main()
