"""Run the parity suite (tests/test_parity_*.py) and write its table into docs/parity.md (between the markers).

    PYTHONPATH=. HF_HUB_OFFLINE=1 python tests/parity_table.py        # ~minutes on 2 CPU cores

Each row is one ported TRL test case; each column one trainer (the TRL parent first): pass, FAIL, or refused (our
subclass refuses the combination in one line naming the option, as its doc page lists).
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

TESTS = Path(__file__).resolve().parent
DOC = TESTS.parent / "docs" / "parity.md"
FAMILIES = [  # file, title, sides (parent first)
    ("test_parity_dpo.py", "DPOTrainer (TRL tests/test_dpo_trainer.py)", ["DPOTrainer", "orpo"]),
    ("test_parity_dpo.py", "DPOTrainer, vision cases (TRL tests/test_dpo_trainer.py, test_train_vlm*)",
     ["DPOTrainer", "mdpo"]),
    ("test_parity_dpo.py", "experimental ORPOTrainer (TRL tests/experimental/test_orpo_trainer.py)",
     ["ORPOTrainer (experimental)", "orpo"]),
    ("test_parity_kto.py", "KTOTrainer (TRL tests/test_kto_trainer.py)", ["KTOTrainer", "kto-weighted"]),
    ("test_parity_reward.py", "RewardTrainer (TRL tests/test_reward_trainer.py)", ["RewardTrainer", "margin-rm"]),
    ("test_parity_sft.py", "SFTTrainer (TRL tests/test_sft_trainer.py)",
     ["SFTTrainer", "raft", "rejection-sampling", "rest", "rest-em"]),
]
BEGIN, END = "<!-- parity table: begin -->", "<!-- parity table: end -->"


def split_side(name: str, sides: list[str]) -> tuple[str, str] | None:
    """``test_x[a-SIDE-b]`` -> (``test_x[a-b]``, SIDE) for one of ``sides``, else None."""
    match = re.fullmatch(r"(\w+)\[(.*)\]", name)
    if not match:
        return None
    function, params = match.groups()
    for side in sorted(sides, key=len, reverse=True):
        parts = params.split("-")
        for i in range(len(parts)):
            for j in range(i + 1, len(parts) + 1):
                if "-".join(parts[i:j]) == side:
                    rest = parts[:i] + parts[j:]
                    return (f"{function}[{'-'.join(rest)}]" if rest else function), side
    return None


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        junit, refused = Path(tmp) / "junit.xml", Path(tmp) / "refused.jsonl"
        env = dict(os.environ, PARITY_REFUSED=str(refused), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
        start, cpu_before = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
        files = sorted({str(TESTS / f) for f, _, _ in FAMILIES})
        subprocess.run([sys.executable, "-m", "pytest", *files, "-q", "-p", "no:cacheprovider",
                        f"--junitxml={junit}"], env=env, check=False)
        seconds = time.time() - start
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
        load = os.getloadavg()[0]
        refused_tests = {json.loads(line)["test"].split("::")[-1] for line in refused.read_text().splitlines()} \
            if refused.exists() else set()
        results: dict[tuple[str, str], str] = {}
        for case in ET.parse(junit).getroot().iter("testcase"):
            file = case.get("classname", "").split(".")[-1] + ".py"
            name = case.get("name")
            outcome = "FAIL" if case.find("failure") is not None or case.find("error") is not None else \
                "skipped" if case.find("skipped") is not None else "refused" if name in refused_tests else "pass"
            results[(file, name)] = outcome
    lines = [BEGIN, "", f"Produced by `python tests/parity_table.py` ({len(results)} tests, {seconds:.0f} s wall and "
             f"{cpu:.0f} s CPU time on {os.cpu_count()} cores, load average {load:.1f} at the end, "
             f"{time.strftime('%Y-%m-%d')}).", ""]
    for file, title, sides in FAMILIES:
        table: dict[str, dict[str, str]] = {}
        for (f, name), outcome in results.items():
            if f != file:
                continue
            found = split_side(name, sides)
            if found:
                table.setdefault(found[0], {})[found[1]] = outcome
        table = {case: row for case, row in table.items() if sides[0] in row and any(s in row for s in sides[1:])}
        lines += [f"### {title}", "", "| case | " + " | ".join(sides) + " |", "|---" * (len(sides) + 1) + "|"]
        lines += [f"| `{case}` | " + " | ".join(row.get(side, "-") for side in sides) + " |"
                  for case, row in table.items()]
        lines.append("")
    lines.append(END)
    text = DOC.read_text() if DOC.exists() else f"# Parity with the TRL parents\n\n{BEGIN}\n{END}\n"
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    DOC.write_text(head + "\n".join(lines) + tail)
    failed = [key for key, outcome in results.items() if outcome == "FAIL"]
    print(f"{len(results)} tests, {len(failed)} failed, {seconds:.0f} s; table written to {DOC}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
