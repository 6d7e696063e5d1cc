"""Issue 27.2, through the entrypoint (subprocesses): a password in a judge's ``base_url`` reaches no file of the run
directory (config.yaml, status.json, Hydra's .hydra/ copy, cli.log, the offline W&B run) and no console line, the
judge's own error included; a key typed as ``api_key_env`` fails at start-up naming the key, echoed nowhere."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PASSWORD = "s3cr3tpw"
URL = f"http://user:{PASSWORD}@127.0.0.1:9/v1"  # port 9 (discard): refused at once
KEY = "sk-proj-AbCdEf0123456789xyz"


def _opgrpo(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", **env}
    return subprocess.run([sys.executable, "-m", "opgrpo", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def _files_holding(run: Path, secret: str) -> list[str]:
    return [str(p.relative_to(run)) for p in run.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_a_password_in_a_url_is_written_nowhere(tmp_path):
    pytest.importorskip("wandb")
    run = tmp_path / "run"
    res = _opgrpo(["experiment=cpu_demo", "stage=estimator", "logger=wandb", "estimator.judge.kind=http",
                   "estimator.judge.model=m", f"estimator.judge.base_url={URL}", f"eval.judge.base_url={URL}",
                   "estimator.judge.probe=false",  # the stage's own check, not the start-up probe, meets the URL
                   f"hydra.run.dir={run}"], tmp_path, WANDB_MODE="offline")
    out = res.stdout + res.stderr
    assert res.returncode == 1, out[-3000:]
    assert "judge endpoint http://***@127.0.0.1:9/v1 is unreachable" in res.stderr  # the judge's error, redacted
    assert PASSWORD not in out
    assert _files_holding(run, PASSWORD) == []
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "failed" and "http://***@127.0.0.1:9/v1" in status["error"]
    assert "http://***@127.0.0.1:9/v1" in (run / ".hydra" / "overrides.yaml").read_text()  # rewritten, not dropped
    assert "http://***@127.0.0.1:9/v1" in (run / "config.yaml").read_text()
    assert list(run.glob("wandb/*/run-*.wandb"))  # the offline W&B run (config, command line) was written


def test_a_key_given_as_api_key_env_fails_at_start_up_unechoed(tmp_path):
    run = tmp_path / "run"
    res = _opgrpo(["experiment=cpu_demo", "stage=describe", f"estimator.judge.api_key_env={KEY}",
                   f"eval.judge.api_key_env={KEY}", f"hydra.run.dir={run}"], tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 2, out[-3000:]
    for key in ("estimator.judge.api_key_env", "eval.judge.api_key_env"):
        assert f"{key}: must be the NAME of an environment variable" in out
    assert "AbCdEf" not in out and _files_holding(run, "AbCdEf") == []
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "failed" and "estimator.judge.api_key_env: must be the NAME" in status["error"]
