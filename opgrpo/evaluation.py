"""NLI benchmark metrics, their files, and side-by-side comparisons of runs.

- :func:`split_metrics`: per test split (and "overall") the mean NLI score, its sample standard
  deviation (ddof=1) and standard error (std / sqrt(n)), and accuracy = share of items scoring
  strictly above the threshold (0.33 in the paper), with its binomial standard error.
- :func:`write_eval_outputs` / :func:`format_table`: ``nli_metrics.json``, ``nli_metrics.csv`` and a
  per-item ``nli_items.jsonl`` in a run directory; a printable table.
- :func:`load_responses`: responses from a CSV/JSONL file instead of generating them.
- :func:`compare_runs`: a CSV/Markdown table and a bar plot of accuracy per split over several runs.

Undefined statistics (std of one item, anything over an empty split) are NaN in memory and ``null``
in JSON.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from opgrpo.data import SPLIT_NAMES
from opgrpo.jsonable import jsonable as _jsonable
from opgrpo.nli import ItemScore

logger = logging.getLogger(__name__)

METRICS_JSON = "nli_metrics.json"
METRICS_CSV = "nli_metrics.csv"
ITEMS_JSONL = "nli_items.jsonl"
OVERALL = "overall"
METRIC_KEYS = ("count", "skipped", "mean", "std", "stderr", "accuracy", "accuracy_stderr")
RESPONSE_COLUMNS = ("response", "completion", "output", "generation")


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


def _split_order(names) -> list[str]:
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
    out = {split: _stats(scores[split], threshold, skipped[split]) for split in _split_order(scores)}
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


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    return f"{float(value):.{digits}f}"


def format_table(metrics: Mapping[str, Mapping[str, float]]) -> str:
    """A fixed-width table, one row per split: count, skipped, mean, std, stderr, accuracy (+- its stderr)."""
    header = ["split", "count", "skipped", "mean", "std", "stderr", "accuracy", "acc_stderr"]
    rows = [[str(split), _fmt(m.get("count")), _fmt(m.get("skipped", 0)), _fmt(m.get("mean")),
             _fmt(m.get("std")), _fmt(m.get("stderr")), _fmt(m.get("accuracy")), _fmt(m.get("accuracy_stderr"))]
            for split, m in metrics.items()]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --------------------------------------------------------------------------- responses file


def _read_records(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8", errors="replace")
    if suffix == ".csv":
        return list(csv.DictReader(io.StringIO(text, newline="")))
    if suffix in (".jsonl", ".ndjson", ".json"):
        stripped = text.lstrip()
        if suffix == ".json" and stripped.startswith("["):
            records = json.loads(stripped)
        else:
            records = []
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise ValueError(f"{path}: line {n} is not valid JSON ({e.msg})") from None
        bad = [i for i, r in enumerate(records, 1) if not isinstance(r, dict)]
        if bad:
            raise ValueError(f"{path}: record {bad[0]} is not a JSON object")
        return records
    raise ValueError(f"{path}: unknown responses file type {suffix!r}; expected .csv, .jsonl or .json")


def load_responses(path: str | Path, items: Sequence[Any]) -> list[str]:
    """The responses in ``path`` (CSV, JSON Lines or a JSON array) aligned with ``items``.

    The text column is ``response`` (or ``completion``, ``output``, ``generation``). With an ``id``
    column, rows are matched to ``items`` by id (``items`` are Items or plain ids); otherwise they are
    taken in row order and their count must equal ``len(items)``. Missing or unknown ids, repeated ids
    and count mismatches raise ``ValueError`` naming the file; an empty cell is an empty response.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"responses file {path} does not exist")
    records = _read_records(path)
    columns = set().union(*(r.keys() for r in records)) if records else set()
    column = next((c for c in RESPONSE_COLUMNS if c in columns), None)
    if column is None:
        raise ValueError(f"{path}: no response column; expected one of {RESPONSE_COLUMNS}, found {sorted(columns)}")
    ids = [str(getattr(it, "id", it)) for it in items]

    def text(record: Mapping[str, Any]) -> str:
        value = record.get(column)
        return "" if value is None else str(value)

    if "id" not in columns:
        if len(records) != len(items):
            raise ValueError(f"{path}: {len(records)} responses for {len(items)} items "
                             "(no 'id' column, so rows are matched by order)")
        return [text(r) for r in records]
    by_id: dict[str, str] = {}
    for n, r in enumerate(records, 1):
        rid = str(r.get("id", "")).strip()
        if not rid:
            raise ValueError(f"{path}: row {n} has an empty id")
        if rid in by_id:
            raise ValueError(f"{path}: id {rid!r} appears more than once (row {n})")
        by_id[rid] = text(r)
    wanted = set(ids)
    unknown = [i for i in by_id if i not in wanted]
    if unknown:
        raise ValueError(f"{path}: {len(unknown)} unknown id(s) not among the {len(ids)} items, e.g. {unknown[:5]}")
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise ValueError(f"{path}: {len(by_id)} responses for {len(ids)} items; missing ids, e.g. {missing[:5]}")
    return [by_id[i] for i in ids]


# --------------------------------------------------------------------------- comparing runs


def _metrics_file(run: Path) -> Path:
    if run.is_file():
        return run
    direct = run / METRICS_JSON
    if direct.exists():
        return direct
    found = sorted(run.rglob(METRICS_JSON))
    if not found:
        raise FileNotFoundError(f"no {METRICS_JSON} under {run}")
    if len(found) > 1:
        logger.warning("several %s under %s; using %s", METRICS_JSON, run, found[0])
    return found[0]


def _labels(runs: list[Path], labels: Sequence[str] | None) -> list[str]:
    if labels is not None:
        if len(labels) != len(runs):
            raise ValueError(f"{len(labels)} labels for {len(runs)} runs")
        return [str(x) for x in labels]
    names = [(r.parent if r.is_file() else r).name for r in runs]
    if len(set(names)) == len(names):
        return names
    return [str(r) for r in runs]


def _nan(value: Any) -> float:
    return float("nan") if value is None else float(value)


def compare_runs(run_dirs: Sequence[str | Path], out_dir: str | Path,
                 labels: Sequence[str] | None = None) -> dict[str, Any]:
    """Side by side NLI metrics of several runs (run directories or ``nli_metrics.json`` paths).

    Writes ``nli_comparison.csv`` (one row per split and run: label, split, and every metric),
    ``nli_comparison.md`` (splits x runs, "accuracy +- stderr (mean)") and ``nli_accuracy.png`` (grouped
    bars of accuracy per split with binomial standard-error bars). Returns ``{"csv", "markdown",
    "plot"}`` paths and ``"metrics"`` = ``{label: {split: {...}}}``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [Path(r) for r in run_dirs]
    if not runs:
        raise ValueError("compare_runs needs at least one run")
    names = _labels(runs, labels)
    metrics = {}
    for name, run in zip(names, runs):
        path = _metrics_file(run)
        metrics[name] = {s: {k: _nan(v) if k not in ("count", "skipped") else v for k, v in m.items()}
                         for s, m in json.loads(path.read_text(encoding="utf-8")).items()}
    splits = _split_order({s for m in metrics.values() for s in m if s != OVERALL})
    if any(OVERALL in m for m in metrics.values()):
        splits.append(OVERALL)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / "nli_comparison.csv", "markdown": out_dir / "nli_comparison.md",
             "plot": out_dir / "nli_accuracy.png"}
    with paths["csv"].open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "split", *METRIC_KEYS])
        for name in names:
            for split in splits:
                m = metrics[name].get(split, {})
                writer.writerow([name, split, *("" if _jsonable(m.get(k)) is None else m.get(k) for k in METRIC_KEYS)])

    def cell(m: Mapping[str, Any]) -> str:
        if not m or math.isnan(_nan(m.get("accuracy"))):
            return "-"
        return f"{_fmt(m['accuracy'], 3)} ± {_fmt(m.get('accuracy_stderr'), 3)} ({_fmt(m.get('mean'), 3)})"

    md = ["| split | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    md += [f"| {s} | " + " | ".join(cell(metrics[n].get(s, {})) for n in names) + " |" for s in splits]
    md.append("")
    md.append("Cells: accuracy (share of items with NLI score > threshold) ± its standard error (mean score).")
    paths["markdown"].write_text("\n".join(md) + "\n", encoding="utf-8")

    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(splits) * max(1, len(names)) ** 0.5 + 2), 4))
    width = 0.8 / len(names)
    x = np.arange(len(splits))
    for k, name in enumerate(names):
        acc = [_nan(metrics[name].get(s, {}).get("accuracy")) for s in splits]
        err = [_nan(metrics[name].get(s, {}).get("accuracy_stderr")) for s in splits]
        err = [0.0 if math.isnan(e) else e for e in err]
        ax.bar(x + (k - (len(names) - 1) / 2) * width, acc, width, yerr=err, capsize=3, label=name)
    ax.set_xticks(x, splits)
    ax.set_xlabel("test split (number of reference perspectives)")
    ax.set_ylabel("NLI accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(paths["plot"], dpi=120)
    plt.close(fig)
    return {**paths, "metrics": metrics}
