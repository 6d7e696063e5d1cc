"""Issue 30.1 in the comparison: the table's headline numbers are the reference rule's, runs measured by different
rules are refused (or, when asked, shown and marked), and the paired table pairs the reference numbers."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from opgrpo.sweep.compare import compare_run_dirs
from opgrpo.sweep.paired import item_scores
from opgrpo.sweep.records import (
    NO_RULE,
    MixedEstimatorsError,
    MixedRulesError,
    check_rules,
    runs_from_dirs,
)
from opgrpo.sweep.table import runs_table

RULE, OTHER = "aaaaaaaaaaaa", "bbbbbbbbbbbb"


def own(cov: float, uniq: float, total: float = 0.5) -> dict:
    """eval/reward/*: the numbers at the run's own thresholds and weights."""
    return {"eval/reward/coverage_rate": cov, "eval/reward/uniqueness_rate": uniq, "eval/reward/total": total,
            "eval/reward/coverage": 5 * cov, "eval/reward/uniqueness": uniq, "eval/reward/format": 1.5,
            "eval/reward/tag": 0.0, "eval/nli_backend": "none"}


def ref(cov: float, uniq: float, rule: str = RULE, tau=(0.55, 0.6)) -> dict:
    """eval/reference/*: the numbers by the reference rule ``rule``."""
    return {"eval/reference/coverage_rate": cov, "eval/reference/uniqueness_rate": uniq,
            "eval/reference/coverage": 2.0, "eval/reference/uniqueness": 0.75, "eval/reference/format": 2.0,
            "eval/reference/tag": -0.2, "eval/reference/total": 0.0, "eval/reference/rule": rule,
            "eval/reference/tau_cov": tau[0], "eval/reference/tau_uniq": tau[1]}


def make_run(root: Path, name: str, summary: dict, overrides=(), config: str = "stage: eval\n") -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "status.json").write_text(json.dumps({"status": "completed", "overrides": list(overrides)}))
    (d / "summary.json").write_text(json.dumps(summary))
    (d / "config.yaml").write_text(config)
    return d


def rows_of(path: str) -> dict[str, dict[str, str]]:
    with open(path, newline="") as f:
        return {row["run"]: row for row in csv.DictReader(f)}


def test_headline_columns_are_the_reference_numbers_with_the_own_ones_beside(tmp_path):
    # a looser own threshold gave run "loose" higher own rates; by the reference rule the two are equal
    a = make_run(tmp_path, "loose", {**own(0.30, 0.93), **ref(0.19, 0.82)}, ["reward.tau_cov_delta=-0.1"])
    b = make_run(tmp_path, "strict", {**own(0.17, 0.80), **ref(0.19, 0.82)}, ["reward.tau_cov_delta=0.1"])
    df = runs_table(runs_from_dirs([a, b]))
    assert list(df["coverage_rate"]) == [0.19, 0.19] and list(df["uniqueness_rate"]) == [0.82, 0.82]
    assert list(df["own/coverage_rate"]) == [0.30, 0.17] and list(df["own/uniqueness_rate"]) == [0.93, 0.80]
    # the total at reference weighs the reference components (paper weights 0.3/0.3/0.1/1.0)
    assert list(df["reward/total_at_reference"]) == pytest.approx([0.3 * 2 + 0.3 * 0.75 + 0.1 * 2 - 0.2] * 2)
    assert list(df["reward/coverage"]) == [2.0, 2.0]
    assert list(df["reference_rule"]) == [f"{RULE} (tau 0.55/0.6)"] * 2
    assert list(df["pareto"]) == [True, True]  # equal points: neither "wins"
    out = compare_run_dirs([a, b], tmp_path / "cmp")
    md = Path(out["markdown"]).read_text()
    assert f"reference_rule={RULE} (tau 0.55/0.6)" in md  # shared: said once above the table
    assert "| coverage_rate | 0.19 | 0.19 |" in md and "| own/coverage_rate | 0.3 | 0.17 |" in md


def test_runs_measured_by_different_rules_are_refused_unless_asked(tmp_path):
    a = make_run(tmp_path, "a", {**own(0.3, 0.9), **ref(0.2, 0.8)})
    b = make_run(tmp_path, "b", {**own(0.3, 0.9), **ref(0.25, 0.85, OTHER, (0.6, 0.6))})
    c = make_run(tmp_path, "c", own(0.3, 0.9))  # from before the reference numbers
    with pytest.raises(MixedRulesError, match=f"2 different reference rules.*{RULE}: a; {OTHER}: b"):
        compare_run_dirs([a, b], tmp_path / "c1")
    with pytest.raises(MixedEstimatorsError, match=re.escape(f"{NO_RULE}: c") + ".*allow_mixed_estimators"):
        compare_run_dirs([a, c], tmp_path / "c2")  # the report's check (check_estimators) refuses them too
    out = compare_run_dirs([a, b, c], tmp_path / "c3", allow_mixed_estimators=True)
    assert "different reference rules are shown together" in out["warning"]
    rows = rows_of(out["csv"])
    assert rows["a"]["reference_rule"] == f"{RULE} (tau 0.55/0.6)" and rows["b"]["reference_rule"].startswith(OTHER)
    assert rows["c"]["reference_rule"] == NO_RULE and rows["c"]["coverage_rate"] == "0.3"  # its own, marked
    assert rows["c"]["own/coverage_rate"] == ""


def test_runs_from_before_the_rule_warn_when_their_own_thresholds_differ(tmp_path):
    cfg = "stage: eval\nreward: {{tau_cov: {}, tau_uniq: 0.6}}\n"
    a = make_run(tmp_path, "a", own(0.3, 0.9), config=cfg.format(0.45))
    b = make_run(tmp_path, "b", own(0.2, 0.9), config=cfg.format(0.65))
    same = make_run(tmp_path, "c", own(0.2, 0.9), config=cfg.format(0.45))
    assert check_rules(runs_from_dirs([a, same])) == []
    (warning,) = check_rules(runs_from_dirs([a, b]))
    assert "at each run's own thresholds, which differ" in warning and "eval.responses_file" in warning


def test_paired_items_use_the_reference_numbers(tmp_path):
    d = tmp_path / "run" / "eval"
    d.mkdir(parents=True)
    rows = [{"id": "1", "split": "5", "coverage_rate": 0.9, "uniqueness_rate": 1.0,
             "reference": {"coverage_rate": 0.4, "uniqueness_rate": 0.5}, "reference_rule": RULE},
            {"id": "2", "split": "5", "coverage_rate": 0.7, "uniqueness_rate": 0.6}]  # a file from before the rule
    (d / "reward_items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert item_scores(tmp_path / "run") == {("5", "1"): {"coverage_rate": 0.4, "uniqueness_rate": 0.5},
                                             ("5", "2"): {"coverage_rate": 0.7, "uniqueness_rate": 0.6}}
