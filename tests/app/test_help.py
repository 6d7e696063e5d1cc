"""``opgrpo --help`` (issue 30.4): the presets, the stages and the keys people change, not the whole config (it was
~425 lines); every key is one command away, ``stage=describe describe=all``, and the help says so."""
from __future__ import annotations

import os
import subprocess
import sys


def test_help_is_short_and_leads_with_presets_stages_and_keys(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    res = subprocess.run([sys.executable, "-m", "opgrpo", "--help"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    text = res.stdout
    lines = text.splitlines()
    assert len(lines) <= 100, len(lines)
    order = [text.index(h) for h in ("== Experiments (experiment=NAME) ==", "== Stages (stage=NAME) ==",
                                     "== Most used keys", "== Configuration groups")]
    assert order == sorted(order)
    keys = text[order[2]:order[3]]
    assert sum(1 for line in keys.splitlines() if line.startswith("  ") and "=" in line) >= 15
    for key in ("reward.weights.coverage=", "trainer.grpo.trl.learning_rate=", "seed=", "launcher=slurm"):
        assert key in keys, key
    assert "stage=describe describe=all" in text and "--cfg job" in text  # where the rest is
    assert "== Config ==" not in text and "dist_timeout_min" not in text  # the full config dump is gone
    assert "cpu_demo" in lines[0] + text[:order[1]] and "reward: " in text  # presets first; the groups still listed
