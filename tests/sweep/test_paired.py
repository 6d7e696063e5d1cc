"""Paired per-item comparison of seed groups (opgrpo.sweep.paired), against hand-computed numbers."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from opgrpo.sweep.paired import item_scores, paired_table


@dataclass
class Run:
    name: str
    path: str
    overrides: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)


def _run(root: Path, name: str, seed: str | None, items: dict[str, tuple[float, float]], stage: str = "eval",
         extra_lines: tuple[str, ...] = ()) -> Run:
    d = root / name / stage
    d.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"id": i, "split": "5", "coverage_rate": c, "uniqueness_rate": u, "total": 0.0})
             for i, (c, u) in items.items()]
    (d / "reward_items.jsonl").write_text("\n".join([*lines, *extra_lines]) + "\n")
    return Run(name, str(root / name), {"seed": seed} if seed else {})


def test_pairs_by_seed_and_item_with_hand_computed_interval_and_counts(tmp_path):
    # arm A and arm B, seeds 1 and 2, items x and y (coverage, uniqueness)
    a1 = _run(tmp_path, "a1", "1", {"x": (0.5, 1.0), "y": (0.2, 1.0)})
    a2 = _run(tmp_path, "a2", "2", {"x": (0.4, 1.0), "y": (0.1, 0.5), "only_a": (1.0, 1.0)})
    b1 = _run(tmp_path, "b1", "1", {"x": (0.3, 1.0), "y": (0.2, 1.0)})
    b2 = _run(tmp_path, "b2", "2", {"x": (0.1, 1.0), "y": (0.0, 1.0)})
    table = paired_table([a1, a2, b1, b2], [[0, 1], [2, 3]], ["A", "B"])
    cov = table[table.metric == "coverage_rate"].iloc[0]
    # differences 0.2, 0.0, 0.3, 0.1 ("only_a" has no partner): mean 0.15, s = sqrt(0.05 / 3) = 0.12910,
    # half-width t(0.975, 3) = 3.182446 x 0.12910 / 2 = 0.205427
    assert (cov.arm_a, cov.arm_b, cov.pairs) == ("A", "B", 4)
    assert cov["diff"] == pytest.approx(0.15)
    assert cov.diff_ci95_low == pytest.approx(0.15 - 0.205427, abs=1e-5)
    assert cov.diff_ci95_high == pytest.approx(0.15 + 0.205427, abs=1e-5)
    assert (cov.mean_a, cov.mean_b) == (pytest.approx(0.3), pytest.approx(0.15))
    assert (cov.a_higher, cov.b_higher, cov.ties) == (3, 0, 1)
    # Wilcoxon on the 3 non-zero differences, all positive: exact two-sided p = 2 / 2^3
    assert cov.wilcoxon_p == pytest.approx(0.25)
    uniq = table[table.metric == "uniqueness_rate"].iloc[0]
    assert (uniq.a_higher, uniq.b_higher, uniq.ties) == (0, 1, 3)
    assert uniq["diff"] == pytest.approx(-0.5 / 4)


def test_eval_base_is_its_own_arm_so_a_group_is_compared_before_and_after(tmp_path):
    runs = []
    for seed, before, after in (("1", 0.2, 0.1), ("2", 0.3, 0.1), ("3", 0.2, 0.2)):
        _run(tmp_path, f"r{seed}", seed, {"x": (before, 1.0), "y": (before, 1.0)}, stage="eval_base")
        runs.append(_run(tmp_path, f"r{seed}", seed, {"x": (after, 1.0), "y": (after, 1.0)}))
    table = paired_table(runs, [[0, 1, 2]], ["G"])
    cov = table[table.metric == "coverage_rate"].iloc[0]
    assert (cov.arm_a, cov.arm_b, cov.pairs) == ("G [eval_base]", "G", 6)
    assert cov["diff"] == pytest.approx((0.1 + 0.1 + 0.2 + 0.2 + 0.0 + 0.0) / 6)
    assert (cov.a_higher, cov.ties) == (4, 2)
    uniq = table[table.metric == "uniqueness_rate"].iloc[0]
    assert uniq.wilcoxon_p == 1.0 and uniq.ties == 6


def test_bad_lines_are_skipped_counted_and_named_and_unseeded_runs_pair_with_nothing(tmp_path, caplog):
    a = _run(tmp_path, "a", "1", {"x": (0.5, 1.0), "y": (0.2, 1.0)},
             extra_lines=("{not json", json.dumps([1, 2]), json.dumps({"id": "z", "coverage_rate": "high"})))
    with caplog.at_level(logging.WARNING, logger="opgrpo.sweep.paired"):
        scores = item_scores(a.path)
    assert set(scores) == {("5", "x"), ("5", "y"), ("", "z")}
    assert scores[("", "z")] == {}  # the non-numeric rate is left out, the item kept
    assert "2 unreadable line(s)" in caplog.text and "lines 3, 4" in caplog.text and "reward_items.jsonl" in caplog.text
    b = _run(tmp_path, "b", None, {"x": (0.1, 1.0), "y": (0.1, 1.0)})
    assert paired_table([a, b], [[0], [1]], ["A", "B"]).empty
    assert item_scores(tmp_path / "missing") == {}


def test_the_report_writes_paired_csv_and_shows_the_section(tmp_path):
    """build_report over a fabricated sweep: two arms x seeds 1, 2, their item files paired into paired.csv."""
    from opgrpo.sweep.report import build_report

    def make_run(root, name, overrides, summary):  # a finished Hydra job as the report reads it
        d = root / name
        (d / ".hydra").mkdir(parents=True)
        (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
        (d / "status.json").write_text(json.dumps({"status": "completed", "overrides": overrides}))
        (d / "summary.json").write_text(json.dumps(summary))

    sweep = tmp_path / "sweep"
    cov = {"1": {"x": (0.5, 0.5), "y": (0.4, 0.5)}, "2": {"x": (0.6, 0.5), "y": (0.3, 0.5)}}
    uniq = {"1": {"x": (0.1, 1.0), "y": (0.2, 1.0)}, "2": {"x": (0.2, 1.0), "y": (0.1, 1.0)}}
    n = 0
    for arm, items in (("coverage_only", cov), ("uniqueness_only", uniq)):
        for seed, scores in items.items():
            summary = {"eval/reward/coverage_rate": sum(c for c, _ in scores.values()) / 2,
                       "eval/reward/uniqueness_rate": sum(u for _, u in scores.values()) / 2}
            make_run(sweep, str(n), [f"reward={arm}", f"seed={seed}"], summary=summary)
            _run(sweep, str(n), seed, scores)
            n += 1
    out = build_report(sweep, sweep / "report")
    assert out["paired"] == 2 and out["paired_csv"].endswith("paired.csv")
    import pandas as pd
    table = pd.read_csv(out["paired_csv"])
    cov_row = table[table.metric == "coverage_rate"].iloc[0]
    assert {cov_row.arm_a, cov_row.arm_b} == {"reward=coverage_only", "reward=uniqueness_only"}
    # differences 0.4, 0.2, 0.4, 0.2 (coverage arm first): mean 0.3
    assert abs(cov_row["diff"]) == pytest.approx(0.3) and cov_row.pairs == 4
    assert "Arms compared item by item" in (sweep / "report" / "index.html").read_text()
