"""#27.5: NaN or inf in a run's summary.json is flagged in the report's tables and warnings (naming the run and the
key), and a seed group's count is per column: a mean over 1 of 3 seeds says so."""
from __future__ import annotations

import csv
import json
import math

import pandas as pd
import pytest
from test_report import (  # tests/sweep is on sys.path (pytest rootdir imports)
    make_run,
    summary_for,
)

from opgrpo.sweep.records import collect_runs
from opgrpo.sweep.report import build_report
from opgrpo.sweep.table import group_table, non_finite_values, pareto_front, runs_table


@pytest.fixture
def sweep(tmp_path):
    """One weight setting x three seeds: seed 1's coverage rate is NaN, seed 2's uniqueness rate inf."""
    root = tmp_path / "sweep"
    bad = {1: {"eval/reward/coverage_rate": float("nan")}, 2: {"eval/reward/uniqueness_rate": float("inf")}}
    for seed in (1, 2, 3):
        summary = {**summary_for(0.1 * seed, 0.5 + 0.1 * seed, 0.6, runtime=100.0), **bad.get(seed, {})}
        make_run(root, f"s{seed}", ["reward.weights.coverage=0.3", f"seed={seed}"], summary=json.dumps(summary))
    return root


def test_non_finite_values_name_run_and_key(sweep):
    assert "NaN" in (sweep / "s1" / "summary.json").read_text()  # what json writes for float("nan")
    records = collect_runs(sweep)
    assert non_finite_values(records) == [("s1", "eval/reward/coverage_rate", "NaN"),
                                          ("s2", "eval/reward/uniqueness_rate", "inf")]
    df = runs_table(records)
    assert df.attrs["non_finite"] == {"s1": {"coverage_rate": "NaN"}, "s2": {"uniqueness_rate": "inf"}}
    assert list(df["pareto"]) == [False, False, True]  # an inf coordinate is not a winning point


def test_group_counts_are_per_column(sweep):
    records = collect_runs(sweep)
    g = group_table(records, runs_table(records))
    assert len(g) == 1 and g.loc[0, "n_seeds"] == 3
    assert g.loc[0, "coverage_rate_n"] == 2 and g.loc[0, "coverage_rate"] == pytest.approx(0.25)  # seeds 2, 3
    assert g.loc[0, "uniqueness_rate_n"] == 2 and g.loc[0, "uniqueness_rate"] == pytest.approx(0.7)  # seeds 1, 3
    assert g.loc[0, "nli/overall_n"] == 3


def test_report_flags_cells_and_warns(sweep, tmp_path):
    out = tmp_path / "report"
    build_report(sweep, out)
    md = (out / "runs.md").read_text(encoding="utf-8")
    warning = next(line for line in md.splitlines() if "non-finite" in line)
    assert line_has(warning, "run s1: eval/reward/coverage_rate = NaN", "run s2: eval/reward/uniqueness_rate = inf")
    table = md.split("## Completed runs", 1)[1].split("##", 1)[0]
    row = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| s")}
    assert "NaN \u26a0" in row["s1"] and "inf \u26a0" in row["s2"] and "\u26a0" not in row["s3"]
    grouped = md.split("## Seed replicates grouped", 1)[1].split("##", 1)[0]
    assert grouped.count("(n=2 of 3)") == 2  # coverage and uniqueness rates: 2 finite values of 3 seeds
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "NaN \u26a0" in page and "inf \u26a0" in page and "run s1: eval/reward/coverage_rate = NaN" in page
    with open(out / "groups.csv", newline="") as fh:
        [group] = list(csv.DictReader(fh))
    assert (group["n_seeds"], group["coverage_rate_n"], group["uniqueness_rate_n"]) == ("3", "2", "2")


def line_has(line: str, *parts: str) -> bool:
    return all(p in line for p in parts)


def test_pareto_front_skips_infinite_points():
    assert pareto_front([(math.inf, 0.5), (0.4, 0.4), (0.3, 0.9)]) == [2, 1]  # along the front, x increasing


def test_missing_numbers_are_not_flagged(tmp_path):
    root = tmp_path / "sweep"
    make_run(root, "a", ["seed=1"], summary=summary_for(0.2, 0.6, None))  # no NLI numbers at all: blank, no flag
    records = collect_runs(root)
    assert non_finite_values(records) == [] and runs_table(records).attrs["non_finite"] == {}
    assert isinstance(pd.isna(runs_table(records).loc[0, "nli/overall"]), bool)
