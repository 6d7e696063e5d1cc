"""Issue 20.1: every reward number names its estimator, and a stand-alone evaluation of a run's outputs scores them
with that run's estimator (it used to fall back to the untuned base MiniLM with one INFO line)."""
from __future__ import annotations

import json
import logging

import pytest

from opgrpo.app.runconfig import to_config


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, minilm_path):
    """A run directory as the pipeline leaves it: config, status, a fine-tuned estimator, responses."""
    import torch
    from sentence_transformers import SentenceTransformer

    run = tmp_path_factory.mktemp("run")
    (run / "config.yaml").write_text("stage: pipeline\n")
    (run / "status.json").write_text(json.dumps({"status": "completed"}))
    model = SentenceTransformer(str(minilm_path), device="cpu")
    with torch.no_grad():  # a "fine-tuned" estimator: different weights from the base
        next(model.parameters()).mul_(1.01)
    model.save_pretrained(str(run / "estimator" / "model"))
    (run / "eval").mkdir()
    (run / "eval" / "responses.jsonl").write_text('{"id": "x", "response": "r"}\n')
    return run


def test_identity_fingerprints_content(finished_run, minilm_path, tmp_path):
    import shutil

    from opgrpo.estimator.identity import estimator_identity, fingerprint, label

    tuned = estimator_identity(finished_run / "estimator" / "model", minilm_path)
    base = estimator_identity(minilm_path, minilm_path)
    assert tuned["tuned"] and not base["tuned"]
    assert len(tuned["fingerprint"]) == 12 and tuned["fingerprint"] != base["fingerprint"]
    copy = shutil.copytree(minilm_path, tmp_path / "copy")  # the same model elsewhere: same fingerprint, untuned
    assert fingerprint(copy) == base["fingerprint"] and not estimator_identity(copy, minilm_path)["tuned"]
    assert label(base).endswith("(untuned estimator)") and label(tuned) == tuned["fingerprint"]


@pytest.mark.parametrize("key", ["eval.responses_file", "eval.model_path"])
def test_standalone_eval_uses_the_runs_estimator(compose, finished_run, tmp_path, key, caplog):
    from opgrpo.app.context import RunContext
    from opgrpo.app.rundir import RunDir

    target = finished_run / ("eval/responses.jsonl" if key == "eval.responses_file" else "grpo/final")
    ctx = RunContext(to_config(compose(["experiment=cpu_demo", "stage=eval", f"{key}={target}"])), RunDir(tmp_path / "new"))
    assert ctx.encoder_path() == str(finished_run / "estimator" / "model")
    assert ctx.estimator_identity()["tuned"]
    assert "untuned" not in caplog.text


def test_untuned_base_estimator_is_warned_and_labelled(compose, tmp_path, caplog):
    from opgrpo.app.context import RunContext
    from opgrpo.app.rundir import RunDir

    ctx = RunContext(to_config(compose(["experiment=cpu_demo", "stage=eval"])), RunDir(tmp_path))
    with caplog.at_level(logging.WARNING):
        path = ctx.encoder_path()
    assert path == ctx.cfg.estimator.base_model and not ctx.estimator_identity()["tuned"]
    assert "untuned base estimator" in caplog.text
