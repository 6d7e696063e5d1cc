"""Preemption in a real tiny GRPO / SFT run (issue #26 item 7): a signal sent to this very process mid-run stops
training at a step boundary with a full checkpoint of that step, ``Preempted`` is raised instead of saving final/,
and the resumed run continues from that step with each step logged once."""
from __future__ import annotations

import os
import signal

import pytest
from helpers import completion_length, make_items, sft_settings, tiny_grpo
from transformers import TrainerCallback

from opgrpo.training.checkpoints import checkpoint_problem
from opgrpo.training.preempt import Preempted, catching, leave, preemption_signals
from opgrpo.utils.jsonio import read_jsonl


class SignalAt(TrainerCallback):
    """Send ``signum`` to this process at the end of step ``step`` (before the preemption callback looks)."""

    def __init__(self, step: int, signum: int = signal.SIGTERM):
        self.step, self.signum = step, signum

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step + 1 == self.step:  # during step `step`: it finishes, then training stops
            os.kill(os.getpid(), self.signum)


class Steps(TrainerCallback):
    def __init__(self):
        self.steps: list[int] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def test_sigterm_at_step_2_of_6_saves_that_step_and_the_resumed_run_finishes(tiny_model, tmp_path):
    from opgrpo.training.grpo import run_grpo

    # the CPU preset's checkpoints: model only, every 4 steps; the preemption checkpoint must hold the optimizer
    settings = tiny_grpo(learning_rate=1e-3, max_steps=6, save_steps=4, save_total_limit=1, save_only_model=True,
                         completion_samples_every=0, clean_checkpoints=True)
    items = make_items(8)
    before = signal.getsignal(signal.SIGTERM)
    first = Steps()
    with pytest.raises(Preempted) as info:
        run_grpo(tiny_model, items, [completion_length], [1.0], settings, tmp_path,
                 callbacks=[SignalAt(2), first])
    exc = info.value
    assert (exc.step, exc.signum, exc.stage, exc.exit_code) == (2, signal.SIGTERM, "grpo", 143)
    assert first.steps == [1, 2]  # stopped at the boundary of the step the signal arrived in
    assert signal.getsignal(signal.SIGTERM) is before and exc.previous is before  # handler given back
    assert exc.record() == {"stage": "grpo", "step": 2, "signal": "SIGTERM",
                            "checkpoint": str(tmp_path / "checkpoint-2")}
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-2"]
    assert checkpoint_problem(tmp_path / "checkpoint-2") is None  # whole, optimizer state included
    assert (tmp_path / "checkpoint-2" / "optimizer.pt").is_file()
    assert not (tmp_path / "final").exists()

    second = Steps()
    metrics = run_grpo(tiny_model, items, [completion_length], [1.0], settings, tmp_path, resume=True,
                       callbacks=[second])
    assert second.steps == [3, 4, 5, 6] and metrics["global_step"] == 6
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4, 5, 6]
    summaries = [r for r in rows if "train_runtime" in r]  # the preempted attempt's end-of-run line is dropped
    assert [r["step"] for r in summaries] == [6]
    assert (tmp_path / "final" / "model.safetensors").is_file() and not list(tmp_path.glob("checkpoint-*"))


def test_sigusr1_stops_sft_too_and_signals_outside_training_keep_their_handlers(tiny_model, tmp_path):
    from opgrpo.training.sft import run_sft

    settings = sft_settings(max_steps=4, per_device_train_batch_size=2, global_batch_size=2, max_length=128,
                            save_steps=100, save_only_model=True)
    with pytest.raises(Preempted) as info:
        run_sft(tiny_model, make_items(8), settings, tmp_path, callbacks=[SignalAt(3, signal.SIGUSR1)])
    assert (info.value.step, info.value.stage, info.value.exit_code) == (3, "sft", 128 + signal.SIGUSR1)
    assert checkpoint_problem(tmp_path / "checkpoint-3") is None and not (tmp_path / "final").exists()
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # Python's default again once training is over


def test_leave_calls_the_previous_handler_then_exits_128_plus_the_signal(monkeypatch):
    seen = []
    exc = Preempted(4, signal.SIGTERM, "grpo", "ckpt", previous=lambda s, f: seen.append(s))
    with pytest.raises(SystemExit) as out:
        leave(exc)
    assert seen == [signal.SIGTERM] and out.value.code == 143
    with pytest.raises(SystemExit) as out:  # Python's default handler: exit with the code the shell would report
        leave(Preempted(1, signal.SIGUSR1, previous=signal.SIG_DFL))
    assert out.value.code == 128 + signal.SIGUSR1


def test_plain_slurm_job_requeues_itself_on_sigusr1(monkeypatch, tmp_path):
    scontrol = tmp_path / "scontrol"
    scontrol.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/called\n")
    scontrol.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    with pytest.raises(SystemExit):
        leave(Preempted(3, signal.SIGUSR1, previous=signal.SIG_DFL))
    assert (tmp_path / "called").read_text().split() == ["requeue", "4242"]
    (tmp_path / "called").unlink()
    with pytest.raises(SystemExit):  # SIGTERM: the scheduler's own preemption decides (no requeue from here)
        leave(Preempted(3, signal.SIGTERM, previous=signal.SIG_DFL))
    with pytest.raises(SystemExit):  # other ranks leave the requeue to rank 0
        leave(Preempted(3, signal.SIGUSR1, previous=signal.SIG_DFL), is_main=False)
    assert not (tmp_path / "called").exists()


def test_submitit_jobs_also_catch_submitits_signal(monkeypatch):
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    assert preemption_signals() == [signal.SIGTERM, signal.SIGUSR1]
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    assert preemption_signals() == [signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2]
    with catching() as watch:
        os.kill(os.getpid(), signal.SIGUSR2)
    assert watch.signum == signal.SIGUSR2 and signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL
