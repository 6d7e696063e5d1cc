"""The sweep report: runs side by side, and the coverage-vs-uniqueness trade-off.

``build_report(sweep_dir, out_dir)`` collects every run directory under ``sweep_dir`` (at any depth: a
Hydra multirun ``<sweep>/<job>/``, an Optuna study's ``trial_<n>/``, or a single run); with ``run_dirs=``
it takes exactly those run directories instead. It writes to ``out_dir`` (:func:`report_dir` says where a
report goes: ``report.out_dir``, else ``<sweep_dir>/report``):

    runs.csv     one row per run: status, the NLI backend, its overrides (one column per overridden key),
                 the final evaluation's rates and reward components, its own total (``reward/total``, its
                 own weights) and the total at the reference weights (``reward/total_at_reference``, the
                 same weights for every run: the paper's by default), NLI accuracy per split, training
                 cost, the last GRPO step's reward components, whether it is on the Pareto front, the error
    groups.csv   one row per group of completed runs that differ only by their seed (``table.group_table``,
                 ``opgrpo.sweep.seeds``): n_seeds, the runs and seeds, every number's mean and its 95%
                 Student-t half-width (``<column>_ci95``), whether the group is on the front of the means
    runs.md      the same table in Markdown (completed runs), the seed groups when a group has several
                 seeds, then the failed, unfinished and skipped runs
    pareto.png   coverage rate vs uniqueness rate, one point per seed group (95% error bars), the Pareto
                 front (both maximised) as a step line, each point labelled by the overrides that vary,
                 coloured by NLI overall accuracy on a fixed 0..1 scale
    curves.png   reward-component curves over GRPO steps and the total at the reference weights, one
                 line per run (``grpo/metrics.jsonl``); a run's own total is not drawn, nor a panel twice
    index.html   one self-contained page (plotly.js and the images embedded, opens offline): the
                 interactive scatter (hover: a group's runs, overrides and NLI numbers), the grouped table
                 (pandas, click a column to sort), the curves, every run's row, the failed, unfinished and
                 skipped runs, the warnings and notes

A run whose directory is incomplete or unreadable (no status, no summary, corrupt JSON, a failed run)
never stops the report: it is listed as failed or unfinished with the reason; a completed run without
evaluation numbers (a ``stage=report``, ``compare`` or ``describe`` run) is listed as skipped with the
reason. When the completed runs' ``objective`` has the same value in all of them the report warns. Plain
functions, no Hydra; matplotlib runs on the Agg backend. Runs can also be pulled from a W&B project
(``wandb_project=``) when wandb is installed and online; offline that part is skipped and noted.

The parts: ``opgrpo.sweep.records`` reads the runs, ``opgrpo.sweep.table`` builds the tables and the Pareto
front, ``opgrpo.sweep.seeds`` groups seed replicates, ``opgrpo.sweep.plots`` draws the figures; this module
writes the files (``python -m opgrpo.sweep.report``). The page is a short template around what plotly
(``Figure.to_html``) and pandas (``DataFrame.to_html``) write, plus a few lines of JavaScript for sorting.
"""
from __future__ import annotations

import base64
import html
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from opgrpo.sweep.plots import plot_curves, plot_pareto
from opgrpo.sweep.records import (
    EVAL_STAGE,
    SKIPPED,
    UNFINISHED,
    RunRecord,
    check_estimators,
    collect_runs,
    runs_from_dirs,
    wandb_runs,
)
from opgrpo.sweep.seeds import CI_SUFFIX, is_seed_key
from opgrpo.sweep.table import (
    COVERAGE_RATE,
    NLI_OVERALL,
    REFERENCE_TOTAL,
    UNIQUENESS_RATE,
    group_table,
    objective_warning,
    reference_weights,
    runs_table,
    weights_text,
)
from opgrpo.utils.runfiles import COMPLETED, FAILED

__all__ = ["build_report", "cell_text", "main", "markdown_table", "report_dir", "report_notes"]

log = logging.getLogger("opgrpo.sweep.report")


# ---- text outputs -------------------------------------------------------------------------------------------
def _counts_line(df) -> str:
    n = {k: int((df["status"] == k).sum()) for k in (COMPLETED, FAILED, UNFINISHED, SKIPPED)}
    return (f"{len(df)} runs: {n[COMPLETED]} completed, {n[FAILED]} failed, {n[UNFINISHED]} unfinished, "
            f"{n[SKIPPED]} skipped (no evaluation numbers)")


def _shared_facts(df) -> dict[str, str]:
    """Text facts of the evaluation (other than the NLI backend, always a column) that every run shares."""
    done = df[df["status"] == COMPLETED]
    out = {}
    for fact in df.attrs.get("facts", []):
        values = set(done[fact]) if len(done) else set()
        if fact != "nli_backend" and len(values) == 1 and "" not in values:
            out[fact] = values.pop()
    return out


def _common_line(df) -> str:
    common = df.attrs.get("common_overrides", {})
    line = "Overrides shared by every run: " + (" ".join(f"{k}={v}" for k, v in common.items()) or "none")
    shared = _shared_facts(df)
    if shared:
        line += ". Shared by every completed run: " + ", ".join(f"{k} {v}" for k, v in shared.items())
    return line


def cell_text(value: Any) -> str:
    """A table cell: yes/"" for booleans, 4 significant digits for floats, "" for NaN and None."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "yes" if value else ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return "" if value is None else str(value)


def _display_columns(df) -> list[str]:
    """The columns worth showing: overrides that vary, metrics that some run has; not path/error."""
    constant = set(df.attrs.get("common_overrides", {})) | set(_shared_facts(df))
    cols = []
    for c in df.columns:
        if c in ("path", "error") or c in constant:
            continue
        if df[c].dtype.kind == "f" and df[c].isna().all():
            continue
        if df[c].dtype.kind == "O" and c != "run" and not df[c].astype(str).str.len().any():
            continue  # a text column no run fills
        cols.append(c)
    return cols


def report_notes(df, records: Sequence[RunRecord]) -> tuple[list[str], list[str]]:
    """(notes, warnings) of a table: what the totals and NLI columns mean; the skipped runs and an objective
    that does not move."""
    weights = df.attrs.get("reference_weights") or reference_weights()
    totals = (f"reward/total is each run's own total (its own reward.weights); reward/{REFERENCE_TOTAL} weights "
              f"every run's mean components alike: {weights_text(weights)} (report.reference_weights; a "
              "weighted sum of the mean components, not clipped per response).")
    notes = [totals]
    done = [r for r in records if r.status == COMPLETED]
    backends = sorted({r.nli_backend or "unknown" for r in done})
    if backends:
        text = "NLI columns (nli/*) come from the NLI backend " + " and ".join(backends)
        if len(backends) > 1:
            text += " (see each run's nli_backend: runs scored by different backends are not comparable)"
        if "causal_lm" in backends:
            text += "; causal_lm is the CPU stand-in (a small LM's P(Yes)), not comparable with an MNLI model"
        notes.append(text + ".")
    warnings = []
    skipped = [r for r in records if r.status == SKIPPED]
    if skipped:
        warnings.append(f"{len(skipped)} run(s) skipped, without evaluation numbers: "
                        + "; ".join(f"{r.name}: {r.error}" for r in skipped))
    objective = objective_warning(records)
    if objective:
        warnings.append(objective)
    return notes, warnings


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(cell_text(v)) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _failed_rows(records: Sequence[RunRecord]) -> list[list[str]]:
    """Failed, unfinished and skipped runs: name, status, reason, overrides, path."""
    return [[r.name, r.status, r.error, " ".join(f"{k}={v}" for k, v in r.overrides.items()), r.path]
            for r in records if r.status != COMPLETED]


def _write_markdown(df, records, path: Path, source: str, front: Sequence[str], notes: Sequence[str],
                    warnings: Sequence[str], groups=None) -> None:
    done = df[df["status"] == COMPLETED]
    cols = _display_columns(df)
    parts = [f"# Sweep report: {source}", "",
             _counts_line(df) + ".", "",
             _common_line(df), "",
             *(x for w in warnings for x in (f"**Warning:** {w}", "")),
             *(x for n in notes for x in (n, "")),
             "Pareto front (coverage rate vs uniqueness rate, both maximised): " + (", ".join(front) or "none"), "",
             "## Completed runs", "",
             markdown_table(cols, done[cols].values.tolist()) if len(done) else "(none)", ""]
    if groups is not None and len(groups) and int(groups["n_seeds"].max()) > 1:
        shown = _group_display(groups, df)
        parts += ["## Seed replicates grouped (mean ± 95% t-interval half-width)", "",
                  markdown_table(list(shown.columns), shown.values.tolist()), ""]
    failed = _failed_rows(records)
    parts += ["## Failed, unfinished and skipped runs", "",
              markdown_table(["run", "status", "error", "overrides", "path"], failed) if failed else "(none)", ""]
    path.write_text("\n".join(parts), encoding="utf-8")


def _img(path: Path | None, alt: str) -> str:
    if path is None or not path.is_file():
        return f"<p>({html.escape(alt)}: nothing to plot)</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


MAIN_COLUMNS = (COVERAGE_RATE, UNIQUENESS_RATE, f"reward/{REFERENCE_TOTAL}", "reward/total", NLI_OVERALL,
                "cost/train_runtime_s")
"""The numbers of the grouped table on the page (mean ± 95% half-width); runs.csv and groups.csv have them all."""


def _mean_text(value: Any, half: Any) -> str:
    text = cell_text(value)
    return text + (f" ± {half:.2g}" if text and isinstance(half, float) and not math.isnan(half) else "")


def _group_display(g, df):
    """The grouped table as shown: group, n_seeds, the overrides and facts that vary, the main numbers as
    "mean ± half-width", pareto, the runs (a DataFrame of strings)."""
    import pandas as pd

    shown = [c for c in _display_columns(df) if c in g.columns and not is_seed_key(c)
             and c not in ("run", "status") and c not in MAIN_COLUMNS and g[c].dtype.kind == "O"]
    out = pd.DataFrame({"group": g["group"], "n_seeds": g["n_seeds"].astype(str)})
    for c in shown:
        out[c] = g[c].astype(str)
    for c in MAIN_COLUMNS:
        if c in g.columns and g[c].notna().any():
            out[c] = [_mean_text(v, h) for v, h in zip(g[c], g[c + CI_SUFFIX])]
    out["pareto"] = ["yes" if p else "" for p in g["pareto"]]
    out["runs"] = g["runs"]
    return out


def _html_table(frame, table_id: str) -> str:
    """A pandas table as sortable HTML (values escaped; empty cells for NaN)."""
    return frame.to_html(index=False, escape=True, na_rep="", border=0, table_id=table_id,
                         classes="sortable", formatters={c: cell_text for c in frame.columns})


def _scatter_html(g, fallback: Path | None) -> str:
    """The interactive scatter with plotly.js embedded (the page works offline); the PNG when plotly is missing."""
    try:
        import plotly  # noqa: F401
    except ImportError:
        return "<p>(plotly is not installed: the static plot instead)</p>" + _img(fallback, "Pareto plot")
    from opgrpo.sweep.plots import SCATTER_DIV, scatter_figure

    return scatter_figure(g).to_html(full_html=False, include_plotlyjs=True, div_id=SCATTER_DIV,
                                     config={"displaylogo": False, "responsive": True})


_STYLE = ("body{font-family:sans-serif;margin:1.5em 2em;color:#222}table{border-collapse:collapse;font-size:13px}"
          "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#f4f4f4;cursor:pointer}"
          "th[data-order=asc]::after{content:' \\25B2'}th[data-order=desc]::after{content:' \\25BC'}"
          "tr.front{background:#fff3c4}img{max-width:100%}p.warning{background:#fde2e1;padding:4px 8px}"
          "p.note{color:#555;font-size:13px}")
_SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  var heads = Array.from(table.tHead.rows[0].cells), front = heads.findIndex(function (h) {
    return h.textContent.trim() === 'pareto'; });
  Array.from(table.tBodies[0].rows).forEach(function (r) {
    if (front >= 0 && r.cells[front].textContent.trim() === 'yes') r.classList.add('front'); });
  heads.forEach(function (th, col) {
    th.title = 'click to sort';
    th.addEventListener('click', function () {
      var asc = th.dataset.order !== 'asc', body = table.tBodies[0];
      heads.forEach(function (h) { delete h.dataset.order; });
      th.dataset.order = asc ? 'asc' : 'desc';
      function key(r) { var t = r.cells[col].textContent.trim(); return [t === '' ? 1 : 0, parseFloat(t), t]; }
      Array.from(body.rows).sort(function (a, b) {  /* numbers as numbers ("0.2 ± 0.05" by 0.2), empty last */
        var x = key(a), y = key(b), c;
        if (x[0] !== y[0]) return x[0] - y[0];
        c = (!isNaN(x[1]) && !isNaN(y[1])) ? x[1] - y[1] : x[2].localeCompare(y[2], undefined, {numeric: true});
        return asc ? c : -c;
      }).forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def _write_html(df, g, records, path: Path, source: str, images: Mapping[str, Path | None],
                notes: Sequence[str], warnings: Sequence[str]) -> None:
    """One self-contained page: the interactive scatter, the grouped table (sortable), the curves, every run,
    the failed, unfinished and skipped runs, the notes."""
    import pandas as pd

    esc = html.escape
    done = df[df["status"] == COMPLETED]
    failed = pd.DataFrame(_failed_rows(records), columns=["run", "status", "error", "overrides", "path"])
    front = g.attrs.get("front_order", [])
    replicated = bool(len(g)) and int(g["n_seeds"].max()) > 1
    body = [
        f"<h1>Sweep report</h1><p><code>{esc(source)}</code></p><p>{esc(_counts_line(df))}</p>",
        f"<p>{esc(_common_line(df))}</p>",
        *(f'<p class="warning"><strong>Warning:</strong> {esc(w)}</p>' for w in warnings),
        "<h2>Coverage vs uniqueness</h2>",
        _scatter_html(g, images.get("pareto")),
        (f"<p>Pareto front (both maximised): {esc(', '.join(front) or 'none')}. Hover over a point for its runs, "
         "overrides and NLI numbers; drag to zoom, double-click to reset.</p>"),
        f"<h2>Runs{' (seed replicates grouped)' if replicated else ''}</h2>",
        _html_table(_group_display(g, df), "groups") if len(g) else "<p>(no completed run)</p>",
        ('<p class="note">One row per group of runs that differ only by their seed: each number is the mean over '
         "the seeds ± the half-width of its 95% Student-t interval (none for one seed). Rows on the Pareto front "
         "are highlighted; click a column to sort. Every number of every group: <code>groups.csv</code>; of every "
         f"run: <code>runs.csv</code>. Metrics are from the final evaluation (<code>{EVAL_STAGE}/...</code>).</p>"),
        "<h2>Reward components over GRPO steps</h2>",
        _img(images.get("curves"), "reward curves"),
        f"<details><summary>Every completed run, every column ({len(done)})</summary>",
        _html_table(done[_display_columns(df)], "runs") if len(done) else "<p>(none)</p>",
        ('<p class="note"><code>grpo_last/*</code> are the last GRPO step\'s reward components, the total at the '
         "reference weights and <code>grpo_last/reward</code>, the run's own trained total.</p></details>"),
        "<h2>Failed, unfinished and skipped runs</h2>",
        _html_table(failed, "failed") if len(failed) else "<p>(none)</p>",
        "<h2>Notes</h2>", *(f'<p class="note">{esc(n)}</p>' for n in notes),
    ]
    path.write_text("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Sweep report</title>"
                    f"<style>{_STYLE}</style></head><body>\n" + "\n".join(body)
                    + f"\n<script>{_SORT_JS}</script>\n</body></html>\n", encoding="utf-8")


# ---- entry point --------------------------------------------------------------------------------------------
def report_dir(out_dir: str | Path = "", sweep_dir: str | Path = "", fallback: str | Path = "report") -> Path:
    """Where a report goes: ``out_dir`` when set, else ``<sweep_dir>/report``, else ``fallback``."""
    if out_dir:
        return Path(out_dir)
    if sweep_dir:
        return Path(sweep_dir) / "report"
    return Path(fallback)


def build_report(sweep_dir: str | Path | None, out_dir: str | Path, *, run_dirs: Sequence[str | Path] = (),
                 labels: Sequence[str] = (), reference_weights: Mapping[str, float] | None = None,
                 wandb_project: str = "", exclude: Iterable[str | Path] = (),
                 allow_mixed_estimators: bool = False) -> dict[str, Any]:
    """Write runs.csv, groups.csv, runs.md, pareto.png, curves.png (when any run has GRPO metrics) and index.html
    to ``out_dir``.

    The runs: exactly ``run_dirs`` when given (named by ``labels``, else by their paths), else every run
    directory under ``sweep_dir`` except ``out_dir`` and ``exclude`` (e.g. the report's own run).
    ``reference_weights``: component -> weight of ``reward/total_at_reference`` (None = the paper weights).
    Runs scored by different estimators raise ``MixedEstimatorsError`` unless ``allow_mixed_estimators`` (then a
    warning; the table's estimator column tells them apart).
    Returns ``{"runs", "completed", "failed", "unfinished", "skipped", "pareto" (run names along the front),
    "pareto_front" (the same, comma-joined), "groups" (seed groups), "pareto_groups" (the groups along the front
    of their means), "csv", "groups_csv", "markdown", "pareto_plot", "curves_plot" ("" if none),
    "html", "out_dir", "warnings" (list), "warning" (the same, joined; "" if none)}`` (paths as strings).
    """
    out_dir = Path(out_dir)
    weights = _weights(reference_weights)
    if run_dirs:
        records = runs_from_dirs(run_dirs, labels)
        source = str(sweep_dir) if sweep_dir else ", ".join(str(d) for d in run_dirs)
    else:
        if not sweep_dir:
            raise ValueError("no runs to report: give a sweep directory or run directories "
                             "(report.sweep_dir=DIR or report.run_dirs=[dir,...])")
        if not Path(sweep_dir).is_dir():
            raise FileNotFoundError(f"sweep directory {str(sweep_dir)!r} does not exist")
        records = collect_runs(sweep_dir, exclude=[out_dir, *exclude])
        source = str(sweep_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    extra_notes: list[str] = []
    if wandb_project:
        extra, note = wandb_runs(wandb_project)
        records += extra
        extra_notes.append(note)
    mixed = check_estimators(records, allow_mixed_estimators)
    df = runs_table(records, weights)
    notes, warnings = report_notes(df, records)
    notes, warnings = [*extra_notes, *notes], [*mixed, *warnings]
    for w in warnings:
        log.warning("report: %s", w)
    front = list(df.attrs.get("front_order", []))
    groups = group_table(records, df)
    paths = {"csv": out_dir / "runs.csv", "groups_csv": out_dir / "groups.csv", "markdown": out_dir / "runs.md",
             "pareto_plot": out_dir / "pareto.png", "curves_plot": out_dir / "curves.png", "html": out_dir / "index.html"}
    df.to_csv(paths["csv"], index=False)
    groups.to_csv(paths["groups_csv"], index=False)
    _write_markdown(df, records, paths["markdown"], source, front, notes, warnings, groups)
    plot_pareto(records, df, paths["pareto_plot"])
    if plot_curves(records, paths["curves_plot"], weights) is None:
        paths["curves_plot"].unlink(missing_ok=True)  # a stale one from an earlier report would mislead
        paths["curves_plot"] = None
    _write_html(df, groups, records, paths["html"], source,
                {"pareto": paths["pareto_plot"], "curves": paths["curves_plot"]}, notes, warnings)
    status = list(df["status"]) if len(df) else []
    return {
        "runs": len(records),
        "completed": status.count(COMPLETED),
        "failed": status.count(FAILED),
        "unfinished": status.count(UNFINISHED),
        "skipped": status.count(SKIPPED),
        "pareto": front,
        "pareto_front": ", ".join(front),
        "groups": len(groups),
        "pareto_groups": list(groups.attrs.get("front_order", [])),
        **{k: "" if v is None else str(v) for k, v in paths.items()},
        "out_dir": str(out_dir),
        "warnings": warnings,
        "warning": " | ".join(warnings),
        **({"wandb": extra_notes[0]} if extra_notes else {}),
    }


def _weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    return reference_weights(None if weights is None else dict(weights))


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m opgrpo.sweep.report SWEEP_DIR [OUT_DIR] [--reference-weights W] [--wandb-project P]``, or
    ``python -m opgrpo.sweep.report --run-dir D1 --run-dir D2 OUT_DIR`` (exactly those runs)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m opgrpo.sweep.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep_dir", nargs="?", default="", help="a multirun or study directory (every run under it)")
    ap.add_argument("out_dir", nargs="?", help="default: SWEEP_DIR/report (with --run-dir: the one positional)")
    ap.add_argument("--run-dir", action="append", default=[], help="exactly these runs (repeat); replaces the scan")
    ap.add_argument("--reference-weights", default="",
                    help="coverage=0.3,uniqueness=0.3,format=0.1,tag=1.0 (default: the paper weights)")
    ap.add_argument("--wandb-project", default="")
    args = ap.parse_args(argv)
    if args.run_dir and args.sweep_dir and not args.out_dir:  # `--run-dir A --run-dir B OUT_DIR`
        args.sweep_dir, args.out_dir = "", args.sweep_dir
    if not args.sweep_dir and not args.run_dir:
        ap.error("give SWEEP_DIR or --run-dir")
    if not args.out_dir and not args.sweep_dir:
        ap.error("give OUT_DIR with --run-dir")
    weights = None
    if args.reference_weights:
        try:
            weights = {k.strip(): float(v) for k, v in (kv.split("=", 1) for kv in args.reference_weights.split(","))}
        except ValueError:
            ap.error(f"--reference-weights: expected name=number,..., got {args.reference_weights!r}")
    out = build_report(args.sweep_dir or None, report_dir(args.out_dir or "", args.sweep_dir),
                       run_dirs=args.run_dir, reference_weights=weights, wandb_project=args.wandb_project)
    print(json.dumps(out, indent=2))
    print(f"report: {out['html']}")


if __name__ == "__main__":  # pragma: no cover
    main()
