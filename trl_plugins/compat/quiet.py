"""Start-up messages of other libraries that a user cannot act on, kept out of trl-plugins' output.

:func:`install` (called first thing by the ``trl-plugins`` command) adds a filter to the one logger that emits each
message below; it drops records starting with that exact text and lets every other record through, so our own
warnings and the libraries' other warnings still show. Tests: ``tests/test_quiet.py``.

- bitsandbytes 0.50, ``bitsandbytes/backends/cpu/ops.py`` (logger ``bitsandbytes.backends.cpu.ops``), at import on
  CPUs with AVX512-BF16: "Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'
  ...". It only means the optional hub kernel (package ``kernels``) is absent; 4-bit layers on the CPU then run
  bitsandbytes' own kernel.
"""

from __future__ import annotations

import logging

# (logger name, start of the message as the library logs it, before %-formatting)
DROPPED = (
    ("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward from kernels-community"),
)


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def install() -> None:
    """Add the filters (once; calling again changes nothing). Must run before the library is imported."""
    for name, prefix in DROPPED:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessage) and f.prefix == prefix for f in logger.filters):
            logger.addFilter(_DropMessage(prefix))
