"""The ``trl-plugins`` command prints only what trl-plugins writes: no start-up noise of other libraries
(trl_plugins/compat/quiet.py), while their other warnings and ours still show."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys

import pytest

from helpers import REPO

BNB_LOGGER = "bitsandbytes.backends.cpu.ops"
BNB_MESSAGE = ("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure you already "
               "`pip install kernels` and the kernels >= 0.11.1")


# Imports every library first with file descriptors 1 and 2 pointed at /dev/null, then runs the command: what it
# prints then is what the command itself writes, whatever the libraries print while they load.
_PREIMPORTED = """
import os, sys
saved = os.dup(1), os.dup(2)
null = os.open(os.devnull, os.O_WRONLY)
os.dup2(null, 1); os.dup2(null, 2)
import torch, transformers, trl, peft, datasets, accelerate, bitsandbytes
sys.stdout.flush(); sys.stderr.flush()
os.dup2(saved[0], 1); os.dup2(saved[1], 2)
from trl_plugins.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def _fresh(*args: str, preimported: bool = False) -> subprocess.CompletedProcess:
    """``python -m trl_plugins ARGS`` in a new interpreter, this checkout first on the path."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    command = ["-c", _PREIMPORTED] if preimported else ["-m", "trl_plugins"]
    return subprocess.run([sys.executable, *command, *args], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=300)


@pytest.mark.parametrize("args", [("list",), ("info", "orpo"), ("check-data", "orpo", "--config", "RECIPE"),
                                  ("plan", "orpo", "--config", "RECIPE", "--gpu", "8GB")])
def test_commands_print_only_our_output(args, tiny_recipe):
    """stderr stays empty and stdout is exactly what the same command prints once every library has been loaded
    (and its load-time output thrown away). Before quiet.py, ``info`` and ``check-data`` printed bitsandbytes'
    gemm_4bit_forward line on stderr (on CPUs with AVX512-BF16, as here); with transformers 5.25 + kernels 0.19 also
    kernels' "Skipping publisher trust check" line."""
    args = tuple(tiny_recipe() if a == "RECIPE" else a for a in args)
    done = _fresh(*args)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    reference = _fresh(*args, preimported=True)
    assert reference.returncode == 0 and reference.stderr == "", reference.stderr
    assert done.stdout == reference.stdout


# what a training run may print: our own lines, the Trainer's metric dicts (report_to's console form) and progress bars
# (tqdm redraws a bar with carriage returns; a finished bar ends in "it/s]" or "s/it]")
_PROGRESS = re.compile(r"^[^|\n]*:?\s*\d+%\|.*\|\s*\d+/\d+ \[[^\]]*\]$")


def foreign_lines(text: str) -> list[str]:
    """The lines of ``text`` that are neither ours, nor a metrics dict, nor a progress bar."""
    out = []
    for line in text.splitlines():
        for piece in line.split("\r"):
            piece = piece.strip()
            if not piece or piece.startswith(("trl-plugins", "{'")) or _PROGRESS.match(piece):
                continue
            out.append(piece)
    return out


def test_foreign_lines_rule():
    """The rule lets our lines, metric dicts and tqdm bars through and catches anything else."""
    bar = "Tokenizing train dataset: 100%|##########| 16/16 [00:00<00:00, 2201.30 examples/s]"
    text = (f"trl-plugins: orpo done\n{{'loss': '5.3'}}\n{bar}\r{bar}\n"
            "Skipping publisher trust check for 'kernels-community/x' because Hugging Face Hub is in offline mode.\n")
    assert foreign_lines(text) == ["Skipping publisher trust check for 'kernels-community/x' because Hugging Face Hub "
                                   "is in offline mode."]


def test_train_prints_only_our_output(tiny_recipe):
    """A 2-step ``train`` (gradient checkpointing on, LoRA: the two code paths behind transformers 5.25's
    FutureWarnings) prints our lines, metric dicts and progress bars only, on stdout and stderr."""
    recipe = tiny_recipe({"activation_checkpointing": True, "use_peft": True, "lora_target_modules": "all-linear",
                          "disable_tqdm": False})
    done = _fresh("train", "orpo", "--config", recipe)
    assert done.returncode == 0, done.stderr
    assert foreign_lines(done.stdout) == [] and foreign_lines(done.stderr) == [], done.stderr


def test_python_api_import_is_quiet():
    """``import trl_plugins; trl_plugins.get_trainer('orpo')`` (which imports torch, transformers, trl, peft and
    bitsandbytes) prints nothing."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-c", "import trl_plugins; trl_plugins.get_trainer('orpo')"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""


def test_filter_drops_only_the_listed_message(caplog):
    """The filter sits on bitsandbytes' own logger and matches one message: another warning of that logger, and
    warnings of ours, pass."""
    from trl_plugins.compat import quiet

    quiet.install()
    quiet.install()  # idempotent
    logger = logging.getLogger(BNB_LOGGER)
    assert sum(isinstance(f, quiet._DropMessage) for f in logger.filters) == 1
    with caplog.at_level(logging.WARNING):
        logger.warning(BNB_MESSAGE, "No module named 'kernels'")
        logger.warning("some other bitsandbytes warning")
        logging.getLogger("trl_plugins.sampling").warning("Failed to load CPU gemm_4bit_forward from our side")
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        (BNB_LOGGER, "some other bitsandbytes warning"),
        ("trl_plugins.sampling", "Failed to load CPU gemm_4bit_forward from our side"),
    ]


def test_dropped_texts_still_match_the_libraries_source():
    """Each dropped log message and ignored warning is the one the installed library emits (a renamed message
    would slip through): its text is in the named module, which logs through ``logging.getLogger(__name__)``."""
    import importlib.util
    from pathlib import Path

    from trl_plugins.compat.quiet import DROPPED, IGNORED_WARNINGS

    def source(dotted: str) -> str | None:
        top, *rest = dotted.split(".")
        spec = importlib.util.find_spec(top)  # None: not installed (kernels came with transformers 5.25)
        return spec and Path(spec.submodule_search_locations[0]).joinpath(*rest).with_suffix(".py").read_text()

    checked = []
    for name, prefix in DROPPED:
        if (text := source(name)) is not None:
            assert "logger = logging.getLogger(__name__)" in text and prefix in text, name
            checked.append(name)
    for message, _, module in IGNORED_WARNINGS:
        assert message in source(module.removesuffix(".py").replace("/", ".")), module
    assert "bitsandbytes.backends.cpu.ops" in checked
