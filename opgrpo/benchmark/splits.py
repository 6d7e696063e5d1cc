"""Splits of benchmark items: the deterministic train/validation split and the test splits by number of
reference perspectives (the paper's layout: 5..10 and >10)."""
from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from opgrpo.benchmark.items import Item

__all__ = ["SPLIT_NAMES", "split_by_count", "split_name", "train_val_split"]

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
