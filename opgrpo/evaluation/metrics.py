"""NLI benchmark metrics per split of one run, and their files.

- :func:`split_metrics`: per test split (and "overall") the mean NLI score, its standard deviation as the
  authors computed it (``np.std``, ddof 0: the key is ``std_ddof0``) and standard error (that std / sqrt(n), as
  theirs), and accuracy = share of items scoring strictly above the threshold (0.33 in the paper), with its
  binomial standard error; and the counts of items without references (scored 0) and of responses without a
  parsable core and summary (``unparsed``).
- :func:`write_eval_outputs` / :func:`format_table`: ``nli_metrics.json``, ``nli_metrics.csv`` and a
  per-item ``nli_items.jsonl`` in a run directory; a printable table.

Undefined statistics (anything over an empty split) are NaN in memory and ``null`` in JSON; the std of one
item is 0 (ddof 0).
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
METRIC_KEYS = ("count", "skipped", "no_references", "unparsed", "mean", "std_ddof0", "stderr", "accuracy",
               "accuracy_stderr")
"""The columns of nli_metrics.csv, in order (``std_ddof0``: ``np.std`` with ddof 0, the authors' std)."""


def _stats(scores: Sequence[float], threshold: float, counted: Mapping[str, int]) -> dict[str, float]:
    n = len(scores)
    nan = float("nan")
    counts = {k: int(counted.get(k, 0)) for k in ("skipped", "no_references", "unparsed")}
    if n == 0:
        return {"count": 0, **counts, "mean": nan, "std_ddof0": nan, "stderr": nan, "accuracy": nan,
                "accuracy_stderr": nan}
    x = np.asarray(scores, dtype=np.float64)
    std = float(np.std(x))  # ddof 0, as the authors' eva.py
    acc = float(np.mean(x > threshold))
    return {"count": n, **counts, "mean": float(x.mean()), "std_ddof0": std, "stderr": std / math.sqrt(n),
            "accuracy": acc, "accuracy_stderr": math.sqrt(acc * (1.0 - acc) / n)}


def split_order(names) -> list[str]:
    """Split names in the benchmark's order ("<5", "5".."10", ">10"), then any others sorted."""
    known = ["<5", *SPLIT_NAMES]
    return [s for s in known if s in names] + sorted(s for s in names if s not in known)


def split_metrics(item_scores: Sequence[ItemScore], split_of_item: Mapping[str, str] | Callable[[str], str],
                  threshold: float = 0.33) -> dict[str, dict[str, float]]:
    """``{split: {count, skipped, no_references, unparsed, mean, std_ddof0, stderr, accuracy, accuracy_stderr}}``
    plus ``"overall"``.

    ``split_of_item`` maps an item id to its split name (a dict or a callable). Accuracy counts scores
    strictly greater than ``threshold``. ``std_ddof0`` is ``np.std`` of the scores (ddof 0, the authors' std;
    0 for one item), ``stderr`` = std_ddof0 / sqrt(count) the standard error of the mean score as they computed
    it, and ``accuracy_stderr`` = sqrt(acc (1 - acc) / count) that of the accuracy. ``no_references``: items
    without a reference perspective (scored 0, in every statistic); ``unparsed``: items whose response has no
    non-empty core and summary (``ItemScore.parsed`` False; scored 0 when NLI scores the core). Items with
    ``skipped`` (or a NaN score) are counted in ``skipped`` and left out of every statistic.
    """
    lookup = split_of_item if callable(split_of_item) else split_of_item.__getitem__
    scores: dict[str, list[float]] = {}
    counted: dict[str, dict[str, int]] = {}
    for s in item_scores:
        split = str(lookup(s.id))
        scores.setdefault(split, [])
        c = counted.setdefault(split, {"skipped": 0, "no_references": 0, "unparsed": 0})
        c["no_references"] += bool(s.no_references)
        c["unparsed"] += s.parsed is False
        if s.skipped or s.score is None or math.isnan(s.score):
            c["skipped"] += 1
        else:
            scores[split].append(float(s.score))
    out = {split: _stats(scores[split], threshold, counted[split]) for split in split_order(scores)}
    total = {k: sum(c[k] for c in counted.values()) for k in ("skipped", "no_references", "unparsed")}
    out[OVERALL] = _stats([v for vs in scores.values() for v in vs], threshold, total)
    return out


def write_eval_outputs(run_dir: str | Path, metrics: Mapping[str, Mapping[str, float]],
                       item_scores: Sequence[ItemScore],
                       split_of_item: Mapping[str, str] | Callable[[str], str] | None = None) -> dict[str, Path]:
    """Write ``nli_metrics.json`` (``{split: {metric: value}}``), ``nli_metrics.csv`` (one row per split)
    and ``nli_items.jsonl`` (id, split, score, skipped, no_references, parsed, text (what was scored: core, full or
    none), attempts, n_sentences, perspectives [{name, score}], response (whole)) under ``run_dir``; returns their paths by kind (``metrics_json``, ``metrics_csv``,
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
                "no_references": s.no_references,
                "parsed": s.parsed,
                "text": s.text,
                "attempts": s.attempts,
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
    """A fixed-width table, one row per split: count, items without references, unparsed responses, mean,
    std (ddof 0), stderr, accuracy (+- its stderr)."""
    header = ["split", "count", "no_refs", "unparsed", "mean", "std(ddof0)", "stderr", "accuracy", "acc_stderr"]
    rows = [[str(split), *(format_number(m.get(k, 0)) for k in ("count", "no_references", "unparsed")),
             *(format_number(m.get(k)) for k in ("mean", "std_ddof0", "stderr", "accuracy", "accuracy_stderr"))]
            for split, m in metrics.items()]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
