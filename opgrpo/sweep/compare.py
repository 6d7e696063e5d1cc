"""Side-by-side NLI metrics of several runs: a CSV and a Markdown table, and a bar plot of accuracy per split.

``compare_runs(run_dirs, out_dir)`` reads each run's ``nli_metrics.json`` (written by
``opgrpo.evaluation.metrics.write_eval_outputs``) and writes ``nli_comparison.csv``, ``nli_comparison.md``
and ``nli_accuracy.png``; the ``compare`` stage of the app calls it.
"""
from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from opgrpo.evaluation.metrics import (
    METRIC_KEYS,
    METRICS_JSON,
    OVERALL,
    format_number,
    split_order,
)
from opgrpo.utils.jsonio import jsonable

__all__ = ["compare_runs"]

logger = logging.getLogger(__name__)


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
    splits = split_order({s for m in metrics.values() for s in m if s != OVERALL})
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
                writer.writerow([name, split, *("" if jsonable(m.get(k)) is None else m.get(k)
                                                 for k in METRIC_KEYS)])

    def cell(m: Mapping[str, Any]) -> str:
        if not m or math.isnan(_nan(m.get("accuracy"))):
            return "-"
        acc, err, mean = (format_number(v, 3) for v in (m["accuracy"], m.get("accuracy_stderr"), m.get("mean")))
        return f"{acc} ± {err} ({mean})"

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
