"""Preemption through the real entrypoint (issue #26 item 7): a 2-process DeepSpeed ZeRO-2 GRPO run on CPU (gloo)
signalled mid-run saves a checkpoint of the step it was in on both ranks, says ``preempted`` at that step in
status.json and exits as its launcher reports it; the same command resumes from that step and logs each step once.
The same through Hydra's submitit launcher on submitit's local executor, whose requeue on its preemption signal
(SIGUSR2) reruns the job by itself. The launcher presets' requeue settings are checked by composing them."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# no resume=true: the same command continues the interrupted stage by its manifest (opgrpo.app.reuse)
TINY = ["experiment=cpu_demo", "model.gguf_file=", "trainer.grpo.trl.max_completion_length=12",
        "reward.extra_funcs=[dist_rewards:own_item]", "stage=grpo", "deepspeed=zero2",
        "trainer.grpo.trl.max_steps=8", "trainer.grpo.trl.save_steps=100"]  # no checkpoint but the preemption's


def _env(tmp_path: Path) -> dict[str, str]:
    rewards = tmp_path / "rewards"
    rewards.mkdir(exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "disabled",
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "DIST_REWARDS_DIR": str(rewards),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "OPGRPO_RUN_DIR",
                "SLURM_JOB_ID", "SUBMITIT_EXECUTOR"):
        env.pop(key, None)
    return env


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _logged_steps(metrics: Path) -> list[int]:
    if not metrics.is_file():
        return []
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return [r["step"] for r in rows if "loss" in r]


def _descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (from /proc), children first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _signal_when(proc: subprocess.Popen, metrics: Path, step: int, send, timeout: float = 900) -> float:
    """Wait until ``metrics`` logs optimizer step ``step``, then ``send()``; the time it was sent."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if _logged_steps(metrics) and max(_logged_steps(metrics)) >= step:
            send()
            return time.time()
        time.sleep(0.2)
    out, err = proc.communicate(timeout=60)
    pytest.fail(f"step {step} was never logged (exit {proc.returncode}):\n{err[-4000:]}")


def _each_step_once(metrics: Path, steps: int) -> None:
    assert _logged_steps(metrics) == list(range(1, steps + 1))
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["step"] for r in rows if "train_runtime" in r] == [steps]  # the preempted attempt's summary is gone


# Not slow: the default `make test` keeps the repro (SIGTERM mid-run: exit 143, status.json said running).
def test_sigterm_mid_run_exits_143_with_status_preempted_and_the_same_command_resumes(tmp_path, tiny_model):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "opgrpo", *TINY, "deepspeed=none", "trainer.grpo.trl.max_steps=6",
            "trainer.grpo.trl.save_steps=2", f"model.name_or_path={tiny_model}", f"hydra.run.dir={run}"]
    proc = subprocess.Popen(args, env=_env(tmp_path), cwd=tmp_path, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    _signal_when(proc, run / "grpo" / "metrics.jsonl", 3, lambda: proc.send_signal(signal.SIGTERM))
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 143, err[-3000:]
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "preempted" and status["signal"] == "SIGTERM", status
    k = status["step"]
    assert 3 <= k < 6 and status["checkpoint"] == str(run / "grpo" / f"checkpoint-{k}")
    assert f"grpo preempted by SIGTERM at step {k}" in out + err
    res = subprocess.run(args, env=_env(tmp_path), cwd=tmp_path, text=True, capture_output=True, timeout=600,
                         check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"resuming from {run / 'grpo' / f'checkpoint-{k}'}" in res.stderr + res.stdout
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    _each_step_once(run / "grpo" / "metrics.jsonl", 6)


@pytest.mark.slow
def test_two_process_deepspeed_grpo_preempted_by_sigterm_resumes_from_that_step(tmp_path, tiny_model):
    run = tmp_path / "run"
    args = [*TINY, f"model.name_or_path={tiny_model}", f"hydra.run.dir={run}"]

    def torchrun():  # the agent waits up to --shutdown-timeout for its workers after forwarding SIGTERM (default 30 s)
        return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                                 "--nnodes", "1", "--master_addr", "127.0.0.1", "--master_port", _free_port(),
                                 "--shutdown-timeout", "600", "-m", "opgrpo", *args], env=_env(tmp_path), cwd=tmp_path,
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    proc = torchrun()
    started = time.time()
    sent = _signal_when(proc, run / "grpo" / "metrics.jsonl", 2, lambda: proc.send_signal(signal.SIGTERM))
    out, err = proc.communicate(timeout=900)
    ended = time.time()
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "preempted" and status["stage"] == "grpo" and status["signal"] == "SIGTERM", status
    k = status["step"]
    assert 2 <= k < 8, status
    ckpt = run / "grpo" / f"checkpoint-{k}"
    assert sorted(p.name for p in (run / "grpo").glob("checkpoint-*")) == [ckpt.name]
    # both ranks saved their ZeRO-2 optimizer shards of the same step (they agreed on where to stop)
    shards = sorted(p.name for p in ckpt.glob("global_step*/*optim_states.pt"))
    assert len(shards) == 2 and all(f"global_step{k}" in str(p) for p in ckpt.glob("global_step*")), shards
    assert not (run / "grpo" / "final").exists()
    assert _logged_steps(run / "grpo" / "metrics.jsonl") == list(range(1, k + 1))
    logs = (run / "cli.log").read_text() + (run / "cli.rank1.log").read_text()
    assert logs.count(f"preempted by SIGTERM at step {k}") == 2, logs[-3000:]  # each rank stopped at step k
    # torchrun, signalled itself, forwards SIGTERM to its workers, waits for them (each exits 128 + 15 once saved) and
    # exits 1 with its own SignalException: the exit status a torchrun launch gives
    print(f"\npreempted at step {k}: signal {sent - started:.1f} s after the start, stopped {ended - sent:.1f} s "
          f"later, torchrun exit {proc.returncode}")
    assert proc.returncode == 1 and "got signal: 15" in err, err[-3000:]

    proc = torchrun()
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-4000:]
    assert f"resuming from {ckpt}" in out + err
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["grpo/global_step"] == 8 and summary["grpo/world_size"] == 2
    _each_step_once(run / "grpo" / "metrics.jsonl", 8)


@pytest.mark.slow
def test_submitit_local_job_preempted_by_its_signal_is_requeued_and_resumes(tmp_path, tiny_model):
    sweep = tmp_path / "sweep"
    proc = subprocess.Popen(
        [sys.executable, "-m", "opgrpo", "-m", "launcher=submitit_local", "hydra.launcher.tasks_per_node=2",
         *TINY, f"model.name_or_path={tiny_model}", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, env=_env(tmp_path), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def usr2_to_the_tasks():  # what submitit's local controller sends signal_delay_s before timeout_min
        tasks = [p for p in _descendants(proc.pid) if "submitit.core._submit" in _cmdline(p)]
        assert len(tasks) == 2, tasks
        for pid in tasks:
            os.kill(pid, signal.SIGUSR2)

    started = time.time()
    sent = _signal_when(proc, sweep / "0" / "grpo" / "metrics.jsonl", 2, usr2_to_the_tasks)
    out, err = proc.communicate(timeout=1200)
    assert proc.returncode == 0, err[-4000:]
    run = sweep / "0"
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    task_logs = "\n".join(p.read_text() for p in sorted((sweep / ".submitit").glob("*/*_log.*")))
    assert "Requeued job" in task_logs, task_logs[-4000:]
    cli = (run / "cli.log").read_text()
    preempted = [line for line in cli.splitlines() if "preempted by SIGUSR2 at step" in line]
    assert preempted, cli[-3000:]
    k = int(preempted[0].split("at step ")[1].split(";")[0])
    assert 2 <= k < 8 and f"resuming from {run / 'grpo' / f'checkpoint-{k}'}" in cli
    summary = json.loads((run / "summary.json").read_text())
    assert summary["grpo/global_step"] == 8 and summary["grpo/world_size"] == 2
    _each_step_once(run / "grpo" / "metrics.jsonl", 8)
    assert not (sweep / ".submitit" / "%j").exists()  # no literal folder beside the job's own
    print(f"\nsubmitit: preempted at step {k} ({sent - started:.1f} s after the start), requeued, finished "
          f"{time.time() - sent:.1f} s after the signal")


def test_slurm_preset_requeues_preempted_and_timed_out_jobs(compose):
    launcher = compose(["launcher=slurm"], return_hydra_config=True).hydra.launcher
    assert launcher.max_num_timeout >= 1  # hydra-submitit-launcher's default 0: a job at its time limit ends there
    assert launcher.signal_delay_s >= 300  # the signal comes early enough to finish a step and save
    assert launcher.array_parallelism > 0


def test_submitit_presets_cap_parallel_jobs(compose):
    cfg = compose(["launcher=slurm", "hydra.launcher.array_parallelism=2"], return_hydra_config=True)
    assert cfg.hydra.launcher.array_parallelism == 2
    # submitit's local executor has no array_parallelism: Hydra's sweeper hands it the jobs in batches instead
    cfg = compose(["launcher=submitit_local", "hydra.sweeper.max_batch_size=2"], return_hydra_config=True)
    assert cfg.hydra.sweeper.max_batch_size == 2


def test_the_literal_submitit_folder_is_removed_only_when_empty(tmp_path):
    from omegaconf import OmegaConf

    from opgrpo.app.callbacks import remove_literal_submitit_folder

    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)},
                                         "launcher": {"submitit_folder": "${hydra.sweep.dir}/.submitit/%j"}}})
    stray, job = tmp_path / ".submitit" / "%j", tmp_path / ".submitit" / "123"
    stray.mkdir(parents=True)
    job.mkdir()
    assert remove_literal_submitit_folder(config) and not stray.exists() and job.is_dir()
    stray.mkdir()
    (stray / "kept.txt").write_text("x")
    assert not remove_literal_submitit_folder(config) and stray.is_dir()
    assert not remove_literal_submitit_folder(OmegaConf.create({"hydra": {"launcher": {}}}))  # basic launcher


def _submitit_times(log: str, what: str) -> float:
    from datetime import datetime

    line = next(line for line in log.splitlines() if what in line)  # submitit INFO (2026-12-05 06:56:09,123) - ...
    return datetime.strptime(line.split("(", 1)[1].split(")", 1)[0], "%Y-%m-%d %H:%M:%S,%f").timestamp()


@pytest.mark.slow
def test_submitit_local_runs_at_most_max_batch_size_jobs_at_once(tmp_path):
    sweep = tmp_path / "sweep"
    res = subprocess.run([sys.executable, "-m", "opgrpo", "-m", "launcher=submitit_local",
                          "hydra.sweeper.max_batch_size=2", "stage=describe", "seed=1,2,3",
                          f"hydra.sweep.dir={sweep}"], cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                         text=True, timeout=900, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    logs = {p.parent.name: p.read_text() for p in (sweep / ".submitit").glob("*/*_0_log.out")}
    assert len(logs) == 3, sorted(logs)
    spans = sorted((_submitit_times(t, "Starting with"), _submitit_times(t, "Job completed successfully"))
                   for t in logs.values())
    assert spans[2][0] >= max(spans[0][1], spans[1][1])  # the third job started after both of the first wave ended
    assert sorted(p.name for p in (sweep / ".submitit").iterdir()) == sorted(logs)  # no literal %j folder
