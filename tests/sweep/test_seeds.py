"""Seed replicates (opgrpo/sweep/seeds.py, table.group_table): which runs are grouped, and the mean with its
95% Student-t interval, against hand-computed numbers."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
import pytest

from opgrpo.sweep.seeds import (
    grouped_numbers,
    is_seed_key,
    seed_groups,
    seed_of,
    t_interval,
    without_seed,
)

# t_{0.975} quantiles of Student's t (tables): 1 df 12.7062, 2 df 4.302653, 3 df 3.182446
T1, T2, T3 = 12.706205, 4.302653, 3.182446


def run(overrides: dict[str, str], config: dict | None = None):
    return SimpleNamespace(overrides=overrides, config=config or {})


def test_t_interval_hand_computed():
    mean, half, n = t_interval([0.1, 0.2, 0.3])
    # s = 0.1 (deviations -0.1, 0, 0.1; sum of squares 0.02 / 2), half = t(0.975, 2) x 0.1 / sqrt(3)
    assert (mean, n) == (pytest.approx(0.2), 3)
    assert half == pytest.approx(T2 * 0.1 / math.sqrt(3)) and half == pytest.approx(0.248414, abs=1e-6)
    mean, half, n = t_interval([1.0, 3.0])  # s = sqrt(2), half = 12.7062 x sqrt(2) / sqrt(2)
    assert (mean, n) == (2.0, 2) and half == pytest.approx(T1)
    mean, half, n = t_interval([0.5, 0.5, 0.5, 0.5])  # no spread: a zero-width interval
    assert (mean, half, n) == (0.5, 0.0, 4)
    mean, half, n = t_interval([2.0, 4.0, 6.0, 8.0])  # s = sqrt(20/3), half = 3.182446 x s / 2
    assert mean == 5.0 and half == pytest.approx(T3 * math.sqrt(20 / 3) / 2)


def test_t_interval_one_value_none_and_nan():
    mean, half, n = t_interval([0.7])
    assert (mean, n) == (0.7, 1) and math.isnan(half)  # one run: no interval
    mean, half, n = t_interval([])
    assert n == 0 and math.isnan(mean) and math.isnan(half)
    mean, half, n = t_interval([0.1, float("nan"), 0.3, None])  # missing values do not count
    assert (mean, n) == (pytest.approx(0.2), 2) and half == pytest.approx(T1 * math.sqrt(0.02) / math.sqrt(2))


def test_seed_keys():
    assert is_seed_key("seed") and is_seed_key("+seed") and is_seed_key("trainer.grpo.trl.seed")
    assert not is_seed_key("split_seed") and not is_seed_key("benchmark.split_seed") and not is_seed_key("seeds")
    assert without_seed({"seed": "1", "a": "2", "x.seed": "3"}) == {"a": "2"}
    assert seed_of(run({"a": "1", "seed": "7"})) == "7"
    assert seed_of(run({"a": "1"}, {"seed": 42})) == "42" and seed_of(run({})) == ""


def test_seed_groups_by_overrides_without_seed():
    runs = [run({"w": "0.1", "seed": "1"}), run({"w": "0.5", "seed": "1"}), run({"seed": "2", "w": "0.1"}),
            run({"w": "0.5", "seed": "2"}), run({"w": "0.1"}), run({"w": "0.1", "lr": "1e-6", "seed": "3"})]
    # key order and a missing seed override (the default seed) do not matter; another override does
    assert seed_groups(runs) == [[0, 2, 4], [1, 3], [5]]


def test_seed_groups_by_config_without_seed():
    base = {"seed": 1, "reward": {"weights": {"coverage": 0.3}}, "trainer": {"grpo": {"seed": 1}},
            "benchmark": {"split_seed": 42}}
    cfg = lambda seed, cov=0.3, split=42: {"seed": seed, "reward": {"weights": {"coverage": cov}},
                                          "trainer": {"grpo": {"seed": seed}}, "benchmark": {"split_seed": split}}
    runs = [run({"seed": "1"}, base), run({"seed": "2"}, cfg(2)),
            run({"reward.weights.coverage": "0.3", "seed": "3"}, cfg(3)),  # the default written out: same config
            run({"seed": "4"}, cfg(4, cov=0.5)), run({"seed": "5"}, cfg(5, split=7)),  # another split: not a replicate
            run({"seed": "6"})]  # no config: compared by overrides, never joins a run with a config
    assert seed_groups(runs) == [[0, 1, 2], [3], [4], [5]]


def test_grouped_numbers_mean_and_interval():
    df = pd.DataFrame({"coverage_rate": [0.1, 0.5, 0.2, 0.3], "nli/overall": [0.4, float("nan"), 0.6, float("nan")]})
    out = grouped_numbers(df, [[0, 2, 3], [1]], ["coverage_rate", "nli/overall"])
    assert list(out.columns) == ["n_seeds", "coverage_rate", "coverage_rate_ci95", "coverage_rate_n", "nli/overall",
                                 "nli/overall_ci95", "nli/overall_n"]
    assert list(out["n_seeds"]) == [3, 1]
    assert list(out["coverage_rate_n"]) == [3, 1] and list(out["nli/overall_n"]) == [2, 0]  # finite values per column
    assert out.loc[0, "coverage_rate"] == pytest.approx(0.2)
    assert out.loc[0, "coverage_rate_ci95"] == pytest.approx(0.248414, abs=1e-6)
    assert out.loc[0, "nli/overall"] == pytest.approx(0.5)  # 2 of the 3 runs have it
    assert out.loc[0, "nli/overall_ci95"] == pytest.approx(T1 * math.sqrt(0.02) / math.sqrt(2))
    assert out.loc[1, "coverage_rate"] == 0.5 and math.isnan(out.loc[1, "coverage_rate_ci95"])
    assert math.isnan(out.loc[1, "nli/overall"])


def test_group_table_of_a_sweep_with_seeds(tmp_path):
    """Two weight settings x three seeds (one seed of the second setting failed): two rows, means, intervals,
    the front over the means; per-run rows stay in runs_table."""
    from test_report import (  # tests/sweep is on sys.path (pytest rootdir imports)
        make_run,
        summary_for,
    )

    from opgrpo.sweep.records import collect_runs
    from opgrpo.sweep.table import group_table, runs_table

    root = tmp_path / "sweep"
    cov = {("0.1", 1): 0.1, ("0.1", 2): 0.2, ("0.1", 3): 0.3, ("0.5", 1): 0.5, ("0.5", 2): 0.7}
    uniq = {("0.1", 1): 0.9, ("0.1", 2): 0.8, ("0.1", 3): 0.7, ("0.5", 1): 0.2, ("0.5", 2): 0.4}
    k = 0
    for w in ("0.1", "0.5"):
        for seed in (1, 2, 3):
            ov = [f"reward.weights.coverage={w}", f"seed={seed}"]
            if (w, seed) in cov:
                make_run(root, str(k), ov, summary=summary_for(cov[w, seed], uniq[w, seed], 0.1 * seed))
            else:
                make_run(root, str(k), ov, status="failed", error="killed")
            k += 1
    records = collect_runs(root)
    df = runs_table(records)
    g = group_table(records, df)
    assert len(df) == 6 and len(g) == 2
    assert list(g["group"]) == ["coverage=0.1", "coverage=0.5"]
    assert list(g["n_seeds"]) == [3, 2] and list(g["runs"]) == ["0, 1, 2", "3, 4"]
    assert list(g["seeds"]) == ["1, 2, 3", "1, 2"]
    assert "seed" not in g.columns and list(g["overrides"]) == ["reward.weights.coverage=0.1",
                                                                 "reward.weights.coverage=0.5"]
    assert g.loc[0, "coverage_rate"] == pytest.approx(0.2)
    assert g.loc[0, "coverage_rate_ci95"] == pytest.approx(0.248414, abs=1e-6)
    assert g.loc[0, "uniqueness_rate"] == pytest.approx(0.8)
    assert g.loc[1, "coverage_rate"] == pytest.approx(0.6)  # (0.5 + 0.7) / 2, t(0.975, 1) x s / sqrt(2)
    assert g.loc[1, "coverage_rate_ci95"] == pytest.approx(T1 * math.sqrt(0.02) / math.sqrt(2))
    assert g.loc[0, "nli/overall"] == pytest.approx(0.2)  # accuracies 0.1, 0.2, 0.3
    # means (0.2, 0.8) and (0.6, 0.3): neither dominates
    assert list(g["pareto"]) == [True, True] and g.attrs["front_order"] == ["coverage=0.1", "coverage=0.5"]
