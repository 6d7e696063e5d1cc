"""Issue 19: the training loop learns, through the project's own entrypoint. A tiny random policy, 20 GRPO steps on a
reward component it can learn (``tests/learn_rewards.py:e_share``, added with ``reward.extra_funcs``; the OP reward
of random text is a constant 0, so it adds no advantage), fixed seed: the mean reward over the last steps is clearly
above the first steps'. Deterministic on CPU (one process, seeded sampling)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_grpo_raises_a_learnable_reward_within_20_steps(tmp_path, tiny_model):
    run = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    env.pop("WORLD_SIZE", None)
    cmd = [str(Path(sys.executable).parent / "opgrpo"), "experiment=cpu_demo", "stage=grpo", "model.gguf_file=",
           f"model.name_or_path={tiny_model}", "trainer.grpo.trl.max_steps=20", "trainer.grpo.trl.learning_rate=0.03",
           "trainer.grpo.trl.temperature=0.3", "trainer.grpo.trl.max_completion_length=16",
           "+trainer.grpo.trl.save_strategy=no",
           "reward.extra_funcs=[learn_rewards:e_share]", f"hydra.run.dir={run}"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [json.loads(line) for line in (run / "grpo" / "metrics.jsonl").read_text().splitlines()]
    curve = [r["rewards/e_share/mean"] for r in rows if "rewards/e_share/mean" in r]
    assert len(curve) == 20
    first, last = sum(curve[:5]) / 5, sum(curve[-5:]) / 5
    assert last > first + 0.1 and last > 1.5 * first, curve
