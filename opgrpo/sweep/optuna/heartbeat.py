"""Which running trials of an Optuna study still have a live driver (``opgrpo-optuna``, opgrpo.app.optuna_cli).

A driver touches ``trial_<n>/.heartbeat`` while it waits for a trial and records itself (``host:pid``) on the trial;
another driver on the same study treats a RUNNING trial as stale (to be retried) when its driver's process is gone
from this host or its heartbeat is older than ``--stale-after`` seconds. The trials this process's own workers run
are kept in ``LIVE``. The heartbeat file and the liveness rules are :mod:`opgrpo.utils.locks`'s.
"""
from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from opgrpo.utils.locks import HOST, Heartbeat, beat_age, pid_alive

__all__ = ["HEARTBEAT", "HEARTBEAT_S", "HOST", "LIVE", "LIVE_LOCK", "STALE_AFTER_S", "heartbeat", "is_stale",
           "touch_heartbeat"]

HEARTBEAT = ".heartbeat"
"""Rewritten in a trial's directory every HEARTBEAT_S seconds while its driver waits for it."""
HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0
"""A running trial whose heartbeat is older than this (and whose driver is not a live process here) is retried."""
LIVE: set[tuple[str, int]] = set()  # (study dir, trial number) run by this process's workers
LIVE_LOCK = threading.Lock()


def touch_heartbeat(run_dir: Path) -> None:
    """Write ``run_dir/.heartbeat`` (who runs the trial, and when): drivers on other machines tell a trial of a
    live driver from one whose driver is gone by its age. A disk error is logged, never raised."""
    Heartbeat(Path(run_dir) / HEARTBEAT).beat()


@contextmanager
def heartbeat(run_dir: Path, every: float = HEARTBEAT_S) -> Iterator[None]:
    """Rewrite the trial's heartbeat every ``every`` seconds while the block runs (the driver waits for it); the
    file stays afterwards, so its age tells when the driver stopped waiting."""
    with Heartbeat(Path(run_dir) / HEARTBEAT, every, remove=False):
        yield


def is_stale(trial, study_dir: Path, stale_after: float = STALE_AFTER_S) -> bool:
    """Whether a RUNNING trial's driver is gone: it is this process but none of its workers runs the trial, it
    was on this host and its process has exited, or its heartbeat is older than ``stale_after`` seconds."""
    host, _, pid = str(trial.user_attrs.get("driver", "")).rpartition(":")
    if host == HOST and pid.isdigit():
        if int(pid) == os.getpid():
            with LIVE_LOCK:
                return (str(study_dir), trial.number) not in LIVE
        if not pid_alive(int(pid)):
            return True
    run_dir = trial.user_attrs.get("run_dir")
    return (beat_age(Path(run_dir) / HEARTBEAT) if run_dir else math.inf) > stale_after
