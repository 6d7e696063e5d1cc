"""Issue 26 end to end through the real entrypoint: a reward-weight multirun computes its estimator and SFT policy once
(the store), the same command again reuses every completed job, another sweep is refused in that directory,
``init_from`` works with experiment=cpu_demo, and ``resume=true`` refuses other training settings."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent / "opgrpo"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
TINY = ["experiment=cpu_demo", "estimator.train.max_steps=2", "trainer.sft.trl.max_steps=1",
        "trainer.grpo.trl.max_steps=1", "trainer.grpo.trl.max_completion_length=16"]


def _run(args, cwd, timeout=900):
    return subprocess.run([str(BIN), *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


def _log(job: Path) -> str:
    return "".join(p.read_text() for p in job.glob("*.log"))


def test_a_weight_sweep_shares_its_upstream_stages_and_a_rerun_reuses_its_jobs(tmp_path, tiny_lm):
    sweep = tmp_path / "sweep"
    args = ["-m", *TINY, "pipeline=[estimator,sft,grpo]", f"model.name_or_path={tiny_lm}",
            "reward.weights.coverage=0.5,1.0", f"hydra.sweep.dir={sweep}"]
    res = _run(args, tmp_path)
    assert res.returncode == 0, res.stderr[-4000:]
    store = sweep / ".stages"
    assert sorted(p.name.split("-")[0] for p in store.iterdir() if p.is_dir()) == ["estimator", "sft"]
    for stage in ("estimator", "sft"):  # both jobs use the one stored copy
        assert (sweep / "0" / stage).resolve() == (sweep / "1" / stage).resolve()
        assert (sweep / "0" / stage).resolve().parent == store.resolve()
    assert "stage estimator: reused from the store" in _log(sweep / "1")
    assert "stage sft: reused from the store" in _log(sweep / "1")
    assert "estimator stage: base acc" not in _log(sweep / "1")  # job 1 never trained an estimator
    grpo_lines = {j: (sweep / j / "grpo" / "metrics.jsonl").read_text() for j in ("0", "1")}

    # item 8: the same command again skips what completed: nothing is trained or logged twice
    again = _run(args, tmp_path)
    assert again.returncode == 0, again.stderr[-4000:]
    for j in ("0", "1"):
        assert "stage grpo: reused" in _log(sweep / j)
        assert (sweep / j / "grpo" / "metrics.jsonl").read_text() == grpo_lines[j]
        assert json.loads((sweep / j / "status.json").read_text())["status"] == "completed"

    # item 3: another sweep into that directory is refused before any job starts
    other = _run(["-m", *TINY, "pipeline=[estimator,sft,grpo]", f"model.name_or_path={tiny_lm}",
                  "reward.weights.coverage=0.5", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert other.returncode == 2 and "holds another sweep" in other.stderr
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == ["0", "1"]

    # item 8: init_from with experiment=cpu_demo: its estimator and SFT policy, by their manifests
    run = tmp_path / "from_job0"
    res = _run([*TINY, "pipeline=[estimator,sft,grpo]", f"model.name_or_path={tiny_lm}", f"init_from={sweep / '0'}",
                f"hydra.run.dir={run}"], tmp_path)
    assert res.returncode == 0, res.stderr[-4000:]
    log = _log(run)
    assert "stage estimator: taken from init_from" in log and "stage sft: taken from init_from" in log
    grpo = json.loads((run / "grpo" / "manifest.json").read_text())
    assert grpo["upstream"]["policy"].startswith("tree:")  # job 0's SFT policy, by content
    assert grpo["upstream"] == json.loads((sweep / "0" / "grpo" / "manifest.json").read_text())["upstream"]
    # ... and refused where nothing reads it
    refused = _run(["stage=describe", f"init_from={sweep / '0'}", f"hydra.run.dir={tmp_path / 'r'}"], tmp_path)
    assert refused.returncode == 2 and "init_from: nothing in stage(s) describe reads it" in refused.stdout


@pytest.mark.slow  # the rule itself is unit-tested in test_reuse.py (default suite); this is the CLI path
def test_resume_true_refuses_other_training_settings(tmp_path, tiny_lm):
    """Item 4: resume=true with other settings continued the old checkpoint without a word."""
    run = tmp_path / "run"
    args = [*TINY, "stage=sft", f"model.name_or_path={tiny_lm}", "trainer.sft.trl.max_steps=2",
            "trainer.sft.trl.save_steps=1", "trainer.sft.clean_checkpoints=false", f"hydra.run.dir={run}"]
    assert _run(args, tmp_path).returncode == 0
    manifest = json.loads((run / "sft" / "manifest.json").read_text())
    manifest["state"] = "started"  # as if killed after its checkpoints
    (run / "sft" / "manifest.json").write_text(json.dumps(manifest))
    res = _run([*args, "resume=true", "trainer.sft.trl.learning_rate=0.1", "seed=3"], tmp_path)
    assert res.returncode == 2, res.stderr[-3000:]
    out = res.stdout + res.stderr
    assert "trainer.sft.trl.learning_rate: 0.0003 -> 0.1" in out and "seed: 42 -> 3" in out
    assert "Traceback" not in res.stderr
    assert json.loads((run / "status.json").read_text())["status"] == "failed"
    ok = _run([*args, "resume=true", "trainer.sft.trl.max_steps=3"], tmp_path)  # extending it is fine
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert "stage sft: continuing" in _log(run)
    rows = [json.loads(x) for x in (run / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3]  # each step once, the third one resumed
