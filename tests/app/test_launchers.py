"""The cluster path: Hydra's submitit launcher, through submitit's local executor (same code as SLURM)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent / "opgrpo"


@pytest.mark.slow
def test_submitit_local_multirun(tmp_path, responses_file, tiny_lm):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    sweep = tmp_path / "sweep"
    res = subprocess.run(
        [str(BIN), "-m", "launcher=submitit_local", "experiment=cpu_demo", "stage=eval",
         f"eval.responses_file={responses_file}", f"eval.nli.model={tiny_lm}", "reward.weights.uniqueness=0.2,0.4", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stderr[-3000:]
    for job in ("0", "1"):
        assert json.loads((sweep / job / "status.json").read_text())["status"] == "completed"
        assert "eval/overall/accuracy" in json.loads((sweep / job / "summary.json").read_text())
    assert list((sweep / ".submitit").glob("*/*_log.out")), "submitit wrote no job logs"


def test_slurm_launcher_starts_one_task_per_gpu(compose):
    """launcher=slurm used to ask for 4 GPUs with tasks_per_node=1: one process saw all 4 GPUs."""
    for overrides, gpus in (([], 4), (["hydra.launcher.gpus_per_node=8", "hydra.launcher.nodes=2"], 8)):
        cfg = compose(["launcher=slurm", *overrides], return_hydra_config=True)
        launcher = cfg.hydra.launcher
        assert launcher.gpus_per_node == gpus and launcher.tasks_per_node == gpus
