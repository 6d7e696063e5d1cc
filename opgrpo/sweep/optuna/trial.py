"""One trial of an Optuna study (``opgrpo-optuna``, opgrpo.app.optuna_cli): its command, its launch as a
subprocess, and its outcome read from the run directory (``status.json``, ``summary.json``, ``config.yaml``).
"""
from __future__ import annotations

import math
import shlex
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from opgrpo.utils.runfiles import (
    COMPLETED,
    CONFIG_YAML,
    FAILED,
    SUMMARY_JSON,
    RunFileError,
    read_status,
    read_summary,
    write_status,
)

Launcher = Callable[[Sequence[str], Path, "float | None"], int]
"""What runs one trial's command: (command, run directory, timeout in seconds) -> exit code (:func:`launch`)."""


def launch(cmd: Sequence[str], run_dir: Path, timeout: float | None = None) -> int:
    """Run one trial's command, its output going to ``run_dir/launch.log``; the exit code (-9 on timeout)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "launch.log", "w", encoding="utf-8") as fh:
        fh.write("$ " + shlex.join(cmd) + "\n")
        fh.flush()
        try:
            return subprocess.run(list(cmd), stdout=fh, stderr=subprocess.STDOUT, timeout=timeout,
                                  check=False).returncode
        except subprocess.TimeoutExpired:
            fh.write(f"\n[opgrpo-optuna] killed after {timeout} s\n")
            return -9


def trial_command(command: Sequence[str], overrides: Sequence[str], run_dir: Path,
                  hydra_launcher: str = "") -> list[str]:
    """The command of one trial: a single run in ``run_dir``, or with ``hydra_launcher`` (e.g. ``slurm``) a
    one-job multirun through that Hydra launcher whose job directory is ``run_dir``. The study's trials share one store
    of stages (``<study dir>/.stages``: the estimator and SFT a reward-weight study computes once), unless the
    overrides name a ``store.dir``."""
    if not any(str(o).startswith(("store.dir=", "+store.dir=")) for o in overrides):
        overrides = [*overrides, f"store.dir={Path(run_dir).parent / '.stages'}"]
    if hydra_launcher:
        return [*command, "-m", f"launcher={hydra_launcher}", *overrides, f"hydra.sweep.dir={run_dir}",
                "hydra.sweep.subdir=."]
    return [*command, *overrides, f"hydra.run.dir={run_dir}"]


def _tail(path: Path, n: int = 5) -> str:
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines()
                 if ln.strip() and not ln.startswith("$ ")]
    except OSError:
        return ""
    return " | ".join(lines[-n:])


def run_objective(run_dir: Path) -> str:
    """The ``objective`` of a run's resolved ``config.yaml`` ("" when there is none)."""
    import yaml

    try:
        config = yaml.safe_load((run_dir / CONFIG_YAML).read_text(encoding="utf-8", errors="replace"))
    except (OSError, yaml.YAMLError):
        return ""
    value = config.get("objective") if isinstance(config, dict) else None
    return value if isinstance(value, str) else ""


def read_values(run_dir: Path, objectives: Sequence[str], returncode: int) -> tuple[list[float] | None, str]:
    """([value of each objective], "") for a completed run, else (None, why). One objective "": the run's own."""
    status = _status_or_none(run_dir)
    state = status.get("status") if status is not None else None
    if state == FAILED:
        return None, str(status.get("error") or "failed")
    if returncode != 0:
        return None, f"exit code {returncode}: {_tail(run_dir / 'launch.log')}"
    if state != COMPLETED:
        return None, f"run ended with status {state!r}"
    try:
        summary = read_summary(run_dir)
    except RunFileError as exc:  # corrupt or not an object
        return None, str(exc)
    if summary is None:
        return None, f"no {SUMMARY_JSON}"
    objectives = [o or run_objective(run_dir) for o in objectives] or [run_objective(run_dir)]
    if not all(objectives):
        return None, f"no objective: neither the spec, an objective= override nor the run's {CONFIG_YAML} names one"
    values = []
    for objective in objectives:
        value = summary.get(objective)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return None, f"objective {objective!r} is missing or not a finite number in {SUMMARY_JSON} ({value!r})"
        values.append(float(value))
    return values, ""


def read_outcome(run_dir: Path, objective: str, returncode: int) -> tuple[float | None, str]:
    """(objective value, "") for a completed run, else (None, why). ``objective`` "": the run's own."""
    values, error = read_values(run_dir, [objective], returncode)
    return (values[0] if values else None), error


def _status_or_none(run_dir: Path) -> dict[str, Any] | None:
    """status.json, or None when it is missing or unusable (a run killed before it wrote one)."""
    try:
        return read_status(run_dir)
    except RunFileError:
        return None


def mark_failed(run_dir: Path, error: str, overrides: Sequence[str]) -> None:
    """Make sure a failed trial's directory says so (a run killed early writes no final status)."""
    status = _status_or_none(run_dir)
    if status is not None and status.get("status") == FAILED:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    write_status(run_dir, FAILED, error=error, overrides=list(overrides))
