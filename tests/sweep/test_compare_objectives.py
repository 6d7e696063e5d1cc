"""Issue 30.1: what sweeps and Optuna rank by. The presets' objectives are reference numbers, and an objective
measured at each trial's own reward config is warned about while the search space moves that config."""
from __future__ import annotations

import logging
from pathlib import Path

import yaml

from opgrpo.sweep.optuna.spec import StudySpec, objective_warnings

REPO = Path(__file__).resolve().parents[2]
SPACE = {"reward.weights.coverage": None, "reward.tau_cov_delta": None, "reward.aggregation": None}


def test_the_presets_rank_by_the_reference_numbers():
    for name in ("cpu_demo", "cpu_learning"):
        objective = yaml.safe_load((REPO / "experiments" / f"{name}.yaml").read_text())["objective"]
        assert objective.startswith("eval/reference/"), name
    assert yaml.safe_load((REPO / "sweeps" / "wandb_weights.yml").read_text())["metric"]["name"] == \
        "eval/reference/total"


def test_own_config_objectives_are_warned_about_while_the_space_moves_that_config():
    (text,) = objective_warnings(["eval/reward/coverage_rate"], SPACE)
    assert "reward.weights.coverage, reward.tau_cov_delta)" in text and "eval/reference/coverage_rate" in text
    assert objective_warnings(["eval/reference/coverage_rate", "eval/overall/accuracy"], SPACE) == []
    assert objective_warnings(["eval/reward/total"], {"reward.aggregation": None, "trainer.grpo.lr": None}) == []
    (moved,) = objective_warnings(["eval/reference/total"], {"estimator.calibration.tau_cov": None})
    assert "moves the reference rule itself" in moved


def test_the_default_optuna_space_warns_about_an_own_threshold_objective(caplog):
    from opgrpo.app import optuna_cli

    spec = optuna_cli.load_spec(REPO / "sweeps" / "optuna.yaml")
    assert {"reward.tau_cov_delta", "reward.tau_uniq_delta"} <= set(spec.space)
    with caplog.at_level(logging.WARNING, logger="opgrpo.optuna"):
        spec.set_objectives(["eval/reference/coverage_rate", "eval/reference/uniqueness_rate"])
    assert caplog.text == ""
    with caplog.at_level(logging.WARNING, logger="opgrpo.optuna"):
        spec.set_objectives(["eval/reward/coverage_rate", "eval/reward/uniqueness_rate"])
    assert caplog.text.count("is measured at each trial's own reward config") == 2
    assert isinstance(spec, StudySpec)
