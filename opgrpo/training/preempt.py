"""Preemption: a training stage stopped by its cluster saves a checkpoint at the next optimizer step and says so.

While ``trainer.train()`` runs (``catching`` around it in opgrpo.training.common.train_and_save), SIGTERM, SIGUSR1
and, inside a submitit job, submitit's preemption signal (SIGUSR2 unless ``SUBMITIT_PREEMPT_SIGNAL`` says otherwise)
only note the signal. At the next step end ``PreemptionCallback`` (opgrpo.training.callbacks) asks every rank
(``agreed``: an all_reduce MAX, so ranks signalled at different moments stop at the same step) and, when one was
signalled, makes the trainer save a full checkpoint of that step and stop; train_and_save then raises ``Preempted``
instead of saving final/. The CLI writes status.json ``preempted`` (stage, step, signal) and calls ``leave``: the
signal's previous Python handler runs (submitit's requeues the job and exits), a plain SLURM job signalled with
SIGUSR1 requeues itself with ``scontrol requeue`` as PyTorch Lightning's SLURM auto-requeue does, and the process
exits with 128 + the signal number (143 for SIGTERM). The re-run (or the requeued job) resumes from the checkpoint.

Outside ``catching`` the signals keep their previous handlers (Python's default: the process ends). No torch or
Hydra import at module level.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

SIGNALS = ("SIGTERM", "SIGUSR1")
"""What a cluster sends before it stops a job: SIGTERM (preemption, ``scancel``, the time limit), SIGUSR1 (SLURM's
``--signal=USR1@<seconds>`` before the time limit, as PyTorch Lightning uses it)."""


def preemption_signals() -> list[signal.Signals]:
    """``SIGNALS`` and, inside a submitit job, submitit's preemption/timeout signal (``SUBMITIT_PREEMPT_SIGNAL``,
    default USR2), in that order, without duplicates; names this platform lacks are left out."""
    names = list(SIGNALS)
    if os.environ.get("SUBMITIT_EXECUTOR"):
        names.append("SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2").upper().removeprefix("SIG"))
    out: list[signal.Signals] = []
    for name in names:
        sig = getattr(signal, name, None)
        if sig is not None and sig not in out:
            out.append(sig)
    return out


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


@dataclass
class Watch:
    """What ``catching`` saw: the first preemption signal received on this process (``signum``, 0 = none), the one
    every rank agreed on at a step end (``agreed``), and the handlers the signals had before (``previous``)."""

    signum: int = 0
    agreed: int = 0
    previous: dict[int, Any] = field(default_factory=dict)

    def note(self, signum: int, frame: Any = None) -> None:
        """The signal handler: remember the first signal, nothing else (it runs between two bytecodes)."""
        if not self.signum:
            self.signum = signum


@contextmanager
def catching(signals: list[signal.Signals] | None = None) -> Iterator[Watch]:
    """Within the block the preemption signals are noted on the yielded ``Watch`` instead of acting; their previous
    handlers come back when it ends. Outside the main thread (where Python cannot set handlers) nothing is caught."""
    watch = Watch()
    if threading.current_thread() is not threading.main_thread():
        logger.warning("training runs outside the main thread: preemption signals are not caught")
        yield watch
        return
    for sig in preemption_signals() if signals is None else signals:
        watch.previous[int(sig)] = signal.getsignal(sig)
        signal.signal(sig, watch.note)
    try:
        yield watch
    finally:
        for signum, handler in watch.previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def agreed(signum: int, device: Any = None) -> int:
    """The largest of every rank's ``signum`` (0: no rank was signalled), by an all_reduce MAX when a process group
    with several ranks is up, else ``signum``. Every rank must call it at the same point (a step end). ``device``:
    where the NCCL tensor lives (the trainer's ``args.device``); gloo reduces on the CPU."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return signum
    on = device if dist.get_backend() == "nccl" and device is not None else "cpu"
    flag = torch.tensor([signum], dtype=torch.int64, device=on)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item())


class Preempted(Exception):
    """A training stage stopped by ``signum`` after saving ``checkpoint`` (step ``step``); no final model (unless the
    signal came after the last step, when ``final`` is the saved final model). ``previous``: the signal's handler
    before training (``leave`` calls it)."""

    def __init__(self, step: int, signum: int, stage: str = "", checkpoint: str | None = None,
                 previous: Any = None, final: str | None = None):
        self.step, self.signum, self.stage = int(step), int(signum), stage
        self.checkpoint, self.previous, self.final = checkpoint, previous, final
        super().__init__(str(self))

    @property
    def exit_code(self) -> int:
        """128 + the signal number: what a shell reports for a process the signal ended (143 for SIGTERM)."""
        return 128 + self.signum

    def record(self) -> dict[str, Any]:
        """The status.json fields: stage, step, signal, checkpoint (and final when it was saved)."""
        out = {"stage": self.stage, "step": self.step, "signal": signal_name(self.signum),
               "checkpoint": self.checkpoint}
        if self.final:
            out["final"] = self.final
        return out

    def __str__(self) -> str:
        saved = f"checkpoint {self.checkpoint}" if self.checkpoint else "no checkpoint"
        return (f"{self.stage or 'training'} preempted by {signal_name(self.signum)} at step {self.step}; {saved} "
                "saved: the same command with resume=true continues from it")


def _is_handler(handler: Any) -> bool:
    return callable(handler) and handler not in (signal.SIG_DFL, signal.SIG_IGN, signal.default_int_handler)


def requeue_slurm(run: Callable[..., Any] = subprocess.run) -> bool:
    """``scontrol requeue $SLURM_JOB_ID`` (best effort, logged); whether it succeeded."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID")
    job_id = (f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}" if job
              else os.environ.get("SLURM_JOB_ID", ""))
    scontrol = shutil.which("scontrol")
    if not job_id or scontrol is None:
        logger.warning("not requeued: %s", "no SLURM_JOB_ID" if not job_id else "scontrol not found")
        return False
    try:
        res = run([scontrol, "requeue", job_id], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("scontrol requeue %s failed: %s", job_id, exc)
        return False
    if res.returncode != 0:
        logger.warning("scontrol requeue %s failed (exit %d): %s", job_id, res.returncode, (res.stderr or "").strip())
        return False
    logger.info("requeued SLURM job %s: it resumes from the checkpoint", job_id)
    return True


def leave(exc: Preempted, is_main: bool = True) -> None:
    """End the process the way its launcher expects after ``exc`` was recorded: call the signal's previous Python
    handler (submitit's requeues the job and exits; its SIGTERM handler only logs), requeue a plain SLURM job
    (``SLURM_JOB_ID`` set, no submitit) signalled with SIGUSR1 from rank 0, then exit with ``exc.exit_code``."""
    if _is_handler(exc.previous):
        logger.info("handing %s to the handler it had before training (%s)", signal_name(exc.signum),
                    getattr(exc.previous, "__qualname__", exc.previous))
        exc.previous(exc.signum, None)
    elif (is_main and exc.signum == getattr(signal, "SIGUSR1", None) and os.environ.get("SLURM_JOB_ID")
          and not os.environ.get("SUBMITIT_EXECUTOR")):
        requeue_slurm()
    sys.stdout.flush()
    raise SystemExit(exc.exit_code)
