"""The sweep report: every run of a sweep side by side, and the coverage-vs-uniqueness trade-off.

``build_report(sweep_dir, out_dir)`` collects every run directory under ``sweep_dir`` (at any depth: a
Hydra multirun ``<sweep>/<job>/``, an Optuna study's ``trial_<n>/``, or a single run), and writes to
``out_dir``:

    runs.csv     one row per run: status, its overrides (one column per overridden key), the final
                 evaluation reward components and rates, NLI accuracy per split, training cost, the
                 last GRPO step's reward components, whether it is on the Pareto front, and the error
    runs.md      the same table in Markdown (completed runs), then the failed/unfinished runs
    pareto.png   coverage rate vs uniqueness rate of the completed runs, the Pareto front (both
                 maximised) as a step line, each point labelled by the overrides that vary, coloured
                 by NLI overall accuracy (grey where a run has none)
    curves.png   reward-component curves over GRPO steps, one line per run (``grpo/metrics.jsonl``)
    index.html   the table and both images (embedded), failed and unfinished runs in their own section

A run whose directory is incomplete or unreadable (no status, no summary, corrupt JSON, a failed run)
never stops the report: it is listed as failed or unfinished with the reason. Plain functions, no
Hydra; matplotlib runs on the Agg backend. Runs can also be pulled from a W&B project
(``wandb_project=``) when wandb is installed and online; offline that part is skipped and noted.

The parts: ``opgrpo.sweep.records`` reads the runs, ``opgrpo.sweep.table`` builds the table and the Pareto
front, ``opgrpo.sweep.plots`` draws the figures; this module writes the files (``python -m opgrpo.sweep.report``).
"""
from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from opgrpo.sweep.plots import plot_curves, plot_pareto
from opgrpo.sweep.records import (
    EVAL_STAGE,
    UNFINISHED,
    RunRecord,
    collect_runs,
    wandb_runs,
)
from opgrpo.sweep.table import runs_table
from opgrpo.utils.runfiles import COMPLETED, FAILED

__all__ = ["build_report", "main"]


# ---- text outputs -------------------------------------------------------------------------------------------
def _counts_line(df) -> str:
    n = {k: int((df["status"] == k).sum()) for k in (COMPLETED, FAILED, UNFINISHED)}
    return f"{len(df)} runs: {n[COMPLETED]} completed, {n[FAILED]} failed, {n[UNFINISHED]} unfinished"


def _common_line(df) -> str:
    common = df.attrs.get("common_overrides", {})
    return "Overrides shared by every run: " + (" ".join(f"{k}={v}" for k, v in common.items()) or "none")


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return "" if value is None else str(value)


def _display_columns(df) -> list[str]:
    """The columns worth showing: overrides that vary, metrics that some run has; not path/error."""
    constant = set(df.attrs.get("common_overrides", {}))
    cols = []
    for c in df.columns:
        if c in ("path", "error") or c in constant:
            continue
        if df[c].dtype.kind == "f" and df[c].isna().all():
            continue
        cols.append(c)
    return cols


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(_cell(v)) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _failed_rows(records: Sequence[RunRecord]) -> list[list[str]]:
    return [[r.name, r.status, r.error, " ".join(f"{k}={v}" for k, v in r.overrides.items()), r.path]
            for r in records if r.status != COMPLETED]


def _write_markdown(df, records, path: Path, sweep_dir: str, front: Sequence[str]) -> None:
    done = df[df["status"] == COMPLETED]
    cols = _display_columns(df)
    parts = [f"# Sweep report: {sweep_dir}", "",
             _counts_line(df) + ".", "",
             _common_line(df), "",
             "Pareto front (coverage rate vs uniqueness rate, both maximised): " + (", ".join(front) or "none"), "",
             "## Completed runs", "",
             _markdown_table(cols, done[cols].values.tolist()) if len(done) else "(none)", ""]
    failed = _failed_rows(records)
    parts += ["## Failed and unfinished runs", "",
              _markdown_table(["run", "status", "error", "overrides", "path"], failed) if failed else "(none)", ""]
    path.write_text("\n".join(parts), encoding="utf-8")


def _html_table(header: Sequence[str], rows: Sequence[Sequence[Any]], highlight: Sequence[bool] = ()) -> str:
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>"]
    for i, row in enumerate(rows):
        cls = ' class="front"' if i < len(highlight) and highlight[i] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _img(path: Path | None, alt: str) -> str:
    if path is None or not path.is_file():
        return f"<p>({html.escape(alt)}: nothing to plot)</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def _write_html(df, records, path: Path, sweep_dir: str, front: Sequence[str], images: Mapping[str, Path | None],
                notes: Sequence[str]) -> None:
    done = df[df["status"] == COMPLETED]
    cols = _display_columns(df)
    failed = _failed_rows(records)
    counts = _counts_line(df)
    body = [
        f"<h1>Sweep report</h1><p><code>{html.escape(sweep_dir)}</code></p><p>{html.escape(counts)}</p>",
        f"<p>{html.escape(_common_line(df))}</p>",
        *(f"<p><em>{html.escape(n)}</em></p>" for n in notes),
        "<h2>Coverage vs uniqueness</h2>",
        f"<p>Pareto front (both maximised): {html.escape(', '.join(front) or 'none')}</p>",
        _img(images.get("pareto"), "Pareto plot"),
        "<h2>Completed runs</h2>",
        _html_table(cols, done[cols].values.tolist(), list(done["pareto"])) if len(done) else "<p>(none)</p>",
        ("<p>Rows on the Pareto front are highlighted. Metrics are from the final evaluation "
         f"(<code>{EVAL_STAGE}/...</code>); <code>grpo_last/*</code> are the last GRPO step's reward components.</p>"),
        "<h2>Reward curves over GRPO steps</h2>",
        _img(images.get("curves"), "reward curves"),
        "<h2>Failed and unfinished runs</h2>",
        _html_table(["run", "status", "error", "overrides", "path"], failed) if failed else "<p>(none)</p>",
    ]
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}tr.front{background:#fff3c4}"
             "img{max-width:100%}")
    path.write_text(f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Sweep report</title>"
                    f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n",
                    encoding="utf-8")


# ---- entry point --------------------------------------------------------------------------------------------
def build_report(sweep_dir: str | Path, out_dir: str | Path, *, wandb_project: str = "") -> dict[str, Any]:
    """Write runs.csv, runs.md, pareto.png, curves.png (when any run has GRPO metrics) and index.html to ``out_dir``.

    Returns ``{"runs", "completed", "failed", "unfinished", "pareto" (run names along the front),
    "pareto_front" (the same, comma-joined), "csv", "markdown", "pareto_plot", "curves_plot" ("" if none),
    "html", "out_dir"}`` (paths as strings).
    """
    sweep_dir, out_dir = Path(sweep_dir), Path(out_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"sweep directory {str(sweep_dir)!r} does not exist")
    out_dir.mkdir(parents=True, exist_ok=True)
    records = collect_runs(sweep_dir, exclude=[out_dir])
    notes: list[str] = []
    if wandb_project:
        extra, note = wandb_runs(wandb_project)
        records += extra
        notes.append(note)
    df = runs_table(records)
    front = list(df.attrs.get("front_order", []))
    paths = {"csv": out_dir / "runs.csv", "markdown": out_dir / "runs.md", "pareto_plot": out_dir / "pareto.png",
             "curves_plot": out_dir / "curves.png", "html": out_dir / "index.html"}
    df.to_csv(paths["csv"], index=False)
    _write_markdown(df, records, paths["markdown"], str(sweep_dir), front)
    plot_pareto(records, df, paths["pareto_plot"])
    if plot_curves(records, paths["curves_plot"]) is None:
        paths["curves_plot"].unlink(missing_ok=True)  # a stale one from an earlier report would mislead
        paths["curves_plot"] = None
    _write_html(df, records, paths["html"], str(sweep_dir), front,
                {"pareto": paths["pareto_plot"], "curves": paths["curves_plot"]}, notes)
    status = list(df["status"]) if len(df) else []
    return {
        "runs": len(records),
        "completed": status.count(COMPLETED),
        "failed": status.count(FAILED),
        "unfinished": status.count(UNFINISHED),
        "pareto": front,
        "pareto_front": ", ".join(front),
        **{k: "" if v is None else str(v) for k, v in paths.items()},
        "out_dir": str(out_dir),
        **({"wandb": notes[0]} if notes else {}),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m opgrpo.sweep.report SWEEP_DIR [OUT_DIR] [--wandb-project P]``."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m opgrpo.sweep.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep_dir")
    ap.add_argument("out_dir", nargs="?", help="default: SWEEP_DIR/report")
    ap.add_argument("--wandb-project", default="")
    args = ap.parse_args(argv)
    out = build_report(Path(args.sweep_dir), Path(args.out_dir or Path(args.sweep_dir) / "report"),
                       wandb_project=args.wandb_project)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()
