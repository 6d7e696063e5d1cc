"""Seed replicates: runs that differ only by their seed, grouped, each number as a mean with a 95% interval.

Two runs are replicates when their resolved configs are equal once every key named ``seed`` (at any depth:
``seed``, ``trainer.grpo.trl.seed``, ...) is removed. A run without a config (unreadable ``config.yaml``, a W&B
run without one) is compared by its overrides instead, with every ``seed`` / ``<...>.seed`` override removed;
it never joins a run that has a config. :func:`seed_groups` returns the groups in order of first appearance;
:func:`t_interval` is the mean and the half-width of its two-sided 95% Student-t interval (n - 1 degrees of
freedom; none for a single value); :func:`grouped_numbers` reduces a table's numeric columns per group.
Plain functions over plain data (numpy, scipy, pandas); no Hydra.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

__all__ = ["CI_SUFFIX", "N_SUFFIX", "SEED_KEY", "grouped_numbers", "is_seed_key", "seed_groups", "seed_of", "t_interval",
           "without_seed"]

SEED_KEY = "seed"
CI_SUFFIX = "_ci95"
"""A grouped column ``c`` has its interval's half-width in ``c + CI_SUFFIX`` (NaN when it has one value)."""
N_SUFFIX = "_n"
"""... and in ``c + N_SUFFIX`` the number of the group's runs whose value of ``c`` is finite (the mean's n, which
can be less than ``n_seeds``: a run without the number, or with NaN/inf, is left out of the mean)."""


class _Run(Protocol):
    overrides: Mapping[str, str]
    config: Mapping[str, Any]


def is_seed_key(key: str) -> bool:
    """Whether an override or config key names a seed: ``seed``, ``trainer.grpo.trl.seed``, ``+seed`` (not ``split_seed``)."""
    return key.lstrip("+~").replace("/", ".").split(".")[-1] == SEED_KEY


def without_seed(overrides: Mapping[str, str]) -> dict[str, str]:
    """``overrides`` without its seed keys."""
    return {k: v for k, v in overrides.items() if not is_seed_key(k)}


def _strip_seed(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {k: _strip_seed(v) for k, v in data.items() if not is_seed_key(str(k))}
    if isinstance(data, (list, tuple)):
        return [_strip_seed(v) for v in data]
    return data


def _key(run: _Run) -> tuple[str, str]:
    if run.config:
        return "config", json.dumps(_strip_seed(run.config), sort_keys=True, default=str)
    return "overrides", json.dumps(sorted(without_seed(run.overrides).items()))


def seed_groups(runs: Sequence[_Run]) -> list[list[int]]:
    """Indices of ``runs`` grouped into seed replicates, groups and members in order of first appearance."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, run in enumerate(runs):
        groups.setdefault(_key(run), []).append(i)
    return list(groups.values())


def seed_of(run: _Run) -> str:
    """The run's seed as written: its seed override, else its config's top-level ``seed`` ("" when unknown)."""
    for k, v in run.overrides.items():
        if is_seed_key(k):
            return str(v)
    seed = run.config.get(SEED_KEY) if run.config else None
    return "" if seed is None else str(seed)


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, int]:
    """(mean, half-width of the two-sided ``confidence`` Student-t interval, n) of the finite ``values``.

    half-width = t_{(1+confidence)/2, n-1} * s / sqrt(n), s the sample standard deviation (ddof 1). n = 0:
    (NaN, NaN, 0); n = 1: (the value, NaN, 1): one run has no interval.
    """
    from scipy import stats

    xs = [float(v) for v in values if v is not None and not isinstance(v, bool) and math.isfinite(float(v))]
    n = len(xs)
    if n == 0:
        return math.nan, math.nan, 0
    mean = sum(xs) / n
    if n == 1:
        return mean, math.nan, 1
    s = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    return mean, float(stats.t.ppf((1 + confidence) / 2, n - 1)) * s / math.sqrt(n), n


def grouped_numbers(df, groups: Sequence[Sequence[int]], columns: Sequence[str]):
    """One row per group of ``df`` rows (index labels): ``n_seeds`` and, for each of ``columns``, the mean
    (``c``), the 95% half-width (``c`` + :data:`CI_SUFFIX`) and the number (``c`` + :data:`N_SUFFIX`) of its
    finite values (a pandas DataFrame)."""
    import pandas as pd

    rows = []
    for members in groups:
        row: dict[str, Any] = {"n_seeds": len(members)}
        for c in columns:
            values = pd.to_numeric(df.loc[list(members), c], errors="coerce").tolist()
            row[c], row[c + CI_SUFFIX], row[c + N_SUFFIX] = t_interval(values)
        rows.append(row)
    return pd.DataFrame(rows, columns=["n_seeds", *(x for c in columns for x in (c, c + CI_SUFFIX, c + N_SUFFIX))])
