"""Paired comparison of a sweep's arms item by item: do two groups of runs really differ?

The seed groups of :mod:`opgrpo.sweep.seeds` carry intervals over seeds, which with 2-3 seeds are wide
(Student t with 1-2 degrees of freedom) even when every seed moves the same way. Arms that were evaluated on the
same held-out items with the same seeds allow a sharper, still honest test: each (seed, split, item) evaluated by
both arms is one pair of scores, and the table gives the mean difference with its 95% Student-t interval, how often
each arm scored higher, and the Wilcoxon signed-rank p-value (ties dropped). Pairs are not fully independent
(items of one seed share a policy), which the report says next to the table.

An *arm* is a seed group evaluated at one stage: ``eval`` (after training) and ``eval_base`` (the untrained
policy), each read from ``<run>/<stage>/reward_items.jsonl`` (the reference rule's numbers, the same rule for every
arm of a report: opgrpo.sweep.records.check_rules). So a run with ``pipeline=[eval_base, grpo, eval]``
also yields the paired before/after comparison of its own group. Plain functions over run records (numpy, scipy,
pandas); no Hydra.
"""
from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from opgrpo.sweep.seeds import seed_of, t_interval

__all__ = ["METRICS", "STAGES", "arm_scores", "item_scores", "paired_table"]

log = logging.getLogger(__name__)

METRICS = ("coverage_rate", "uniqueness_rate")
"""Per-item numbers compared (fields of each ``reward_items.jsonl`` row's ``reference``, see :func:`item_scores`)."""
STAGES = ("eval_base", "eval")
"""Evaluation stages whose item files make arms, in this order."""
COLUMNS = ["metric", "arm_a", "arm_b", "pairs", "mean_a", "mean_b", "diff", "diff_ci95_low", "diff_ci95_high",
           "a_higher", "b_higher", "ties", "wilcoxon_p"]


class _Run(Protocol):
    name: str
    path: str
    overrides: Mapping[str, str]
    config: Mapping[str, Any]


def item_scores(run_path: str | Path, stage: str = "eval",
                metrics: Sequence[str] = METRICS) -> dict[tuple[str, str], dict[str, float]]:
    """``(split, item id) -> {metric: value}`` from ``<run_path>/<stage>/reward_items.jsonl`` ({} when absent).
    The values are the item's reference numbers (its ``reference`` field, measured by the rule every run is
    compared by, opgrpo.reward.evaluation), else, in a file from before them, its own-threshold numbers.

    A line that is not a JSON object with an ``id`` is skipped and counted in one warning naming the file and the
    line numbers; a non-numeric metric is left out of that item (so it joins no pair for that metric).
    """
    path = Path(run_path) / stage / "reward_items.jsonl"
    if not path.is_file():
        return {}
    out: dict[tuple[str, str], dict[str, float]] = {}
    bad: list[int] = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                bad.append(n)
                continue
            if not isinstance(row, dict) or not isinstance(row.get("id"), (str, int)):
                bad.append(n)
                continue
            src = row["reference"] if isinstance(row.get("reference"), dict) else row  # the headline rule's numbers
            values = {m: float(src[m]) for m in metrics
                      if isinstance(src.get(m), (int, float)) and not isinstance(src.get(m), bool)
                      and math.isfinite(float(src[m]))}
            out[(str(row.get("split", "")), str(row["id"]))] = values
    if bad:
        log.warning("paired comparison: %s: %d unreadable line(s) skipped (lines %s)", path, len(bad),
                    ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else ""))
    return out


def arm_scores(runs: Sequence[_Run], stage: str = "eval") -> dict[tuple[str, str, str], dict[str, float]]:
    """``(seed, split, item id) -> {metric: value}`` over the runs of one arm at ``stage``; a run without a known
    seed is keyed by its name, so it pairs with nothing in another group."""
    out: dict[tuple[str, str, str], dict[str, float]] = {}
    for run in runs:
        seed = seed_of(run) or f"run:{run.name}"
        for (split, item), values in item_scores(run.path, stage).items():
            out[(seed, split, item)] = values
    return out


def _wilcoxon(diffs: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value, zero differences dropped; 1.0 when every difference is 0, NaN
    with fewer than 2 pairs."""
    from scipy import stats

    nonzero = [d for d in diffs if d != 0]
    if len(diffs) < 2:
        return math.nan
    if not nonzero:
        return 1.0
    return float(stats.wilcoxon(nonzero).pvalue)


def paired_table(runs: Sequence[_Run], groups: Sequence[Sequence[int]], names: Sequence[str],
                 metrics: Sequence[str] = METRICS, stages: Sequence[str] = STAGES):
    """One row per metric and pair of arms sharing at least 2 (seed, split, item) keys.

    ``groups``: indices into ``runs`` (the seed groups), ``names`` their labels. Each group makes one arm per stage
    in ``stages`` that has item files (``"<name> [eval_base]"`` and ``"<name>"`` for ``eval``). Columns: metric,
    arm_a, arm_b, pairs, mean_a, mean_b, diff (mean of a - b), diff_ci95_low/high (95% Student-t interval of the
    mean difference), a_higher, b_higher, ties (pair counts), wilcoxon_p.
    """
    import pandas as pd

    arms: list[tuple[str, dict]] = []
    for idx, name in zip(groups, names):
        members = [runs[i] for i in idx]
        for stage in stages:
            scores = arm_scores(members, stage)
            if scores:
                arms.append((name if stage == "eval" else f"{name} [{stage}]", scores))
    rows = []
    for metric in metrics:
        for (name_a, a), (name_b, b) in itertools.combinations(arms, 2):
            keys = sorted(k for k in a.keys() & b.keys() if metric in a[k] and metric in b[k])
            if len(keys) < 2:
                continue
            xs = [a[k][metric] for k in keys]
            ys = [b[k][metric] for k in keys]
            diffs = [x - y for x, y in zip(xs, ys)]
            mean, half, n = t_interval(diffs)
            rows.append({
                "metric": metric, "arm_a": name_a, "arm_b": name_b, "pairs": n,
                "mean_a": sum(xs) / n, "mean_b": sum(ys) / n, "diff": mean,
                "diff_ci95_low": mean - half, "diff_ci95_high": mean + half,
                "a_higher": sum(d > 0 for d in diffs), "b_higher": sum(d < 0 for d in diffs),
                "ties": sum(d == 0 for d in diffs), "wilcoxon_p": _wilcoxon(diffs),
            })
    return pd.DataFrame(rows, columns=COLUMNS)
