"""Optuna's sampled values as people write them (issue 30.4): a stepped range gives ``low + k * step``
(``-0.08 + 9 * 0.02 = 0.09999999999999999``, the default space's ``reward.tau_uniq_delta``); the trial's override, the log line, study.csv and best.json say 0.1."""
from __future__ import annotations

import csv
import json

import optuna

from opgrpo.sweep.optuna.outputs import write_outputs
from opgrpo.sweep.optuna.spec import StudySpec, format_value, tidy
from opgrpo.sweep.optuna.study import trial_overrides

RAW = -0.08 + 9 * 0.02  # what Optuna's FloatDistribution(-0.08, 0.12, step=0.02) hands back for 0.1


def test_stepped_value_prints_rounded():
    assert repr(RAW) == "0.09999999999999999"
    assert format_value(RAW) == "0.1" and tidy(RAW) == 0.1
    assert format_value(1e-6) == "1e-06" and format_value(0.123456789) == "0.123456789"  # real digits kept
    assert format_value(0.06521620986668497) == "0.06521620986668497"  # a continuous sample: exactly as sampled
    assert format_value(-0.08 + 6 * 0.02) == "0.04" and format_value(0.0) == "0.0"
    assert format_value(3) == "3" and format_value(True) == "true" and format_value(float("nan")) == "nan"
    dist = optuna.distributions.FloatDistribution(-0.08, 0.12, step=0.02)
    spec = StudySpec(space={"reward.tau_uniq_delta": dist}, fixed=["reward.mode=bucketed"])
    assert trial_overrides(spec, {"reward.tau_uniq_delta": RAW}, ["experiment=cpu_demo"]) == \
        ["experiment=cpu_demo", "reward.mode=bucketed", "reward.tau_uniq_delta=0.1"]


def test_study_files_show_rounded_params(tmp_path):
    dist = optuna.distributions.FloatDistribution(-0.08, 0.12, step=0.02)
    spec = StudySpec(space={"reward.tau_uniq_delta": dist}, study_name="s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", study_name="s")
    study.add_trial(optuna.trial.create_trial(params={"reward.tau_uniq_delta": RAW},
                                              distributions={"reward.tau_uniq_delta": dist}, value=0.5))
    best = write_outputs(study, tmp_path, spec, "eval/reward/coverage_rate")
    assert best["params"] == {"reward.tau_uniq_delta": 0.1}
    assert '"reward.tau_uniq_delta": 0.1' in (tmp_path / "best.json").read_text()
    assert json.loads((tmp_path / "best.json").read_text())["params"]["reward.tau_uniq_delta"] == 0.1
    with open(tmp_path / "study.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["params_reward.tau_uniq_delta"] == "0.1"
    assert "0.0999" not in (tmp_path / "study.csv").read_text()
