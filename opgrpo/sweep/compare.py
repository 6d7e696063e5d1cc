"""Several runs side by side: coverage, uniqueness, every reward component, the totals and NLI per split.

The headline numbers are those of one reference rule (the table's ``coverage_rate``, ``uniqueness_rate``,
``reward/total_at_reference``: opgrpo.sweep.table), each run's own-threshold rates beside them (``own/*``).

``compare_run_dirs(run_dirs, out_dir)`` (the ``compare`` stage) takes exactly the given run directories and
writes ``comparison.csv`` (one row per run, the columns of the sweep report's table), ``comparison.md`` (one
column per run, headed by the NLI backend that scored it; the runs without evaluation numbers listed
below with the reason), ``pareto.png`` (coverage rate vs uniqueness rate) and, for the runs with NLI
metrics, the per-split NLI comparison of :func:`compare_runs`.

``compare_runs(run_dirs, out_dir)`` reads each run's ``nli_metrics.json`` (written by
``opgrpo.evaluation.metrics.write_eval_outputs``) and writes ``nli_comparison.csv``, ``nli_comparison.md``
and ``nli_accuracy.png`` (accuracy and mean NLI score per split).
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

__all__ = ["compare_run_dirs", "compare_runs"]

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
                 labels: Sequence[str] | None = None, backends: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Side by side NLI metrics of several runs (run directories or ``nli_metrics.json`` paths).

    Writes ``nli_comparison.csv`` (one row per split and run: label, split, and every metric),
    ``nli_comparison.md`` (splits x runs, "accuracy +- stderr (mean)") and ``nli_accuracy.png`` (grouped
    bars per split: accuracy with binomial standard-error bars, and the mean NLI score, which still moves
    where every accuracy is 0). ``backends``: label -> the NLI backend that scored the run, shown in the
    Markdown header and the legend. Returns ``{"csv", "markdown", "plot"}`` paths and ``"metrics"`` =
    ``{label: {split: {...}}}``.
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
        metrics[name] = {s: {k: _nan(v) if k not in ("count", "skipped", "no_references", "unparsed") else v
                              for k, v in m.items()}
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

    backends = dict(backends or {})

    def head(name: str) -> str:
        return f"{name} ({backends[name]})" if backends.get(name) else name

    md = ["| split | " + " | ".join(head(n) for n in names) + " |", "|---|" + "---|" * len(names)]
    md += [f"| {s} | " + " | ".join(cell(metrics[n].get(s, {})) for n in names) + " |" for s in splits]
    md.append("")
    md.append("Cells: accuracy (share of items with NLI score > threshold) ± its standard error (mean score).")
    paths["markdown"].write_text("\n".join(md) + "\n", encoding="utf-8")

    fig, axes = plt.subplots(1, 2, figsize=(2 * max(5.0, 0.8 * len(splits) * max(1, len(names)) ** 0.5 + 1.5), 4))
    width = 0.8 / len(names)
    x = np.arange(len(splits))
    for k, name in enumerate(names):
        acc = [_nan(metrics[name].get(s, {}).get("accuracy")) for s in splits]
        err = [_nan(metrics[name].get(s, {}).get("accuracy_stderr")) for s in splits]
        err = [0.0 if math.isnan(e) else e for e in err]
        mean = [_nan(metrics[name].get(s, {}).get("mean")) for s in splits]
        offset = x + (k - (len(names) - 1) / 2) * width
        axes[0].bar(offset, acc, width, yerr=err, capsize=3, label=head(name))
        axes[1].bar(offset, mean, width, label=head(name))
    for ax, ylabel, title in ((axes[0], "NLI accuracy (share of items above the threshold)", "accuracy"),
                              (axes[1], "mean NLI score", "mean score")):
        ax.set_xticks(x, splits)
        ax.set_xlabel("test split (number of reference perspectives)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(paths["plot"], dpi=120)
    plt.close(fig)
    return {**paths, "metrics": metrics}


def compare_run_dirs(run_dirs: Sequence[str | Path], out_dir: str | Path, *, labels: Sequence[str] = (),
                     reference_weights: Mapping[str, float] | None = None,
                     allow_mixed_estimators: bool = False) -> dict[str, Any]:
    """Exactly ``run_dirs``, side by side (see the module docstring); ``labels`` name them (one per entry,
    default: their paths), ``reference_weights`` weigh ``reward/total_at_reference`` (None = the paper's).
    Runs scored by different estimators raise ``MixedEstimatorsError``, runs whose headline numbers were measured
    by different reference rules ``MixedRulesError`` (opgrpo.sweep.records.check_rules), unless
    ``allow_mixed_estimators`` (then they are marked in the estimator / reference_rule column and a warning).

    A run without evaluation numbers (or failed, unfinished, missing) is left out of the table and listed
    with the reason. Returns ``{"runs", "compared", "left_out" (their names), "csv", "markdown",
    "pareto_plot", "nli_csv", "nli_markdown", "nli_plot" ("" when no run has NLI metrics), "out_dir",
    "warnings", "warning"}``.
    """
    from opgrpo.sweep.plots import plot_pareto
    from opgrpo.sweep.records import check_estimators, runs_from_dirs
    from opgrpo.sweep.report_text import cell_text, markdown_table, report_notes
    from opgrpo.sweep.table import runs_table
    from opgrpo.utils.runfiles import COMPLETED

    if not run_dirs:
        raise ValueError("compare needs at least one run directory (report.run_dirs)")
    records = runs_from_dirs(run_dirs, labels)
    mixed = check_estimators(records, allow_mixed_estimators)
    df = runs_table(records, reference_weights)
    notes, warnings = report_notes(df, records)
    warnings = [*mixed, *warnings]
    for w in warnings:
        logger.warning("compare: %s", w)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Any] = {"csv": out_dir / "comparison.csv", "markdown": out_dir / "comparison.md",
                             "pareto_plot": out_dir / "pareto.png"}
    df.to_csv(paths["csv"], index=False)
    done = [i for i, r in enumerate(records) if r.status == COMPLETED]
    overridden = {k for r in records for k in r.overrides}
    left_out = [r for r in records if r.status != COMPLETED]
    # overrides and text facts that every compared run shares: said once above the table, not in each column
    facts = [c for c in df.attrs.get("facts", []) if c != "nli_backend"]
    texts = [c for c in df.columns if c in overridden and c not in facts] + facts  # the overrides first
    shared = {c: cell_text(df.loc[done[0], c]) for c in texts
              if len(done) > 1 and len({cell_text(df.loc[i, c]) for i in done}) == 1}
    skip = {"run", "status", "nli_backend", "pareto", "error", "path", *shared}
    rows = [c for c in df.columns if c not in skip and any(cell_text(df.loc[i, c]) for i in done)]
    header = ["", *(f"{records[i].name} ({records[i].nli_backend or 'NLI backend unknown'})" for i in done)]
    md = [f"# Runs compared ({len(done)} of {len(records)})", ""]
    md += [x for w in warnings for x in (f"**Warning:** {w}", "")]
    md += [x for n in notes for x in (n, "")]
    if any(shared.values()):
        md += ["Shared by the compared runs: " + ", ".join(f"{k}={v}" for k, v in shared.items() if v), ""]
    table = markdown_table(header, [[c, *(df.loc[i, c] for i in done)] for c in rows]) if done else "(no run)"
    gone = [[r.name, r.status, r.error, r.path] for r in left_out]
    md += [table, "", "## Left out", "",
           markdown_table(["run", "status", "reason", "path"], gone) if gone else "(none)", ""]
    paths["markdown"].write_text("\n".join(md), encoding="utf-8")
    plot_pareto(records, df, paths["pareto_plot"])
    with_nli = [records[i] for i in done if (Path(records[i].path) / "eval" / METRICS_JSON).is_file()]
    nli: dict[str, Any] = {"csv": "", "markdown": "", "plot": ""}
    if with_nli:
        nli = compare_runs([Path(r.path) / "eval" / METRICS_JSON for r in with_nli], out_dir,
                           labels=[r.name for r in with_nli], backends={r.name: r.nli_backend for r in with_nli})
    return {"runs": len(records), "compared": len(done), "left_out": [r.name for r in left_out],
            **{k: str(v) for k, v in paths.items()},
            "nli_csv": str(nli["csv"]), "nli_markdown": str(nli["markdown"]), "nli_plot": str(nli["plot"]),
            "out_dir": str(out_dir), "warnings": warnings, "warning": " | ".join(warnings)}
