"""One W&B run per job (opgrpo.app.tracking), checked on W&B's own offline files, and the trainers' other trackers.

W&B 0.31 keeps an offline run in one transaction log, ``<run dir>/wandb/offline-run-<time>-<id>/run-<id>.wandb``
(LevelDB log format of ``Record`` protobufs; ``files/config.yaml`` and ``wandb-summary.json`` are only written when
syncing), so ``offline_runs`` reads that log back: name, group, config, summary, history, exit code.
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from opgrpo.app.runconfig import to_config
from opgrpo.app.rundir import RunDir
from opgrpo.app.tracking import (
    TRACKER_MODULES,
    JobTracker,
    report_to,
    run_name,
    sweep_group,
    tracked_job,
    wandb_init_kwargs,
    wandb_run_id,
)

BIN = Path(sys.executable).parent / "opgrpo"


# ---- reading W&B's offline files -----------------------------------------------------------------------------
def _records(path: Path):
    """The protobuf records of a ``.wandb`` file (LevelDB log: 7-byte file header, 32 KiB blocks, each record
    chunk behind a 7-byte header: crc32, length, type FULL=1 FIRST=2 MIDDLE=3 LAST=4)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block, pos, buf = path.read_bytes(), 32768, 7, b""
    assert data[:4] == b":W&B", path
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            yield record


def _key(item) -> str:
    return item.key or ".".join(item.nested_key)


def read_offline_run(path: Path) -> dict:
    """id, name, group, config, summary, history rows, defined metrics and exit code of one offline run."""
    run = {"config": {}, "summary": {}, "history": [], "metrics": [], "exit_code": None}
    for r in _records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            run.update(id=r.run.run_id, name=r.run.display_name, group=r.run.run_group, project=r.run.project,
                       job_type=r.run.job_type)
            run["config"].update({_key(u): json.loads(u.value_json) for u in r.run.config.update})
        elif kind == "config":
            run["config"].update({_key(u): json.loads(u.value_json) for u in r.config.update})
        elif kind == "summary":
            run["summary"].update({_key(u): json.loads(u.value_json) for u in r.summary.update})
        elif kind == "history":
            run["history"].append({_key(i): json.loads(i.value_json) for i in r.history.item})
        elif kind == "metric":
            run["metrics"].append((r.metric.name or r.metric.glob_name, r.metric.step_metric))
        elif kind == "exit":
            run["exit_code"] = r.exit.exit_code
    return run


def offline_runs(root: Path, wait_s: float = 30.0) -> list[dict]:
    """Every offline run under ``root`` (oldest first), with its folder.

    W&B's service process writes the ``.wandb`` file on its own after ``run.finish()`` returns; a run is read
    once its exit record is there (or after ``wait_s``), so a read never races the writer (a test once saw an empty
    history)."""
    import time

    deadline = time.monotonic() + wait_s
    while True:
        runs = [{**read_offline_run(path), "folder": path.parent}
                for path in sorted(root.rglob("offline-run-*/run-*.wandb"))]
        if all(run["exit_code"] is not None for run in runs) or time.monotonic() > deadline:
            return runs
        time.sleep(0.2)


@pytest.fixture
def wandb_offline(monkeypatch, tmp_path):
    """W&B offline with every W&B folder under tmp_path; no agent run id, rank 0."""
    home = tmp_path / "wandb_home"
    for var, sub in (("WANDB_DIR", "dir"), ("WANDB_CACHE_DIR", "cache"), ("WANDB_CONFIG_DIR", "config"),
                     ("WANDB_DATA_DIR", "data"), ("WANDB_ARTIFACT_DIR", "artifacts")):
        (home / sub).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_RUN_ID", "WANDB_RUN_GROUP", "WANDB_NAME", "RANK"):
        monkeypatch.delenv(var, raising=False)
    return home


SWEEP = ["experiment=cpu_demo", "stage=eval", "logger=wandb"]


def _write_multirun_yaml(sweep: Path, task: list[str]) -> None:
    sweep.mkdir(parents=True, exist_ok=True)
    (sweep / "multirun.yaml").write_text(json.dumps({"hydra": {"overrides": {"task": task}}}))


# ---- (a) one run per job -------------------------------------------------------------------------------------
def test_two_jobs_of_a_sweep_are_two_runs_with_their_own_name_group_config_and_summary(
        compose, wandb_offline, tmp_path):
    """Issue 15.5: transformers' WandbCallback put every job of a multirun into the first job's run, named "0"."""
    sweep = tmp_path / "sweep"
    _write_multirun_yaml(sweep, [*SWEEP, "reward.weights.uniqueness=0.2,0.4"])
    for job, weight, accuracy in (("0", 0.2, 0.25), ("1", 0.4, 0.75)):
        overrides = [*SWEEP, f"reward.weights.uniqueness={weight}"]
        tracker = JobTracker().start(compose(overrides), sweep / job, overrides, sweep)
        assert tracker.active
        tracker.set_config({"reward_used": {"uniqueness": weight}})
        tracker.log_summary({"eval/overall/accuracy": accuracy, "eval/note": "x", "eval/skipped": None})
        tracker.finish(0)

    first, second = offline_runs(sweep)
    for run, job, weight, accuracy in ((first, "0", 0.2, 0.25), (second, "1", 0.4, 0.75)):
        assert run["folder"].parent == sweep / job / "wandb"  # the run's files stay with the job
        assert run["id"] == wandb_run_id(sweep / job)
        assert run["name"] == f"reward.weights.uniqueness={weight}"  # the swept override only
        assert run["group"] == sweep_group(sweep) and run["project"] == "opgrpo" and run["job_type"] == "eval"
        assert run["config"]["reward"]["weights"]["uniqueness"] == weight
        assert run["config"]["reward_used"] == {"uniqueness": weight}
        assert run["config"]["job"]["run_dir"] == str((sweep / job).resolve())
        assert run["summary"]["eval/overall/accuracy"] == accuracy and run["summary"]["eval/note"] == "x"
        assert "eval/skipped" not in run["summary"] and run["exit_code"] == 0
    assert first["id"] != second["id"]


def test_a_restarted_job_continues_the_same_run_and_a_failure_is_recorded(compose, wandb_offline, tmp_path):
    """Same run directory (resume=true) -> same W&B id; tracked_job puts the run directory's summary into W&B's and
    finishes with exit code 1 when the stages raised."""
    cfg = compose(SWEEP)
    run_dir = RunDir(tmp_path / "run")
    with pytest.raises(RuntimeError), tracked_job(cfg, run_dir, [], "") as tracker:
        assert tracker.active
        run_dir.log("eval_base", {"overall": {"accuracy": 0.5}})
        raise RuntimeError("killed")
    with tracked_job(cfg, RunDir(tmp_path / "run"), [], "") as tracker:
        tracker.log_summary({"eval/overall/accuracy": 0.75})

    killed, resumed = offline_runs(tmp_path / "run")
    assert killed["id"] == resumed["id"] == wandb_run_id(tmp_path / "run")
    assert killed["exit_code"] == 1 and resumed["exit_code"] == 0
    assert killed["summary"]["eval_base/overall/accuracy"] == 0.5
    # an earlier attempt's summary.json is not read back as it is (it may be another run's): its numbers return only
    # with a stage reused by its manifest (opgrpo.app.reuse)
    assert "eval_base/overall/accuracy" not in resumed["summary"]
    assert resumed["summary"]["eval/overall/accuracy"] == 0.75
    assert killed["name"] == resumed["name"] == "default" and killed["group"] == ""


def test_names_and_groups(compose, tmp_path, monkeypatch):
    """name: logger.wandb.name > the swept overrides (multirun) > every override > "default"; group:
    logger.wandb.group > the sweep directory; id: the run directory's, unless a W&B agent gave one."""
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)
    cfg = compose(SWEEP)
    assert run_name(cfg, ["seed=1", "reward.weights.coverage=0.1"]) == "seed=1,reward.weights.coverage=0.1"
    assert run_name(cfg, []) == "default"
    sweep = tmp_path / "sweep"
    _write_multirun_yaml(sweep, ["stage=eval", "seed=1,2", "pipeline=[grpo,eval]"])
    job = ["stage=eval", "seed=2", "pipeline=[grpo,eval]", "reward.weights.coverage=0.1"]  # the last: sweeper params
    assert run_name(cfg, job, sweep) == "seed=2,reward.weights.coverage=0.1"
    assert run_name(cfg, job, tmp_path / "no_sweep_file") == ",".join(job)
    named = compose([*SWEEP, "logger.wandb.name=mine", "logger.wandb.group=ablation", "tags=[a]",
                     "logger.wandb.tags=[b]"])
    kw = wandb_init_kwargs(named, tmp_path / "run", job, sweep)
    assert (kw["name"], kw["group"], kw["tags"], kw["resume"]) == ("mine", "ablation", ["a", "b"], "allow")
    assert kw["dir"] == str((tmp_path / "run").resolve()) and kw["mode"] == "offline"
    assert wandb_init_kwargs(cfg, tmp_path / "run", job, "")["group"] is None
    monkeypatch.chdir(tmp_path)
    assert wandb_init_kwargs(cfg, "run", job, tmp_path / "multirun" / "2026-05-01" / "12-00-00")["group"] == \
        "multirun/2026-05-01/12-00-00"
    assert wandb_run_id("run") == wandb_run_id(tmp_path / "run") != wandb_run_id(tmp_path / "other")
    monkeypatch.setenv("WANDB_RUN_ID", "agent42")
    assert wandb_init_kwargs(cfg, "run", job, "")["id"] == "agent42"


@pytest.mark.parametrize("how", ["env_disabled", "mode_disabled", "csv", "rank1"])
def test_no_run_when_wandb_is_off_or_not_rank_0(compose, wandb_offline, tmp_path, monkeypatch, how):
    """WANDB_MODE=disabled in the environment wins over logger.wandb.mode (issue 16.7); ranks other than 0 log
    nothing (one run per job, not per process)."""
    overrides = {"env_disabled": [*SWEEP, "logger.wandb.mode=online"], "mode_disabled": [*SWEEP,
                 "logger.wandb.mode=disabled"], "csv": ["experiment=cpu_demo"], "rank1": SWEEP}[how]
    if how == "env_disabled":
        monkeypatch.setenv("WANDB_MODE", "disabled")
    if how == "rank1":
        monkeypatch.setenv("RANK", "1")
    cfg = compose(overrides)
    tracker = JobTracker().start(cfg, tmp_path / "run", [], "")
    assert not tracker.active and tracker.trainer_callbacks("grpo") == [] and report_to(cfg) == []
    tracker.log_summary({"eval/overall/accuracy": 1.0})
    tracker.set_config({"a": 1})
    tracker.finish(0)
    assert not list(tmp_path.rglob("*.wandb"))
    if how == "env_disabled":
        assert os.environ["WANDB_MODE"] == "disabled"


# ---- (b) the trainers log under their stage -------------------------------------------------------------------
def test_sft_and_grpo_log_into_the_job_run_under_their_prefix_and_own_step(compose, wandb_offline, tmp_path):
    from transformers import TrainerControl, TrainerState

    tracker = JobTracker().start(compose(SWEEP), tmp_path / "run", [], "")
    args = SimpleNamespace(to_sanitized_dict=lambda: {"learning_rate": 1e-5, "per_device_train_batch_size": 4})
    control = TrainerControl()
    for stage, step, logs in (("sft", 2, {"loss": 2.0, "epoch": 1.0}),
                              ("grpo", 3, {"loss": 0.5, "reward": 1.25, "rewards/op_total/mean": 0.75,
                                           "eval_loss": 0.3, "train_loss": 0.4})):
        (callback,) = tracker.trainer_callbacks(stage)
        state = TrainerState(global_step=step, is_world_process_zero=True)
        callback.on_train_begin(args, state, control)
        callback.on_log(args, state, control, logs=logs)
        callback.on_log(args, state, control, logs={})  # nothing to log: no row
        callback.on_log(args, state, control, logs={"train_runtime": 3.5, "epoch": 1.0})  # the end: summary only
        callback.on_log(args, TrainerState(global_step=step, is_world_process_zero=False), control,
                        logs={"loss": 9.0})  # another rank: nothing
    tracker.finish(0)

    (run,) = offline_runs(tmp_path / "run")
    rows = [{k: v for k, v in row.items() if not k.startswith("_")} for row in run["history"]]
    assert rows == [
        {"sft/train/loss": 2.0, "sft/train/epoch": 1.0, "sft/train/global_step": 2},
        {"grpo/train/loss": 0.5, "grpo/train/reward": 1.25, "grpo/train/rewards/op_total/mean": 0.75,
         "grpo/eval/loss": 0.3, "grpo/train/global_step": 3},
    ]
    assert run["summary"]["sft/train/train_runtime"] == 3.5 and run["summary"]["grpo/train/train_loss"] == 0.4
    assert ("sft/*", "sft/train/global_step") in run["metrics"]
    assert ("grpo/*", "grpo/train/global_step") in run["metrics"]
    assert run["config"]["grpo_args"]["per_device_train_batch_size"] == 4 and "sft_args" in run["config"]


# ---- the other trackers ----------------------------------------------------------------------------------------
def test_report_to_never_hands_wandb_to_the_trainers(compose):
    """Issue 15.5: with logger=wandb the trainers got report_to=["wandb"], so transformers' WandbCallback logged
    unprefixed duplicates into whichever run was open."""
    assert report_to(compose(SWEEP)) == []


def test_logger_report_to_is_checked_at_start_up(compose, tmp_path, monkeypatch):
    import importlib.util

    from opgrpo.app.validate import ConfigError, check

    with pytest.raises(ConfigError) as err:
        check(compose([*SWEEP, "logger.report_to=[nosuchtracker,wandb]"]))
    assert "logger.report_to: unknown tracker 'nosuchtracker'" in str(err.value)
    assert "logger.report_to: 'wandb' is not a report_to entry" in str(err.value)
    if importlib.util.find_spec("trackio") is None:  # not installed here: refused, naming the package
        with pytest.raises(ConfigError) as err:
            check(compose(["experiment=cpu_demo", "stage=eval", "logger.report_to=[trackio]"]))
        assert "logger.report_to: 'trackio' needs the trackio package, which is not installed" in str(err.value)
    fake = tmp_path / "site"
    (fake / "trackio").mkdir(parents=True)
    (fake / "trackio" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(fake))
    cfg = compose([*SWEEP, "logger.report_to=[trackio]"])
    check(cfg)
    assert report_to(cfg) == ["trackio"]


def test_every_known_tracker_is_a_transformers_integration():
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    assert set(TRACKER_MODULES) <= set(INTEGRATION_TO_CALLBACK) - {"wandb"}


# ---- (c) a real multirun through the entrypoint ----------------------------------------------------------------
@pytest.mark.slow
def test_a_two_job_multirun_leaves_two_offline_runs(tmp_path, responses_file, tiny_lm):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "WANDB_DIR": str(tmp_path / "wandb_dir"), "WANDB_CACHE_DIR": str(tmp_path / "wandb_cache"),
           "WANDB_CONFIG_DIR": str(tmp_path / "wandb_config"), "WANDB_DATA_DIR": str(tmp_path / "wandb_data")}
    for var in ("WANDB_RUN_ID", "WANDB_NAME", "WANDB_RUN_GROUP", "RANK"):
        env.pop(var, None)
    sweep = tmp_path / "sweep"
    res = subprocess.run(
        [str(BIN), "-m", "experiment=cpu_demo", "stage=eval", f"eval.responses_file={responses_file}",
         f"eval.nli.model={tiny_lm}", "logger=wandb", "reward.weights.uniqueness=0.2,0.4",
         f"hydra.sweep.dir={sweep}"],
        check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    ids = set()
    for job, weight in (("0", 0.2), ("1", 0.4)):
        summary = json.loads((sweep / job / "summary.json").read_text())
        (run,) = offline_runs(sweep / job)
        ids.add(run["id"])
        assert run["name"] == f"reward.weights.uniqueness={weight}" and run["group"] == "sweep"
        assert run["config"]["reward"]["weights"]["uniqueness"] == weight
        assert run["summary"]["eval/overall/accuracy"] == summary["eval/overall/accuracy"]
        assert {k for k in summary if k.startswith("eval/")} <= set(run["summary"])
        assert run["exit_code"] == 0
    assert len(ids) == 2


def test_reward_used_shows_the_swept_weights_beside_trls(compose):
    """Issue 15.5: with aggregation=total TRL's reward_weights are [1, 0, 0, 0, 0] in every run of a weight sweep."""
    from opgrpo.app.tracking import reward_used

    cfg = compose([*SWEEP, "reward.weights.uniqueness=0.4"])

    def op_total():
        pass

    def coverage():
        pass

    used = reward_used(to_config(cfg).reward, [op_total, coverage], [1.0, 0.0], "sum_then_normalize")
    assert used["weights"]["uniqueness"] == 0.4 and used["aggregation"] == cfg.reward.aggregation
    assert used["trl_reward_weights"] == {"op_total": 1.0, "coverage": 0.0}
    assert used["trl_aggregation"] == "sum_then_normalize"
