"""End to end: the real `cpu_demo` experiment, shrunk, through every stage in one run directory.

Shrunk = a tiny random Llama (SmolLM2's tokenizer and chat template) as policy and NLI judge, a few
steps per stage; `make demo` runs the same experiment at full size with SmolLM2-135M-Instruct."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent / "opgrpo"

SHRINK = [
    "estimator.train.max_steps=2",
    "trainer.sft.trl.max_steps=1",
    "trainer.grpo.trl.max_steps=1",
    "trainer.grpo.trl.max_completion_length=24",
    "eval.generation.max_new_tokens=24",
    "+benchmark.test_files.5=${offline:sample_test}",
    "benchmark.test_file=''",
    "benchmark.max_test_items=2",
]


def test_cpu_demo_pipeline_end_to_end(tmp_path, tiny_lm):
    run = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    res = subprocess.run([str(BIN), "experiment=cpu_demo", f"hydra.run.dir={run}", f"model.name_or_path={tiny_lm}",
                          f"eval.nli.model={tiny_lm}", *SHRINK], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-4000:]
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    summary = json.loads((run / "summary.json").read_text())
    # every stage left its numbers and its artefacts
    assert summary["estimator/trained"] is True
    assert 0.0 <= summary["estimator/finetuned/accuracy"] <= 1.0
    assert (run / "estimator" / "model" / "config.json").exists()
    # held-out check on all 14 test items: the 22 labelled same pairs, both directions, every other
    # perspective as negative = 292 triplets; base MiniLM ranks 233 of them right (deterministic)
    assert summary["estimator/test_items/labelled/n"] == 292
    assert summary["estimator/test_items/labelled/base/accuracy"] == pytest.approx(233 / 292)
    assert summary["estimator/test_items/mined/n"] == 14  # one mined triplet per test item (a diagnostic)
    assert "estimator on the labelled test pairs: of 22 pairs fine-tuning improved" in res.stdout
    assert (run / "sft" / "final" / "config.json").exists()
    assert (run / "grpo" / "final" / "config.json").exists()
    for stage in ("eval_base", "eval"):
        assert 0.0 <= summary[f"{stage}/overall/accuracy"] <= 1.0
        assert summary[f"{stage}/overall/count"] == 2
        assert f"{stage}/reward/coverage_rate" in summary
        lines = (run / stage / "responses.jsonl").read_text().splitlines()
        assert len(lines) == 2
    # GRPO logged each reward component separately, step by step
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any(r["stage"] == "grpo" for r in records)
    grpo_log = (run / "grpo" / "metrics.jsonl").read_text()
    for name in ("coverage", "uniqueness", "format", "tag"):
        assert f"rewards/{name}/mean" in grpo_log
    assert "run directory" in res.stdout


@pytest.mark.slow
def test_cpu_estimator_preset_beats_its_base(tmp_path):
    """The CPU default estimator stage, unshrunk: fine-tuning on the labelled training pairs must improve
    triplet accuracy on the labelled pairs of the unseen test items, clearly and significantly."""
    run = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    res = subprocess.run([str(BIN), "experiment=cpu_demo", "stage=estimator", f"hydra.run.dir={run}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]
    s = json.loads((run / "summary.json").read_text())
    assert s["estimator/mining/triplets"] == 32 and s["estimator/train/steps"] == 20
    lab = "estimator/test_items/labelled/"
    assert s[lab + "finetuned/accuracy"] >= s[lab + "base/accuracy"] + 0.05
    assert s[lab + "fixed"] > 3 * s[lab + "broken"] and s[lab + "p_value"] < 1e-3
    assert s[lab + "groups"] == 22 and s[lab + "groups_improved"] > 3 * s[lab + "groups_worsened"]
    # the 4 validation items (never trained on) are the dev check: 52 labelled triplets
    dev = "estimator/val_items/labelled/"
    assert s[dev + "n"] == 52 and s[dev + "finetuned/accuracy"] > s[dev + "base/accuracy"]


@pytest.mark.slow
def test_grpo_stage_logs_to_wandb_offline(tmp_path, tiny_lm):
    """logger=wandb reaches TRL's W&B callback: an offline W&B run with the reward components appears."""
    run = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("WANDB_MODE", None)
    res = subprocess.run([str(BIN), "experiment=cpu_demo", "stage=grpo", "logger=wandb", "logger.wandb.mode=offline",
                          "logger.wandb.project=opgrpo-test", f"hydra.run.dir={run}", f"model.name_or_path={tiny_lm}",
                          "trainer.grpo.trl.max_steps=1", "trainer.grpo.trl.max_completion_length=16"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]
    runs = list((run / "wandb").glob("offline-run-*"))
    assert runs, f"no offline W&B run under {run / 'wandb'}"
    history = list(runs[0].glob("*.wandb"))
    assert history and history[0].stat().st_size > 0
