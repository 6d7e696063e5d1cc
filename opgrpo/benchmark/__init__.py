"""The benchmark: items (a situation plus its reference perspectives), loading them from CSV / JSON Lines /
Hugging Face datasets with row validation, the train/validation and per-perspective-count test splits,
and the small sample benchmark shipped in ``sample/``.

    from opgrpo.benchmark import load_items, sample_data_path, split_by_count

    items, errors = load_items(sample_data_path("test"))
    splits = split_by_count(items)  # {"5": [...], ..., ">10": [...]}
"""
from __future__ import annotations

from pathlib import Path

from opgrpo.benchmark.items import DataError, DataFormatError, Item, Perspective
from opgrpo.benchmark.loading import load_items
from opgrpo.benchmark.splits import (
    SPLIT_NAMES,
    split_by_count,
    split_name,
    train_val_split,
)

__all__ = ["SAMPLES", "SPLIT_NAMES", "DataError", "DataFormatError", "Item", "Perspective", "load_items", "sample_data_path",
           "split_by_count", "split_name", "train_val_split"]

_SAMPLE_DIR = Path(__file__).resolve().parent / "sample"
SAMPLES = ("train", "test", "pair_labels")
"""The packaged sample files (``sample/sample_<name>.csv``)."""


def sample_data_path(name: str = "train") -> Path:
    """Path of a packaged sample file: "train" (36 items), "test" (14 items, 2 per split) or "pair_labels"
    (which reference perspectives of those items express the same perspective; opgrpo.estimator.pair_labels)."""
    if name not in SAMPLES:
        raise ValueError(f"unknown sample {name!r}; expected 'train', 'test' or 'pair_labels'")
    return _SAMPLE_DIR / f"sample_{name}.csv"
