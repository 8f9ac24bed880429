"""The ``trl-plugins`` command prints only what trl-plugins writes: no start-up noise of other libraries
(trl_plugins/compat/quiet.py), while their other warnings and ours still show."""

from __future__ import annotations

import logging
import os
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


@pytest.mark.parametrize("args", [("list",), ("info", "orpo"), ("check-data", "orpo", "--config", "RECIPE")])
def test_commands_print_only_our_output(args, tiny_recipe):
    """stderr stays empty and stdout is exactly what the same command prints once every library has been loaded
    (and its load-time output thrown away). Before quiet.py, ``info`` and ``check-data`` printed bitsandbytes'
    gemm_4bit_forward line on stderr (on CPUs with AVX512-BF16, as here)."""
    args = tuple(tiny_recipe() if a == "RECIPE" else a for a in args)
    done = _fresh(*args)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    reference = _fresh(*args, preimported=True)
    assert reference.returncode == 0 and reference.stderr == "", reference.stderr
    assert done.stdout == reference.stdout


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


def test_message_still_matches_bitsandbytes_source():
    """The dropped text is the one the installed bitsandbytes logs (a renamed message would slip through)."""
    import importlib.util
    from pathlib import Path

    from trl_plugins.compat.quiet import DROPPED

    spec = importlib.util.find_spec("bitsandbytes")
    for name, prefix in DROPPED:
        module = Path(spec.submodule_search_locations[0]).joinpath(*name.split(".")[1:]).with_suffix(".py")
        source = module.read_text()
        assert "logger = logging.getLogger(__name__)" in source and prefix in source
