"""The sweep report: runs side by side, and the coverage-vs-uniqueness trade-off.

``build_report(sweep_dir, out_dir)`` collects every run directory under ``sweep_dir`` (at any depth: a
Hydra multirun ``<sweep>/<job>/``, an Optuna study's ``trial_<n>/``, or a single run); with ``run_dirs=``
it takes exactly those run directories instead. It writes to ``out_dir`` (:func:`report_dir` says where a
report goes: ``report.out_dir``, else ``<sweep_dir>/report``):

    runs.csv     one row per run: status, the NLI backend, its overrides (one column per overridden key),
                 the final evaluation's rates and reward components, its own total (``reward/total``, its
                 own weights) and the total at the reference weights (``reward/total_at_reference``, the
                 same weights for every run: the paper's by default), NLI accuracy per split, the job's cost
                 (trainer runtimes, ``cost/job_wall_s`` the wall time of its stages, ``cost/eval_s`` of its
                 evaluations, ``cost/grpo_tokens`` the tokens GRPO processed), its start point
                 (``start/*``: the rates of eval_base, the policy before training), the last GRPO step's
                 reward components, whether it is on the Pareto front, the error
    groups.csv   one row per group of completed runs that differ only by their seed (an arm: ``table.group_table``,
                 ``opgrpo.sweep.seeds``): n_seeds, the runs and seeds, every number's mean and its 95%
                 Student-t half-width (``<column>_ci95``), whether the group is on the front of the means
    paired.csv   the seed groups compared item by item (``opgrpo.sweep.paired``): for each metric and pair of arms
                 (a group's ``eval``, and its ``eval_base`` when it ran one) evaluated on the same (seed, item),
                 the mean difference with its 95% t-interval, pairs won by each side, the Wilcoxon p-value
    config_diff.csv  the resolved config keys (each run's config.yaml, flattened) whose value differs between
                 runs, one column per run
    runs.md      the same table in Markdown (completed runs), the seed groups when a group has several
                 seeds, then the failed, unfinished and skipped runs
    pareto.png   coverage rate vs uniqueness rate, one point per arm in its colour (95% error bars), the
                 Pareto front (both maximised) as a step line, each point labelled by the overrides that vary,
                 the start points (eval_base) with an arrow to the trained point when the runs have them
    curves.png   reward-component curves over GRPO steps and the total at the reference weights, one
                 line per run (``grpo/metrics.jsonl``); a run's own total is not drawn, nor a panel twice
    dynamics.png KL, entropy, completion length, clipped completions, clipped ratio and gradient norm over GRPO
                 steps, one line per run (``opgrpo.sweep.curves``)
    index.html   one self-contained page (plotly.js and the images embedded, opens offline): the
                 interactive scatter (hover: a group's runs, overrides and NLI numbers), the grouped table
                 (pandas, click a column to sort), the curves, each run's cost and links to its folder,
                 config.yaml, completions and responses (relative links), the config keys that differ, every
                 run's row, the failed, unfinished and skipped runs, the warnings and notes

One colour per arm (``opgrpo.sweep.arms``) in every figure and table; inside an arm each seed has its own dash
and marker.

A run whose directory is incomplete or unreadable (no status, no summary, corrupt JSON, a failed run)
never stops the report: it is listed as failed or unfinished with the reason; a completed run without
evaluation numbers (a ``stage=report``, ``compare`` or ``describe`` run) is listed as skipped with the
reason. When the completed runs' ``objective`` has the same value in all of them the report warns. Plain
functions, no Hydra; matplotlib runs on the Agg backend. Runs can also be pulled from a W&B project
(``wandb_project=``) when wandb is installed and online; offline that part is skipped and noted.

The parts: ``opgrpo.sweep.records`` reads the runs, ``opgrpo.sweep.table`` builds the tables and the Pareto
front, ``opgrpo.sweep.seeds`` groups seed replicates, ``opgrpo.sweep.plots`` draws the scatter and
``opgrpo.sweep.curves`` the curves,
``opgrpo.sweep.report_text`` writes runs.md and ``opgrpo.sweep.report_html`` the page; this module collects the
runs and writes the files (``python -m opgrpo.sweep.report``).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from opgrpo.sweep.arms import arms_of
from opgrpo.sweep.curves import plot_curves, plot_dynamics
from opgrpo.sweep.paired import paired_table
from opgrpo.sweep.plots import plot_pareto
from opgrpo.sweep.records import (
    SKIPPED,
    UNFINISHED,
    check_estimators,
    collect_runs,
    config_diff,
    run_extras,
    runs_from_dirs,
    wandb_runs,
)
from opgrpo.sweep.report_html import write_html
from opgrpo.sweep.report_text import report_notes, write_markdown
from opgrpo.sweep.table import group_table, reference_weights, runs_table
from opgrpo.utils.errors import RefusedError
from opgrpo.utils.runfiles import COMPLETED, FAILED

__all__ = ["build_report", "main", "report_dir"]

log = logging.getLogger("opgrpo.sweep.report")


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
    """Write runs.csv, groups.csv, paired.csv, config_diff.csv, runs.md, pareto.png, curves.png and dynamics.png
    (when any run has GRPO metrics) and index.html to ``out_dir``.

    The runs: exactly ``run_dirs`` when given (named by ``labels``, else by their paths), else every run
    directory under ``sweep_dir`` except ``out_dir`` and ``exclude`` (e.g. the report's own run).
    ``reference_weights``: component -> weight of ``reward/total_at_reference`` (None = the paper weights).
    Runs scored by different estimators raise ``MixedEstimatorsError`` unless ``allow_mixed_estimators`` (then a
    warning; the table's estimator column tells them apart).
    Returns ``{"runs", "completed", "failed", "unfinished", "skipped", "pareto" (run names along the front),
    "pareto_front" (the same, comma-joined), "groups" (seed groups), "pareto_groups" (the groups along the front
    of their means), "paired" (rows of paired.csv), "csv", "groups_csv", "paired_csv", "config_diff_csv",
    "markdown", "pareto_plot", "curves_plot", "dynamics_plot" ("" if none), "html", "out_dir", "warnings" (list),
    "warning" (the same, joined; "" if none)}`` (paths as strings).
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
    df = with_extras(runs_table(records, weights), records)
    notes, warnings = report_notes(df, records)
    notes, warnings = [*extra_notes, *notes], [*mixed, *warnings]
    for w in warnings:
        log.warning("report: %s", w)
    front = list(df.attrs.get("front_order", []))
    groups = group_table(records, df)
    arms = arms_of(groups, records)
    paired = _paired(records, groups)
    diff = config_diff(records)
    paths = {"csv": out_dir / "runs.csv", "groups_csv": out_dir / "groups.csv", "paired_csv": out_dir / "paired.csv",
             "config_diff_csv": out_dir / "config_diff.csv", "markdown": out_dir / "runs.md",
             "pareto_plot": out_dir / "pareto.png", "curves_plot": out_dir / "curves.png",
             "dynamics_plot": out_dir / "dynamics.png", "html": out_dir / "index.html"}
    df.to_csv(paths["csv"], index=False)
    groups.to_csv(paths["groups_csv"], index=False)
    paired.to_csv(paths["paired_csv"], index=False)
    _diff_frame(*diff).to_csv(paths["config_diff_csv"], index=False)
    write_markdown(df, records, paths["markdown"], source, front, notes, warnings, groups)
    plot_pareto(records, df, paths["pareto_plot"], arms)
    for key, drawn in (("curves_plot", plot_curves(records, paths["curves_plot"], weights, arms)),
                       ("dynamics_plot", plot_dynamics(records, paths["dynamics_plot"], arms))):
        if drawn is None:
            paths[key].unlink(missing_ok=True)  # a stale one from an earlier report would mislead
            paths[key] = None
    write_html(df, groups, records, paths["html"], source,
               {"pareto": paths["pareto_plot"], "curves": paths["curves_plot"], "dynamics": paths["dynamics_plot"]},
               notes, warnings, paired, arms=arms, diff=diff)
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
        "paired": len(paired),
        **{k: "" if v is None else str(v) for k, v in paths.items()},
        "out_dir": str(out_dir),
        "warnings": warnings,
        "warning": " | ".join(warnings),
        **({"wandb": extra_notes[0]} if extra_notes else {}),
    }


def with_extras(df, records):
    """The runs table with each run's cost and start point (``records.run_extras``: cost/job_wall_s, cost/eval_s,
    cost/grpo_tokens, start/coverage_rate, start/uniqueness_rate) after its other cost columns."""
    if not len(df):
        return df
    extras = [run_extras(r) for r in records]
    costs = [i for i, c in enumerate(df.columns) if str(c).startswith("cost/")]
    at = costs[-1] + 1 if costs else list(df.columns).index("pareto")
    for k, col in enumerate(extras[0]):
        df.insert(at + k, col, [e[col] for e in extras])
    return df


def _diff_frame(keys, values):
    """config_diff.csv: one row per differing key, one column per run."""
    import pandas as pd

    return pd.DataFrame([{"key": k, **{run: row[k] for run, row in values.items()}} for k in keys],
                        columns=["key", *values])


def _paired(records, groups):
    """The item-by-item comparison of the seed groups (``opgrpo.sweep.paired``), each group named as in
    groups.csv; its members found by run name."""
    by_name = {r.name: i for i, r in enumerate(records)}
    idx = [[by_name[n] for n in str(runs).split(", ") if n in by_name] for runs in groups.get("runs", [])]
    return paired_table(records, idx, [str(g) for g in groups.get("group", [])])


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
    try:
        out = build_report(args.sweep_dir or None, report_dir(args.out_dir or "", args.sweep_dir),
                           run_dirs=args.run_dir, reference_weights=weights, wandb_project=args.wandb_project)
    except RefusedError as exc:  # e.g. runs scored by different estimators: the message says it all
        ap.exit(1, f"{ap.prog}: {exc}\n")
    print(json.dumps(out, indent=2))
    print(f"report: {out['html']}")


if __name__ == "__main__":  # pragma: no cover
    main()
