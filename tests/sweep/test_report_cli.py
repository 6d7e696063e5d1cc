"""The report's refusals through the command line (issue 30.4): runs scored by different estimators are refused in
one message, exit status 1 and status.json failed with that message, without a Python traceback."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from test_report import make_run, summary_for  # tests/sweep is on sys.path

from opgrpo.sweep.report import main as report_main


def _two_estimators(root):
    def est(fp):
        return {"eval/reward_estimator/fingerprint": fp, "eval/reward_estimator/tuned": True}

    a = make_run(root, "a", ["x=1"], summary={**summary_for(0.3, 0.8, 0.0), **est("aaaaaaaaaaaa")})
    b = make_run(root, "b", ["x=2"], summary={**summary_for(0.2, 0.9, 0.0), **est("bbbbbbbbbbbb")})
    return a, b


def test_mixed_estimators_refused_by_the_cli_in_one_message(tmp_path):
    a, b = _two_estimators(tmp_path / "runs")
    run = tmp_path / "report_run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    res = subprocess.run([sys.executable, "-m", "opgrpo", "stage=report", f"report.run_dirs=[{a},{b}]",
                          f"hydra.run.dir={run}"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300, check=False)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out[-3000:]
    assert "Traceback" not in out and 'File "' not in out, out[-3000:]
    assert "2 different estimators (aaaaaaaaaaaa: a; bbbbbbbbbbbb: b)" in out
    assert "report.allow_mixed_estimators=true" in out
    assert out.count("different estimators") == 1  # said once
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "failed" and "2 different estimators" in status["error"]


def test_mixed_estimators_refused_by_the_report_module(tmp_path, capsys):
    a, b = _two_estimators(tmp_path / "runs")
    with pytest.raises(SystemExit) as exit_info:
        report_main(["--run-dir", str(a), "--run-dir", str(b), str(tmp_path / "out")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "2 different estimators" in err and "Traceback" not in err


def test_each_stage_records_its_wall_time(tmp_path):
    """The report's job cost reads time/<stage>_s and time/job_s from summary.json (opgrpo.app.stages.run_stages)."""
    run = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    res = subprocess.run([sys.executable, "-m", "opgrpo", "experiment=cpu_demo", "stage=describe",
                          f"hydra.run.dir={run}"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300, check=False)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["time/describe_s"] >= 0 and summary["time/job_s"] >= summary["time/describe_s"]
    from opgrpo.sweep.records import load_run, stage_times

    times = stage_times(load_run(run))
    assert set(times) == {"describe", "job"}
