"""Start-up messages of other libraries that a user cannot act on, kept out of trl-plugins' output.

:func:`install` runs when ``trl_plugins`` is imported (so the command, ``./run demo`` and the Python API are all
covered). It adds a filter to the one logger that emits each message in ``DROPPED`` and drops records starting with
that exact text, and an ``ignore`` rule for each warning in ``IGNORED_WARNINGS``; every other record and warning still
shows, ours included. Each entry names its source; ``tests/test_quiet.py`` checks every text against the installed
library's source and runs every command in fresh interpreters, failing on any line that is not ours.
"""

from __future__ import annotations

import logging
import re
import warnings

# (logger name, start of the message as the library logs it, before %-formatting)
DROPPED = (
    # bitsandbytes >= 0.50, bitsandbytes/backends/cpu/ops.py, at import on CPUs with AVX512-BF16: the optional hub
    # kernel (package `kernels`) is absent or, offline, not cached; 4-bit layers then run bitsandbytes' own CPU kernel.
    ("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward from kernels-community"),
    # kernels >= 0.19 (a transformers dependency since 5.25), kernels/_internals/hf_hub.py, when bitsandbytes asks for
    # that kernel with HF_HUB_OFFLINE=1 (any kernel: the user chose offline mode, there is nothing to check against).
    ("kernels._internals.hf_hub", "Skipping publisher trust check for '"),
)

# (start of the warning text, category, "package/module.py" that raises it)
IGNORED_WARNINGS = (
    # TRL's configs default `gradient_checkpointing=True`; transformers >= 5.25 warns for that field on every config.
    # Our recipes use `activation_checkpointing`; the warning comes from TRL's own default.
    ("`gradient_checkpointing` is deprecated", FutureWarning, "transformers/training_args.py"),
    # peft and TRL read the deprecated `model.is_gradient_checkpointing` property (transformers >= 5.25).
    ("`is_gradient_checkpointing` is deprecated", FutureWarning, "transformers/modeling_utils.py"),
    # TRL's KTO/DPO trainers switch checkpointing off and on around no-grad forwards with the old method names.
    ("`gradient_checkpointing_enable` is deprecated", FutureWarning, "transformers/modeling_utils.py"),
    ("`gradient_checkpointing_disable` is deprecated", FutureWarning, "transformers/modeling_utils.py"),
)


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def install() -> None:
    """Add the filters (once; calling again changes nothing). Must run before the library logs its message."""
    for name, prefix in DROPPED:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessage) and f.prefix == prefix for f in logger.filters):
            logger.addFilter(_DropMessage(prefix))
    for text, category, _ in IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(text), category=category)
