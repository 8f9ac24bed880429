"""Dataset mixtures in a recipe, loaded before any model: TRL's ``datasets:`` list (``trl.DatasetMixtureConfig``, loaded
by ``trl.get_dataset`` itself) and alignment-handbook's ``dataset_mixture:`` (its ``src/alignment/data.py`` rules).
Docs: docs/plugins.md ("Dataset mixtures").

Both take the names ``dataset_name`` takes: ``embedded:NAME`` (options in ``name``/``config``), a local
json/jsonl/csv/parquet/arrow file or folder, a ``save_to_disk`` folder, a hub dataset (``checks/sources.py``:
``load_entry``).
"""

from __future__ import annotations

from .sources import load_entry

HANDBOOK_KEYS = ("datasets", "seed", "test_split_size")
HANDBOOK_ENTRY_KEYS = ("id", "config", "split", "columns", "weight")


def load_trl_mixture(dataset_args):
    """``trl.get_dataset(dataset_args)``: TRL's own loader (fractions, streaming, test split), each entry through
    :func:`load_entry`."""
    from trl import get_dataset

    from ..compat.mixture_sources import entries_through

    with entries_through(load_entry):
        return get_dataset(dataset_args)


def handbook_mixture_problems(mixture) -> list[str]:
    """What is wrong with an alignment-handbook ``dataset_mixture:`` mapping, one line each (empty: nothing)."""
    where = "dataset_mixture"
    if not isinstance(mixture, dict) or not isinstance(mixture.get("datasets"), list):
        return [f"{where} must be a mapping with a 'datasets' list (alignment-handbook's form: datasets: [{{id, config, "
                f"split, columns, weight}}], seed, test_split_size)"]
    problems = [f"{where}: unknown key {key!r} (keys: {', '.join(HANDBOOK_KEYS)})" for key in mixture
                if key not in HANDBOOK_KEYS]
    columns = []
    for i, entry in enumerate(mixture["datasets"]):
        at = f"{where}.datasets[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{at} must be a mapping of {', '.join(HANDBOOK_ENTRY_KEYS)}, got {entry!r}")
            continue
        problems += [f"{at}: unknown key {key!r} (keys: {', '.join(HANDBOOK_ENTRY_KEYS)})" for key in entry
                     if key not in HANDBOOK_ENTRY_KEYS]
        if not isinstance(entry.get("id"), str):
            problems.append(f"{at}: 'id' (the dataset) is required")
        weight = entry.get("weight", 1.0)
        if weight is not None and (isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0):
            problems.append(f"{at}: 'weight' must be a number >= 0 (the share of that dataset kept), got {weight!r}")
        if entry.get("columns") is not None:
            columns.append(set(entry["columns"]))
    if columns and any(c != columns[0] for c in columns):
        problems.append(f"{where}: every dataset must keep the same columns, got "
                        f"{', '.join(str(sorted(c)) for c in columns)}")
    return problems


def load_handbook_mixture(mixture: dict):
    """alignment-handbook's ``get_dataset`` for ``dataset_mixture:``: each dataset's split, its ``columns``, then
    ``weight`` (default 1.0) as the share of its rows kept after a shuffle with ``seed``; the parts concatenated and
    shuffled with ``seed``, then split off ``test_split_size`` (a fraction or a row count) with ``seed``."""
    import datasets

    seed = mixture.get("seed", 0)
    parts = []
    for entry in mixture["datasets"]:
        part = load_entry(datasets.load_dataset, entry["id"], entry.get("config"), split=entry.get("split", "train"))
        if entry.get("columns") is not None:
            part = part.select_columns(entry["columns"])
        weight = entry.get("weight", 1.0)
        if weight is not None:
            part = part.shuffle(seed=seed).select(range(int(len(part) * weight)))
        parts.append(part)
    combined = datasets.concatenate_datasets(parts).shuffle(seed=seed)
    if mixture.get("test_split_size") is not None:
        return combined.train_test_split(test_size=mixture["test_split_size"], seed=seed)
    return datasets.DatasetDict({"train": combined})
