"""The runs of a sweep as records: run directories found and read, or W&B runs pulled, never raising.

``collect_runs(sweep_dir)`` finds every run directory under ``sweep_dir`` (at any depth: a Hydra multirun
``<sweep>/<job>/``, an Optuna study's ``trial_<n>/``, or a single run) and reads each into a
:class:`RunRecord`: its status (completed, failed or unfinished, with the reason), its overrides (from
``.hydra/overrides.yaml``, else ``status.json``), its flat ``summary.json`` and its GRPO curves
(``grpo/metrics.jsonl``). A run directory that is incomplete or unreadable is a failed or unfinished record,
not an error. ``wandb_runs(project)`` does the same for the runs of a W&B project.
"""
from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opgrpo.utils.jsonio import flatten, read_jsonl
from opgrpo.utils.runfiles import (
    COMPLETED,
    FAILED,
    METRICS_JSONL,
    STATUS_JSON,
    SUMMARY_JSON,
    RunFileError,
    read_status,
    read_summary,
)

__all__ = ["EVAL_STAGE", "UNFINISHED", "RunRecord", "collect_runs", "find_run_dirs", "load_run", "parse_overrides",
           "wandb_runs"]

EVAL_STAGE = "eval"  # the stage whose summary numbers the report compares (the trained policy's evaluation)
UNFINISHED = "unfinished"  # a record's status besides COMPLETED and FAILED: running, killed or never started


@dataclass
class RunRecord:
    """What the report knows about one run."""

    name: str  # path relative to the sweep dir ("0", "trial_3", ...); "wandb:<name>" for W&B runs
    path: str
    status: str  # completed | failed | unfinished
    error: str = ""  # why a run is failed/unfinished
    overrides: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    curves: list[dict[str, Any]] = field(default_factory=list)  # grpo/metrics.jsonl rows


# ---- reading run directories --------------------------------------------------------------------------------
def _is_run_dir(path: Path) -> bool:
    return (path / STATUS_JSON).is_file() or (path / ".hydra").is_dir()


def find_run_dirs(sweep_dir: str | Path, exclude: Iterable[str | Path] = ()) -> list[Path]:
    """Every run directory under ``sweep_dir`` (itself included), in natural order; a run's own sub-folders are
    not searched. Directories that contain any of ``exclude`` (e.g. the report's own run) are left out."""
    root = Path(sweep_dir)
    excluded = [Path(e).resolve() for e in exclude]
    found: list[Path] = []
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        if _is_run_dir(here):
            dirnames[:] = []
            resolved = here.resolve()
            if not any(e == resolved or resolved in e.parents for e in excluded):
                found.append(here)
            continue
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
    return sorted(found, key=lambda p: _natural_key(p.relative_to(root).as_posix()))


def _natural_key(text: str) -> list:
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text) if t]


def parse_overrides(overrides: Sequence[str]) -> dict[str, str]:
    """``["reward.weights.coverage=0.1", "+sweep/ablate=no_tag", "~logger"]`` -> ``{"reward.weights.coverage": "0.1",
    "sweep/ablate": "no_tag", "logger": "<deleted>"}`` (leading ``+``/``++`` dropped, quotes kept as written)."""
    out: dict[str, str] = {}
    for item in overrides:
        if not isinstance(item, str):
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if key.startswith("~"):
            out[key[1:]] = "<deleted>"
            continue
        out[key.lstrip("+")] = value.strip() if sep else ""
    return out


def _overrides_of(path: Path, status: dict[str, Any] | None) -> list[str]:
    ov_file = path / ".hydra" / "overrides.yaml"
    if ov_file.is_file():
        import yaml

        data = None
        with contextlib.suppress(OSError, yaml.YAMLError):  # a corrupt file falls back to status.json
            data = yaml.safe_load(ov_file.read_text(encoding="utf-8", errors="replace"))
        if isinstance(data, list):
            return [str(x) for x in data]
    if status is not None and isinstance(status.get("overrides"), list):
        return [str(x) for x in status["overrides"]]
    return []


def load_run(path: str | Path, sweep_dir: str | Path | None = None) -> RunRecord:
    """Read one run directory; never raises for bad content (the reason goes to ``error``)."""
    path = Path(path)
    try:
        name = path.relative_to(sweep_dir).as_posix() if sweep_dir is not None else path.name
    except ValueError:
        name = path.name
    if name in ("", "."):
        name = path.resolve().name
    status_err = summary_err = ""
    try:
        status = read_status(path)
    except RunFileError as exc:
        status, status_err = None, str(exc)
    try:
        summary = read_summary(path)
        if summary is None:
            summary_err = f"no {SUMMARY_JSON}"
    except RunFileError as exc:
        summary, summary_err = None, str(exc)
    rec = RunRecord(name=name, path=str(path), status=UNFINISHED,
                    overrides=parse_overrides(_overrides_of(path, status)), summary=summary or {},
                    curves=read_jsonl(path / "grpo" / METRICS_JSONL))
    state = status.get("status") if status is not None else None
    if status_err:
        rec.status, rec.error = FAILED, status_err
    elif state == FAILED:
        rec.status, rec.error = FAILED, str(status.get("error") or "failed (no error recorded)")
    elif state == COMPLETED:
        if summary_err:
            rec.status, rec.error = FAILED, f"completed but {summary_err}"
        else:
            rec.status = COMPLETED
    elif state is None:
        rec.error = f"no {STATUS_JSON} (never started or killed before the run began)"
    else:
        rec.error = f"status {state!r}" + (f" since {status['time']}" if status.get("time") else "")
    return rec


def collect_runs(sweep_dir: str | Path, exclude: Iterable[str | Path] = ()) -> list[RunRecord]:
    """``load_run`` of every ``find_run_dirs(sweep_dir, exclude)``."""
    return [load_run(p, sweep_dir) for p in find_run_dirs(sweep_dir, exclude)]


# ---- W&B ----------------------------------------------------------------------------------------------------
def wandb_runs(project: str) -> tuple[list[RunRecord], str]:
    """Runs of a W&B project as records (overrides = their ``reward*`` config keys); ``([], reason)`` when wandb is
    missing, offline or unreachable."""
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return [], f"W&B project {project!r} skipped: WANDB_MODE={os.environ['WANDB_MODE']}"
    try:
        import wandb
    except ImportError:
        return [], f"W&B project {project!r} skipped: wandb is not installed"
    try:
        runs = list(wandb.Api(timeout=30).runs(project))
    except Exception as exc:  # noqa: BLE001 - offline, no API key, unknown project: the file report still stands
        return [], f"W&B project {project!r} skipped: {type(exc).__name__}: {exc}"
    states = {"finished": COMPLETED, "running": UNFINISHED, "pending": UNFINISHED}
    records = []
    for run in runs:
        try:
            config = flatten(dict(run.config), sep=".")
            summary = {k: v for k, v in dict(run.summary).items() if isinstance(v, (int, float, str, bool))}
            state = states.get(str(run.state), FAILED)
            rec = RunRecord(name=f"wandb:{run.name}", path=str(getattr(run, "url", "")), status=state,
                            error="" if state == COMPLETED else f"W&B state {run.state}",
                            overrides={k: str(v) for k, v in config.items() if k.startswith("reward")},
                            summary=summary)
            with contextlib.suppress(Exception):  # curves are optional
                for row in run.history(pandas=False):
                    row = {k.removeprefix("train/"): v for k, v in row.items()}
                    if any(k.startswith("rewards/") or k == "reward" for k in row):
                        row.setdefault("step", row.get("global_step", row.get("_step")))
                        rec.curves.append(row)
            if state == COMPLETED and not any(k.startswith(f"{EVAL_STAGE}/") for k in summary):
                rec.error = f"no {EVAL_STAGE}/ metrics in the W&B summary"
            records.append(rec)
        except Exception as exc:  # noqa: BLE001
            records.append(RunRecord(name=f"wandb:{getattr(run, 'name', '?')}", path="", status=FAILED,
                                     error=f"unreadable W&B run: {exc}"))
    return records, f"W&B project {project!r}: {len(records)} runs"
