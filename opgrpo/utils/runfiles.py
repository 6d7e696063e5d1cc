"""The files of a run directory and the run-status strings, named in one place.

A run directory (``opgrpo.app.rundir.RunDir`` writes it) holds::

    config.yaml          the resolved config
    status.json          {"status": running | completed | failed, "time", "overrides"?, "error"?, ...}
    metrics.jsonl        one JSON object per logged event
    summary.json/.csv    flat "stage/key" -> value of the final numbers
    sft/ grpo/ ...       each stage's artefacts; a training stage's trainer logs go to its own metrics.jsonl

The CLI sets the status through ``RunDir`` (which writes with :func:`write_status`, as the Optuna driver
does for trials it gives up on). ``RunDir`` (on resume), the sweep report and the Optuna driver read the
files through :func:`read_status` and :func:`read_summary`: ``None`` when the file is not there,
:class:`RunFileError` when it is there but cannot be used (unreadable, not JSON, not a JSON object).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

__all__ = ["COMPLETED", "CONFIG_YAML", "FAILED", "HEARTBEAT", "INTERRUPTED", "METRICS_JSONL", "PREEMPTED", "RUNNING",
           "STATUS_JSON", "SUMMARY_CSV",
           "SUMMARY_JSON", "RunFileError", "live_status", "read_status", "read_summary", "write_status"]

CONFIG_YAML = "config.yaml"
STATUS_JSON = "status.json"
METRICS_JSONL = "metrics.jsonl"
SUMMARY_JSON = "summary.json"
SUMMARY_CSV = "summary.csv"

RUNNING = "running"
"""status.json while the run's stages run (a run killed meanwhile keeps it)."""
COMPLETED = "completed"
"""status.json after every stage finished."""
FAILED = "failed"
"""status.json after an error (its ``error`` says which); also written for trials a sweep gave up on."""
PREEMPTED = "preempted"
"""status.json of a run stopped by SIGTERM/SIGUSR1 (a cluster's preemption or time limit) after it saved a checkpoint
at a step boundary (``stage`` and ``step`` say where); the same command resumes it."""
INTERRUPTED = "interrupted"
"""What readers call a run whose status.json says running but whose heartbeat stopped (killed without a word:
SIGKILL, node loss); never written to status.json."""
HEARTBEAT = ".run_heartbeat"
"""Rewritten in a running run's directory every few seconds by its rank 0 (``host:pid time``); apart from the Optuna
driver's ``.heartbeat`` in a trial's directory, which says the driver waiting for the trial is alive."""


class RunFileError(ValueError):
    """A run file that exists but cannot be used; the message names the file and why
    (``corrupt status.json: ...``, ``summary.json is not an object``)."""


def _read_object(path: str | Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; ``None`` when there is no such file; :class:`RunFileError` when it cannot
    be read, is not JSON or holds something else than an object. Bytes that are not UTF-8 are replaced."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError) as exc:
        raise RunFileError(f"corrupt {path.name}: {exc}") from None
    if not isinstance(data, dict):
        raise RunFileError(f"{path.name} is not an object")
    return data


def read_status(run_dir: str | Path) -> dict[str, Any] | None:
    """``run_dir/status.json`` as a dict (its ``status`` is RUNNING, COMPLETED or FAILED); ``None`` when there is
    none; :class:`RunFileError` when it is corrupt or not an object."""
    return _read_object(Path(run_dir) / STATUS_JSON)


def read_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """``run_dir/summary.json``, the flat ``"stage/key" -> value`` numbers; ``None`` when there is none;
    :class:`RunFileError` when it is corrupt or not an object."""
    return _read_object(Path(run_dir) / SUMMARY_JSON)


def live_status(run_dir: str | Path, status: dict[str, Any] | None, stale_after: float = 120.0) -> str:
    """The state a reader shows for ``status`` (run_dir's status.json): its ``status``, except RUNNING from a run whose
    heartbeat stopped (its process gone from this host, or no beat for ``stale_after`` s): INTERRUPTED."""
    from opgrpo.utils.locks import owner_alive

    state = str((status or {}).get("status", ""))
    if state == RUNNING and not owner_alive(Path(run_dir) / HEARTBEAT, stale_after):
        return INTERRUPTED
    return state


def write_status(run_dir: str | Path, status: str, **extra: Any) -> None:
    """Write ``run_dir/status.json``: ``{"status", "time" (local, ISO seconds), **extra}``, secrets redacted (a URL's
    credentials in an error or an override: opgrpo.utils.redact)."""
    from opgrpo.utils.redact import redact_obj

    data = {"status": status, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **redact_obj(extra)}
    (Path(run_dir) / STATUS_JSON).write_text(json.dumps(data, indent=2))
