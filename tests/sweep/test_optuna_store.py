"""Optuna trials share the study's store of stages (issue 26: the estimator and SFT of a weight study computed once)."""
from __future__ import annotations

from pathlib import Path

from opgrpo.sweep.optuna.trial import trial_command


def test_trials_share_the_study_store_unless_told_otherwise(tmp_path):
    run = tmp_path / "study" / "trial_3"
    cmd = trial_command(["opgrpo"], ["reward.weights.coverage=0.2"], run)
    assert f"store.dir={tmp_path / 'study' / '.stages'}" in cmd and cmd[-1] == f"hydra.run.dir={run}"
    via = trial_command(["opgrpo"], [], run, "slurm")
    assert f"store.dir={Path(tmp_path) / 'study' / '.stages'}" in via
    own = trial_command(["opgrpo"], ["store.dir=/shared/stages"], run)
    assert [c for c in own if c.startswith("store.dir=")] == ["store.dir=/shared/stages"]
