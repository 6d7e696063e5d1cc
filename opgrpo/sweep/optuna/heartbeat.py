"""Which running trials of an Optuna study still have a live driver (``opgrpo-optuna``, opgrpo.app.optuna_cli).

A driver touches ``trial_<n>/.heartbeat`` while it waits for a trial and records itself (``host:pid``) on the trial;
another driver on the same study treats a RUNNING trial as stale (to be retried) when its driver's process is gone
from this host or its heartbeat is older than ``--stale-after`` seconds. The trials this process's own workers run
are kept in ``LIVE``.
"""
from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("opgrpo.optuna")

HEARTBEAT = ".heartbeat"
"""Touched in a trial's directory every HEARTBEAT_S seconds while its driver waits for it."""
HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0
"""A running trial whose heartbeat is older than this (and whose driver is not a live process here) is retried."""
HOST = socket.gethostname()
LIVE: set[tuple[str, int]] = set()  # (study dir, trial number) run by this process's workers
LIVE_LOCK = threading.Lock()


def touch_heartbeat(run_dir: Path) -> None:
    """Write ``run_dir/.heartbeat`` (who runs the trial, and when): drivers on other machines tell a trial of a
    live driver from one whose driver is gone by its age."""
    path = run_dir / HEARTBEAT
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{HOST}:{os.getpid()} {time.time():.0f}\n")
    except OSError as exc:  # a full or unreachable disk must not fail the trial
        log.warning("heartbeat %s: %s", path, exc)


@contextmanager
def heartbeat(run_dir: Path, every: float = HEARTBEAT_S) -> Iterator[None]:
    """Touch the trial's heartbeat every ``every`` seconds while the block runs (the driver waits for it)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            touch_heartbeat(run_dir)

    touch_heartbeat(run_dir)
    thread = threading.Thread(target=beat, name=f"heartbeat-{run_dir.name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def is_stale(trial, study_dir: Path, stale_after: float = STALE_AFTER_S) -> bool:
    """Whether a RUNNING trial's driver is gone: it is this process but none of its workers runs the trial, it
    was on this host and its process has exited, or its heartbeat is older than ``stale_after`` seconds."""
    host, _, pid = str(trial.user_attrs.get("driver", "")).rpartition(":")
    if host == HOST and pid.isdigit():
        if int(pid) == os.getpid():
            with LIVE_LOCK:
                return (str(study_dir), trial.number) not in LIVE
        if not _pid_alive(int(pid)):
            return True
    run_dir = trial.user_attrs.get("run_dir")
    try:
        age = time.time() - (Path(run_dir) / HEARTBEAT).stat().st_mtime if run_dir else math.inf
    except OSError:
        age = math.inf
    return age > stale_after
