"""NLI benchmark metrics per split of one run, and their files.

- :func:`split_metrics`: per test split (and "overall") the mean NLI score, its sample standard
  deviation (ddof=1) and standard error (std / sqrt(n)), and accuracy = share of items scoring
  strictly above the threshold (0.33 in the paper), with its binomial standard error.
- :func:`write_eval_outputs` / :func:`format_table`: ``nli_metrics.json``, ``nli_metrics.csv`` and a
  per-item ``nli_items.jsonl`` in a run directory; a printable table.

Undefined statistics (std of one item, anything over an empty split) are NaN in memory and ``null``
in JSON.
"""
from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from opgrpo.benchmark import SPLIT_NAMES
from opgrpo.evaluation.nli import ItemScore
from opgrpo.utils.jsonio import jsonable as _jsonable

METRICS_JSON = "nli_metrics.json"
METRICS_CSV = "nli_metrics.csv"
ITEMS_JSONL = "nli_items.jsonl"
OVERALL = "overall"
METRIC_KEYS = ("count", "skipped", "mean", "std", "stderr", "accuracy", "accuracy_stderr")


def _stats(scores: Sequence[float], threshold: float, skipped: int) -> dict[str, float]:
    n = len(scores)
    nan = float("nan")
    if n == 0:
        return {"count": 0, "skipped": skipped, "mean": nan, "std": nan, "stderr": nan, "accuracy": nan,
                "accuracy_stderr": nan}
    x = np.asarray(scores, dtype=np.float64)
    std = float(x.std(ddof=1)) if n > 1 else nan
    acc = float(np.mean(x > threshold))
    return {"count": n, "skipped": skipped, "mean": float(x.mean()), "std": std,
            "stderr": std / math.sqrt(n) if n > 1 else nan, "accuracy": acc,
            "accuracy_stderr": math.sqrt(acc * (1.0 - acc) / n)}


def split_order(names) -> list[str]:
    """Split names in the benchmark's order ("<5", "5".."10", ">10"), then any others sorted."""
    known = ["<5", *SPLIT_NAMES]
    return [s for s in known if s in names] + sorted(s for s in names if s not in known)


def split_metrics(item_scores: Sequence[ItemScore], split_of_item: Mapping[str, str] | Callable[[str], str],
                  threshold: float = 0.33) -> dict[str, dict[str, float]]:
    """``{split: {count, skipped, mean, std, stderr, accuracy, accuracy_stderr}}`` plus ``"overall"``.

    ``split_of_item`` maps an item id to its split name (a dict or a callable). Accuracy counts scores
    strictly greater than ``threshold``. ``std`` is the sample standard deviation (ddof=1, NaN for one
    item), ``stderr`` = std / sqrt(count) is the standard error of the mean score, and
    ``accuracy_stderr`` = sqrt(acc (1 - acc) / count) that of the accuracy. Skipped items are counted
    in ``skipped`` and left out of every statistic.
    """
    lookup = split_of_item if callable(split_of_item) else split_of_item.__getitem__
    scores: dict[str, list[float]] = {}
    skipped: dict[str, int] = {}
    for s in item_scores:
        split = str(lookup(s.id))
        scores.setdefault(split, [])
        skipped.setdefault(split, 0)
        if s.skipped or s.score is None or math.isnan(s.score):
            skipped[split] += 1
        else:
            scores[split].append(float(s.score))
    out = {split: _stats(scores[split], threshold, skipped[split]) for split in split_order(scores)}
    out[OVERALL] = _stats([v for vs in scores.values() for v in vs], threshold, sum(skipped.values()))
    return out


def write_eval_outputs(run_dir: str | Path, metrics: Mapping[str, Mapping[str, float]],
                       item_scores: Sequence[ItemScore],
                       split_of_item: Mapping[str, str] | Callable[[str], str] | None = None) -> dict[str, Path]:
    """Write ``nli_metrics.json`` (``{split: {metric: value}}``), ``nli_metrics.csv`` (one row per split)
    and ``nli_items.jsonl`` (id, split, score, skipped, n_sentences, perspectives [{name, score}],
    response) under ``run_dir``; returns their paths by kind (``metrics_json``, ``metrics_csv``,
    ``items_jsonl``)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = {"metrics_json": run_dir / METRICS_JSON, "metrics_csv": run_dir / METRICS_CSV,
             "items_jsonl": run_dir / ITEMS_JSONL}
    paths["metrics_json"].write_text(json.dumps(_jsonable(dict(metrics)), indent=2) + "\n", encoding="utf-8")
    with paths["metrics_csv"].open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["split", *METRIC_KEYS])
        for split, row in metrics.items():
            writer.writerow([split, *("" if _jsonable(row.get(k)) is None else row.get(k) for k in METRIC_KEYS)])
    lookup = None
    if split_of_item is not None:
        lookup = split_of_item if callable(split_of_item) else split_of_item.get
    with paths["items_jsonl"].open("w", encoding="utf-8") as f:
        for s in item_scores:
            record = {
                "id": s.id,
                "split": lookup(s.id) if lookup else None,
                "score": s.score,
                "skipped": s.skipped,
                "n_sentences": s.n_sentences,
                "perspectives": [{"name": n, "score": v} for n, v in
                                 zip(s.perspective_names or [""] * len(s.perspective_scores), s.perspective_scores)],
                "response": s.response,
            }
            f.write(json.dumps(_jsonable(record), ensure_ascii=False) + "\n")
    return paths


def format_number(value: Any, digits: int = 4) -> str:
    """A table cell: "-" for None or NaN, integers as they are, other numbers with ``digits`` decimals."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    return f"{float(value):.{digits}f}"


def format_table(metrics: Mapping[str, Mapping[str, float]]) -> str:
    """A fixed-width table, one row per split: count, skipped, mean, std, stderr, accuracy (+- its stderr)."""
    header = ["split", "count", "skipped", "mean", "std", "stderr", "accuracy", "acc_stderr"]
    rows = [[str(split), format_number(m.get("count")), format_number(m.get("skipped", 0)),
             *(format_number(m.get(k)) for k in ("mean", "std", "stderr", "accuracy", "accuracy_stderr"))]
            for split, m in metrics.items()]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
