"""Splits of benchmark items: the deterministic train/validation splits and the test splits by number of
reference perspectives (the paper's layout: 5..10 and >10).

Two train/validation rules: ``train_val_split`` (``datasets.Dataset.train_test_split``'s partition; the estimator's
items and the template-target SFT fallback) and ``shuffled_split``, the authors' rule for the GRPO set and the SFT
file (their ``data_preprocess/valueprism_sum_rl.py`` and ``valueprism_sum_sft.py``: pandas'
``DataFrame.sample(frac=1.0, random_state=42)`` permutation of the rows, then the first
``int(rows * train share)`` rows train, the rest validation)."""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TypeVar

import numpy as np

from opgrpo.benchmark.items import Item

T = TypeVar("T")

__all__ = ["SPLIT_NAMES", "pandas_permutation", "shuffled_split", "split_by_count", "split_name", "train_val_split"]

SPLIT_NAMES = ("5", "6", "7", "8", "9", "10", ">10")
"""Test splits by number of reference perspectives (the paper's benchmark layout)."""


def train_val_split(items: list[Item], val_fraction: float = 0.1, seed: int = 42) -> tuple[list[Item], list[Item]]:
    """Deterministic shuffled split into (train, validation).

    Same partition and order as ``datasets.Dataset.train_test_split(test_size=val_fraction, seed=seed)``
    (numpy ``default_rng(seed).permutation``, ``ceil`` validation size), except that the training part
    is never left empty.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n = len(items)
    n_val = min(math.ceil(val_fraction * n), max(n - 1, 0))
    order = np.random.default_rng(seed).permutation(n)
    return [items[i] for i in order[n_val:]], [items[i] for i in order[:n_val]]


def pandas_permutation(n: int, seed: int = 42) -> list[int]:
    """The row order of ``DataFrame.sample(frac=1.0, random_state=seed)`` on a frame of ``n`` rows, from pandas itself
    (the order depends on the row count only, not on the columns)."""
    import pandas as pd

    if n <= 0:
        return []
    return pd.RangeIndex(n).to_series().sample(frac=1.0, random_state=seed).tolist()


def shuffled_split(rows: Sequence[T], val_fraction: float = 0.1, seed: int = 42, *,
                   positions: Sequence[int] | None = None, n_rows: int | None = None) -> tuple[list[T], list[T]]:
    """The authors' split: the ``n_rows`` rows in pandas' ``sample(frac=1.0, random_state=seed)`` order, the first
    ``int(n_rows * (1 - val_fraction))`` for training (at least one when there are rows), the rest validation.

    ``rows`` are the usable rows in file order; ``positions[i]`` is the 0-based position of ``rows[i]`` among the
    ``n_rows`` rows read (default: ``0..len(rows)-1`` and ``n_rows = len(rows)``). A row the loader skipped (a bad
    row) keeps its place in the permutation and is simply absent, so the other rows land on the side they land
    on in the authors' pipeline, which read every row.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if positions is None:
        positions = range(len(rows))
    if len(positions) != len(rows):
        raise ValueError(f"{len(positions)} positions for {len(rows)} rows")
    n_rows = len(rows) if n_rows is None else n_rows
    at = {int(p): row for p, row in zip(positions, rows)}
    if len(at) != len(rows) or any(not 0 <= p < n_rows for p in at):
        raise ValueError(f"positions must be distinct and in [0, {n_rows})")
    order = pandas_permutation(n_rows, seed)
    n_train = max(int(n_rows * (1.0 - val_fraction)), 1) if n_rows else 0
    return [at[p] for p in order[:n_train] if p in at], [at[p] for p in order[n_train:] if p in at]


def split_name(count: int) -> str:
    """The test split of an item with ``count`` perspectives: "5".."10", ">10", or "<5"."""
    if count < 5:
        return "<5"
    return str(count) if count <= 10 else ">10"


def split_by_count(items: Iterable[Item]) -> dict[str, list[Item]]:
    """Items grouped by perspective count: every name of SPLIT_NAMES (maybe empty), plus "<5" only when used."""
    groups: dict[str, list[Item]] = {"<5": []}
    groups.update({name: [] for name in SPLIT_NAMES})
    for item in items:
        groups[split_name(item.num_perspectives)].append(item)
    if not groups["<5"]:
        del groups["<5"]
    return groups
