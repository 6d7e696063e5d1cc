"""The text of a sweep report (opgrpo.sweep.report): ``runs.md``, and the pieces the HTML page shares with it:
the counts and shared-overrides lines, the columns worth showing, the notes and warnings, table cells, the failed
runs' rows and the seed-grouped table as shown ("mean ± 95% half-width").

``cell_text``, ``markdown_table`` and ``report_notes`` are also used by ``opgrpo.sweep.compare``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opgrpo.sweep.records import SKIPPED, UNFINISHED, RunRecord
from opgrpo.sweep.seeds import CI_SUFFIX, N_SUFFIX, is_seed_key
from opgrpo.sweep.table import (
    COVERAGE_RATE,
    NLI_OVERALL,
    REFERENCE_TOTAL,
    UNIQUENESS_RATE,
    non_finite_values,
    objective_warning,
    reference_weights,
    weights_text,
)
from opgrpo.utils.runfiles import COMPLETED, FAILED


def counts_line(df) -> str:
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


def common_line(df) -> str:
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


FLAG = "\u26a0"
"""Marks a cell whose number in summary.json is NaN or infinite ("NaN \u26a0", "inf \u26a0")."""


def flagged_cells(frame, df) -> list[list[Any]]:
    """The rows of ``frame`` (rows of ``df``, the runs table) as cells, those computed from a non-finite summary
    number shown as "NaN \u26a0" / "inf \u26a0" (``df.attrs["non_finite"]``) rather than as a blank or a bare inf."""
    flags = df.attrs.get("non_finite", {})
    rows = []
    for _, row in frame.iterrows():
        marks = flags.get(df.loc[row.name, "run"], {}) if "run" in df.columns else {}
        rows.append([f"{marks[c]} {FLAG}" if c in marks else v for c, v in row.items()])
    return rows


def display_columns(df) -> list[str]:
    """The columns worth showing: overrides that vary, metrics that some run has; not path/error."""
    constant = set(df.attrs.get("common_overrides", {})) | set(_shared_facts(df))
    cols = []
    for c in df.columns:
        if c in ("path", "error") or c in constant:
            continue
        if df[c].dtype.kind == "f" and df[c].isna().all() and not any(
                c in marks for marks in df.attrs.get("non_finite", {}).values()):
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
              "weighted sum of the mean components, not clipped per response). coverage_rate, uniqueness_rate and "
              "the components are measured by one reference rule for every run (the estimator's calibrated "
              "thresholds, the paper's buckets: the reference_rule column); own/* and reward/total use each run's "
              "own thresholds and weights.")
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
    bad = non_finite_values(records)
    if bad:
        warnings.append(f"{len(bad)} non-finite number(s) in summary.json, shown as 'NaN {FLAG}' / 'inf {FLAG}' and "
                        "left out of the group means (their n says how many runs each mean has) and of the Pareto "
                        "front: " + "; ".join(f"run {run}: {key} = {text}" for run, key, text in bad))
    return notes, warnings


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(cell_text(v)) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def failed_rows(records: Sequence[RunRecord]) -> list[list[str]]:
    """Failed, unfinished and skipped runs: name, status, reason, overrides, path."""
    return [[r.name, r.status, r.error, " ".join(f"{k}={v}" for k, v in r.overrides.items()), r.path]
            for r in records if r.status != COMPLETED]


def write_markdown(df, records, path: Path, source: str, front: Sequence[str], notes: Sequence[str],
                   warnings: Sequence[str], groups=None) -> None:
    done = df[df["status"] == COMPLETED]
    cols = display_columns(df)
    parts = [f"# Sweep report: {source}", "",
             counts_line(df) + ".", "",
             common_line(df), "",
             *(x for w in warnings for x in (f"**Warning:** {w}", "")),
             *(x for n in notes for x in (n, "")),
             "Pareto front (coverage rate vs uniqueness rate, both maximised): " + (", ".join(front) or "none"), "",
             "## Completed runs", "",
             markdown_table(cols, flagged_cells(done[cols], df)) if len(done) else "(none)", ""]
    if groups is not None and len(groups) and int(groups["n_seeds"].max()) > 1:
        shown = group_display(groups, df)
        parts += ["## Seed replicates grouped (mean ± 95% t-interval half-width)", "",
                  markdown_table(list(shown.columns), shown.values.tolist()), ""]
    failed = failed_rows(records)
    parts += ["## Failed, unfinished and skipped runs", "",
              markdown_table(["run", "status", "error", "overrides", "path"], failed) if failed else "(none)", ""]
    path.write_text("\n".join(parts), encoding="utf-8")


MAIN_COLUMNS = (COVERAGE_RATE, UNIQUENESS_RATE, f"reward/{REFERENCE_TOTAL}", "reward/total", NLI_OVERALL,
                "cost/train_runtime_s", "cost/job_wall_s")
"""The numbers of the grouped table on the page (mean ± 95% half-width); runs.csv and groups.csv have them all."""


def _mean_text(value: Any, half: Any, n: Any = None, n_seeds: Any = None) -> str:
    """"mean ± half-width", with "(n=1 of 3)" when fewer of the group's runs than ``n_seeds`` have a finite value."""
    text = cell_text(value)
    text += f" ± {half:.2g}" if text and isinstance(half, float) and not math.isnan(half) else ""
    if text and n is not None and n_seeds is not None and int(n) < int(n_seeds):
        text += f" (n={int(n)} of {int(n_seeds)})"
    return text


def group_display(g, df):
    """The grouped table as shown: group, n_seeds, the overrides and facts that vary, the main numbers as
    "mean ± half-width", pareto, the runs (a DataFrame of strings)."""
    import pandas as pd

    shown = [c for c in display_columns(df) if c in g.columns and not is_seed_key(c)
             and c not in ("run", "status") and c not in MAIN_COLUMNS and g[c].dtype.kind == "O"]
    out = pd.DataFrame({"group": g["group"], "n_seeds": g["n_seeds"].astype(str)})
    for c in shown:
        out[c] = g[c].astype(str)
    for c in MAIN_COLUMNS:
        if c in g.columns and g[c].notna().any():
            counts = g[c + N_SUFFIX] if c + N_SUFFIX in g.columns else [None] * len(g)
            out[c] = [_mean_text(v, h, n, k) for v, h, n, k in zip(g[c], g[c + CI_SUFFIX], counts, g["n_seeds"])]
    out["pareto"] = ["yes" if p else "" for p in g["pareto"]]
    out["runs"] = g["runs"]
    return out
