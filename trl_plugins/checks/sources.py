"""One dataset source into a ``DatasetDict``: ``embedded:NAME``, a local json/jsonl/csv/parquet/arrow file or folder, a
``save_to_disk`` folder, or a hub name (``load_source``); one split of one mixture entry (``load_entry``). Loading
errors are one :class:`DataError` line. Used by ``checks/data.py`` (``dataset_name``) and ``checks/mixtures.py``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path

from ..errors import DataError

FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".arrow": "arrow"}
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def first_line(exc: BaseException) -> str:
    while exc.__cause__ is not None and type(exc).__name__ == "DatasetGenerationError":
        exc = exc.__cause__  # "An error occurred while generating the dataset" hides the real reason
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


@contextlib.contextmanager
def _quiet_progress():
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    verbosity = datasets.logging.get_verbosity()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(logging.CRITICAL)  # its own error lines would repeat ours
    try:
        yield
    finally:
        datasets.logging.set_verbosity(verbosity)
        if was_enabled:
            datasets.enable_progress_bars()


def load_source(name: str, config_name: str | None = None, streaming: bool = False):
    """Load one dataset source into a ``DatasetDict`` (a single file or folder becomes split ``train``)."""
    import datasets

    if name.startswith("embedded:"):
        from ..embedded import load_embedded_dataset

        return load_embedded_dataset(name.removeprefix("embedded:"), config_name)
    path = Path(os.path.expanduser(name))
    hub_like = bool(_HUB_NAME.fullmatch(name)) and path.suffix.lower() not in FILE_BUILDERS
    try:
        if path.is_file():
            builder = FILE_BUILDERS.get(path.suffix.lower())
            if builder is None:
                raise DataError(
                    f"data file {name!r}: unsupported type {path.suffix!r} (use {', '.join(sorted(FILE_BUILDERS))})"
                )
            with _quiet_progress():  # a local file loads in a blink; keep the terminal for what matters
                return datasets.load_dataset(builder, data_files=str(path), streaming=streaming)
        if path.is_dir():
            if (path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists():
                loaded = datasets.load_from_disk(str(path))
                return loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict(train=loaded)
            return datasets.load_dataset(str(path), name=config_name, streaming=streaming)
        if not hub_like:
            raise DataError(f"data file {name!r} does not exist")
        return datasets.load_dataset(name, name=config_name, streaming=streaming)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - unreadable files, offline hub, bad JSON: all one line
        raise DataError(f"cannot read dataset {name!r}: {first_line(exc)}") from exc


def load_entry(load_dataset, path: str, name: str | None = None, data_dir=None, data_files=None, split="train",
               streaming: bool = False, **kwargs):
    """One split of one dataset, as ``datasets.load_dataset(path, name, ..., split=...)`` gives it, with trl-plugins'
    names added: ``embedded:NAME`` and a bare local file or folder go through :func:`load_source`; any
    other source is handed to ``load_dataset`` (the real one) unchanged."""
    local = Path(os.path.expanduser(path))
    if data_files is not None or data_dir is not None or not (path.startswith("embedded:") or local.exists()):
        return load_dataset(path=path, name=name, data_dir=data_dir, data_files=data_files, split=split,
                            streaming=streaming, **kwargs)
    if local.is_file() and local.suffix.lower() in FILE_BUILDERS:  # `split` may slice (train[:100]), as TRL's would
        return load_dataset(FILE_BUILDERS[local.suffix.lower()], data_files=str(local), split=split,
                            streaming=streaming, **kwargs)
    splits = load_source(path, name, streaming)
    if split not in splits:
        raise DataError(f"dataset {path!r}: no split {split!r} (splits: {', '.join(splits) or 'none'})")
    return splits[split]
