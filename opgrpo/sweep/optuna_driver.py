"""`opgrpo-optuna`: an Optuna search over reward weights and thresholds, one `opgrpo` run per trial.

Why hand-written: Hydra's Optuna sweeper plugin (hydra-optuna-sweeper, what ``opgrpo -m hydra/sweeper=optuna``
would use) pins ``optuna<3`` and does not support Optuna >= 4, which this project needs. So this small driver
uses Optuna's ask/tell API directly and reads the plugin's spec layout (``sweeps/optuna.yaml``, read by
``opgrpo.sweep.optuna_spec``): ``hydra.sweeper.{direction, objectives, study_name, n_trials, n_jobs, storage,
sampler, params}`` and the top-level ``objective``. It should give way to the plugin once a release supports
Optuna >= 4. For every trial it

1. asks Optuna for values of the search space (``params`` in Hydra's sweep syntax, see the spec file),
2. runs ``python -m opgrpo <base overrides> <trial overrides> hydra.run.dir=<study_dir>/trial_<n>`` as a
   subprocess (output in ``trial_<n>/launch.log``); with ``--launcher slurm`` the trial is a one-job multirun
   through that Hydra launcher (``-m launcher=slurm ... hydra.sweep.dir=<study_dir>/trial_<n>``), i.e. a SLURM
   job submitted by hydra-submitit-launcher, and the driver waits for it,
3. reads the objective(s) from ``trial_<n>/summary.json`` and tells Optuna; a run that fails, is killed or has
   no finite value for an objective is a ``FAIL`` trial (its ``status.json`` says why) and the study goes on,
4. rewrites ``study.csv`` (one row per trial) and ``best.json``; a multi-objective study also writes its Pareto
   trials (``pareto.csv``, ``pareto.json``) and, at the end, Optuna's own Pareto-front plot
   (``optuna.visualization.plot_pareto_front``) as the self-contained ``pareto_front.html``.

The objective is the spec's ``objective`` or an ``objective=`` base override; without either, each trial's own
config ``objective`` (its resolved ``config.yaml``), so that ``experiment=cpu_demo`` is scored by its
reward-based objective rather than the NLI accuracy that the CPU stand-in leaves at 0. ``objectives`` (the
spec's ``hydra.sweeper.objectives`` or ``--objectives``), two or more ``summary.json`` keys with a direction each,
make a multi-objective study, e.g. ``eval/reward/coverage_rate`` and ``eval/reward/uniqueness_rate``, both
maximised. When every completed trial has the same value, the driver warns (log and ``best.json``'s
``warning``): the study cannot rank them.

Storage and parallel trials: the study lives in Optuna's journal file ``<study_dir>/study.journal``
(``JournalStorage(JournalFileBackend)``, file locks that work on NFS), so several drivers on the same
``--study-dir`` (copies on the login node, SLURM jobs, ``--n-jobs`` threads of one driver) share one study: they
ask for trials one at a time under a lock file, so together they run exactly ``n_trials``. The same command
resumes the study: a trial left running by a driver that is gone (its process no longer exists on this host, or
its heartbeat file ``trial_<n>/.heartbeat`` is older than ``--stale-after`` seconds) is marked failed
(``interrupted``) and its values are retried as a new trial; trials of live drivers are left alone. A study of
an earlier version (``study.db``, sqlite) is resumed from that file. ``<study_dir>`` is a sweep directory for
``opgrpo.sweep.report.build_report``; the driver writes that report to ``<study_dir>/report`` at the end
(``--no-report`` to skip).
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opgrpo.sweep.optuna_spec import StudySpec, format_value, load_spec, resolve_spec
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

log = logging.getLogger("opgrpo.optuna")

JOURNAL = "study.journal"
"""The study's journal file in the study directory (Optuna's JournalFileBackend)."""
LEGACY_DB = "study.db"
"""The sqlite file of studies started by earlier versions of the driver (resumed from it)."""
HEARTBEAT = ".heartbeat"
"""Touched in a trial's directory every HEARTBEAT_S seconds while its driver waits for it."""
HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0
"""A running trial whose heartbeat is older than this (and whose driver is not a live process here) is retried."""
HOST = socket.gethostname()
_LIVE: set[tuple[str, int]] = set()  # (study dir, trial number) run by this process's workers
_LIVE_LOCK = threading.Lock()


# ---- one trial ----------------------------------------------------------------------------------------------
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
    one-job multirun through that Hydra launcher whose job directory is ``run_dir``."""
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


def _mark_failed(run_dir: Path, error: str, overrides: Sequence[str]) -> None:
    """Make sure a failed trial's directory says so (a run killed early writes no final status)."""
    status = _status_or_none(run_dir)
    if status is not None and status.get("status") == FAILED:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    write_status(run_dir, FAILED, error=error, overrides=list(overrides))


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
            with _LIVE_LOCK:
                return (str(study_dir), trial.number) not in _LIVE
        if not _pid_alive(int(pid)):
            return True
    run_dir = trial.user_attrs.get("run_dir")
    try:
        age = time.time() - (Path(run_dir) / HEARTBEAT).stat().st_mtime if run_dir else math.inf
    except OSError:
        age = math.inf
    return age > stale_after


# ---- the study ----------------------------------------------------------------------------------------------
@dataclass
class StudyResult:
    study: Any
    study_dir: Path
    best: dict[str, Any]
    report: dict[str, Any] | None


Launcher = Callable[[Sequence[str], Path, "float | None"], int]


def _sampler(spec: StudySpec):
    if not spec.sampler:
        return None
    target = spec.sampler["_target_"]
    module, _, name = target.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    return cls(**{k: v for k, v in spec.sampler.items() if k != "_target_"})


def _objective_of(spec: StudySpec, base: Sequence[str]) -> str:
    """The objective every trial is scored by: an ``objective=`` base override, else the spec's ("" = each
    trial's own config ``objective``)."""
    for ov in reversed(list(base)):
        if ov.startswith("objective="):
            return ov.split("=", 1)[1].strip("'\"")
    return spec.objective


def objectives_of(spec: StudySpec, base: Sequence[str]) -> tuple[list[str], list[str]]:
    """(objectives, directions) of the study: the spec's ``objectives`` (a multi-objective study), else the one
    objective of :func:`_objective_of` ("" = each trial's own) with ``direction``."""
    if spec.objectives:
        return list(spec.objectives), list(spec.directions)
    return [_objective_of(spec, base)], [spec.direction]


def trial_overrides(spec: StudySpec, params: dict[str, Any], base: Sequence[str]) -> list[str]:
    """Base overrides, then the spec's fixed settings not already in base, then the trial's values."""
    base_keys = {b.split("=", 1)[0].lstrip("+~") for b in base}
    fixed = [f for f in spec.fixed if f.split("=", 1)[0] not in base_keys]
    return [*base, *fixed, *(f"{k}={format_value(v)}" for k, v in params.items())]


def split_launcher(base: Sequence[str], hydra_launcher: str = "") -> tuple[str, list[str]]:
    """A ``launcher=X`` base override (X not local) becomes the trials' Hydra launcher (as ``--launcher X``)."""
    rest = []
    for ov in base:
        key, _, value = ov.partition("=")
        if key == "launcher" and value not in ("local", "basic"):
            hydra_launcher = hydra_launcher or value
            continue
        rest.append(ov)
    return hydra_launcher, rest


def _tell(study, trial, **kwargs) -> bool:
    """study.tell; True when the sampler wants the study to stop (GridSampler calls Study.stop once its grid is
    done, which Optuna only allows inside optimize(); the trial's result is stored before that call)."""
    try:
        study.tell(trial, **kwargs)
    except RuntimeError as exc:
        if "Study.stop" not in str(exc):
            raise
        return True
    return False


def _finished(trials) -> list:
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL, optuna.trial.TrialState.PRUNED)
    return [t for t in trials if t.state in done and not t.user_attrs.get("interrupted")]


def open_storage(study_dir: Path, url: str = ""):
    """The study's storage: ``url`` when given, the sqlite file of an earlier driver version when the study
    directory holds one, else the journal file ``<study_dir>/study.journal``."""
    if url:
        return url
    if (study_dir / LEGACY_DB).is_file() and not (study_dir / JOURNAL).is_file():
        log.info("resuming the sqlite study %s (one driver at a time)", study_dir / LEGACY_DB)
        return f"sqlite:///{study_dir / LEGACY_DB}"
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(study_dir / JOURNAL)))


def _write_atomic(path: Path, text: str) -> None:
    """Several drivers rewrite the same files: write a private temporary file, then rename it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _trial_record(t, objectives: Sequence[str]) -> dict[str, Any]:
    return {"number": t.number, "values": dict(zip(objectives, t.values or [])), "params": t.params,
            "overrides": t.user_attrs.get("overrides", []), "run_dir": t.user_attrs.get("run_dir", "")}


def write_outputs(study, study_dir: Path, spec: StudySpec, objective: str | Sequence[str], *,
                  plot: bool = False) -> dict[str, Any]:
    """study.csv (one row per trial) and best.json; a multi-objective study also pareto.csv / pareto.json
    (its Pareto trials, Optuna's ``best_trials``) and with ``plot`` Optuna's Pareto-front plot,
    ``pareto_front.html``. Returns the best.json content."""
    import optuna
    import pandas as pd

    objectives = [objective] if isinstance(objective, str) else list(objective)
    multi = len(objectives) > 1
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    pareto = {t.number for t in study.best_trials} if multi and complete else set()
    rows = []
    for t in trials:
        row = {"number": t.number, "state": t.state.name}
        if multi:
            row.update(zip(objectives, t.values or [None] * len(objectives)))
            row["pareto"] = t.number in pareto
        else:
            row["value"] = t.value
        row.update(datetime_start=t.datetime_start, datetime_complete=t.datetime_complete,
                   duration_s=t.duration.total_seconds() if t.duration else None)
        row.update({f"params_{k}": v for k, v in t.params.items()})
        row.update({k: t.user_attrs.get(k, "") for k in ("run_dir", "error", "driver")})
        row["interrupted"] = bool(t.user_attrs.get("interrupted"))
        rows.append(row)
    _write_atomic(study_dir / "study.csv", pd.DataFrame(rows).to_csv(index=False))
    best: dict[str, Any] = {"study_name": spec.study_name, "n_trials": len(trials), "n_complete": len(complete),
                            "n_failed": sum(t.state == optuna.trial.TrialState.FAIL for t in trials)}
    if multi:
        best.update(objectives=objectives, directions=[d.name.lower() for d in study.directions])
        front = [_trial_record(t, objectives) for t in sorted(study.best_trials, key=lambda t: t.number)] \
            if complete else []
        best["pareto"] = front
        _write_atomic(study_dir / "pareto.json", json.dumps(front, indent=2, default=str))
        flat = [{"number": r["number"], **r["values"], **{f"params_{k}": v for k, v in r["params"].items()},
                 "run_dir": r["run_dir"], "overrides": " ".join(r["overrides"])} for r in front]
        _write_atomic(study_dir / "pareto.csv", pd.DataFrame(flat, columns=["number", *objectives, "run_dir",
                                                                            "overrides"] if not flat else None)
                      .to_csv(index=False))
        warnings = [identical_objective_warning([t.values[i] for t in complete], name)
                    for i, name in enumerate(objectives)]
        best["warning"] = "; ".join(w for w in warnings if w)
        if plot:
            best["pareto_front_html"] = write_pareto_plot(study, study_dir / "pareto_front.html", objectives)
    else:
        objective = objectives[0]
        if not objective:  # each trial's own: name them
            objective = ", ".join(sorted({str(t.user_attrs.get("objective", "")) for t in complete} - {""})) or \
                "(each trial's config objective)"
        best.update(objective=objective, direction=study.direction.name.lower())
        if complete:
            bt = study.best_trial
            best.update(number=bt.number, value=bt.value, params=bt.params,
                        overrides=bt.user_attrs.get("overrides", []), run_dir=bt.user_attrs.get("run_dir", ""))
        else:
            best.update(number=None, value=None, params={}, overrides=[], run_dir="")
        best["warning"] = identical_objective_warning([t.value for t in complete], objective)
    _write_atomic(study_dir / "best.json", json.dumps(best, indent=2, default=str))
    return best


def write_pareto_plot(study, path: Path, objectives: Sequence[str]) -> str:
    """Optuna's Pareto-front plot of a 2- or 3-objective study as one self-contained HTML file (plotly.js
    inlined; hover shows each trial's values, params, overrides and run directory). The path, or "" when
    there is nothing to plot or plotly is missing (a warning)."""
    import optuna

    if not 2 <= len(objectives) <= 3 or not study.get_trials(deepcopy=False,
                                                              states=(optuna.trial.TrialState.COMPLETE,)):
        return ""
    try:
        fig = optuna.visualization.plot_pareto_front(study, target_names=list(objectives))
    except ImportError as exc:
        log.warning("no Pareto-front plot: %s (pip install 'plotly>=5.20')", exc)
        return ""
    fig.update_layout(title=f"Pareto front of {study.study_name}: " + " vs ".join(objectives))
    _write_atomic(path, fig.to_html(include_plotlyjs=True, full_html=True))
    return str(path)


def identical_objective_warning(values: Sequence[float], objective: str) -> str:
    """A warning when at least two completed trials all have the same objective value ("" otherwise)."""
    if len(values) < 2 or max(values) - min(values) > 1e-12 * max(1.0, abs(values[0])):
        return ""
    text = (f"the objective {objective} is {values[0]:.4g} in all {len(values)} completed trials: it does not tell "
            "them apart, and the best trial is an arbitrary pick")
    if "accuracy" in objective:
        text += ("; on CPU the causal-LM NLI stand-in scores accuracy 0, use a reward-based objective "
                 "(e.g. objective=eval/reward/coverage_rate)")
    return text


@dataclass
class _Run:
    """What every worker of one driver shares."""

    study: Any
    spec: StudySpec
    study_dir: Path
    base: list[str]
    command: list[str]
    objectives: list[str]
    target: int
    launcher: Launcher
    hydra_launcher: str
    trial_timeout: float | None
    stale_after: float
    lock: Any  # a file lock in the study directory: one driver at a time asks for a trial
    thread_lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def ask(self):
        """Under the study's lock: retry trials of drivers that are gone, then ask for a new trial unless the
        finished and running trials (of every driver) already make ``target``; None = nothing left to ask."""
        import optuna

        with self.thread_lock:
            self.lock.acquire()
            try:
                if self.stop.is_set():
                    return None
                self.retry_stale()
                trials = self.study.get_trials(deepcopy=False)
                finished = _finished(trials)
                running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
                if len(finished) + len(running) >= self.target:
                    return None
                failed = sum(t.state == optuna.trial.TrialState.FAIL for t in finished)
                if finished and failed / len(finished) > self.spec.max_failure_rate:
                    log.error("stopping: %d of %d trials failed (max_failure_rate %.2f)", failed, len(finished),
                              self.spec.max_failure_rate)
                    return None
                trial = self.study.ask(self.spec.space)
                run_dir = self.study_dir / f"trial_{trial.number}"
                trial.set_user_attr("run_dir", str(run_dir))
                trial.set_user_attr("overrides", trial_overrides(self.spec, trial.params, self.base))
                trial.set_user_attr("driver", f"{HOST}:{os.getpid()}")
                with _LIVE_LOCK:
                    _LIVE.add((str(self.study_dir), trial.number))
                touch_heartbeat(run_dir)  # before the lock is released: other drivers see a live trial
                return trial
            finally:
                self.lock.release()

    def retry_stale(self) -> None:
        import optuna

        for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if not is_stale(t, self.study_dir, self.stale_after):
                continue
            # Left running by a driver that is gone: record it, then retry the same values as a new trial.
            log.warning("trial %d was interrupted (driver %s gone); retrying its values", t.number,
                        t.user_attrs.get("driver", "?"))
            try:
                optuna.trial.Trial(self.study, t._trial_id).set_user_attr("interrupted", True)
                _tell(self.study, t.number, state=optuna.trial.TrialState.FAIL)
            except Exception as exc:  # noqa: BLE001 - its driver finished it meanwhile: nothing to retry
                log.info("trial %d: not retried (%s)", t.number, exc)
                continue
            if t.user_attrs.get("run_dir"):
                _mark_failed(Path(t.user_attrs["run_dir"]), "interrupted (the driver stopped); retried as a new "
                             "trial", t.user_attrs.get("overrides", []))
            self.study.enqueue_trial(t.params)

    def run_trial(self, trial) -> bool:
        """Launch one trial, tell Optuna its values (or FAIL); True when the sampler wants the study stopped."""
        import optuna

        run_dir = Path(trial.user_attrs["run_dir"])
        overrides = trial.user_attrs["overrides"]
        cmd = trial_command(self.command, overrides, run_dir, self.hydra_launcher)
        log.info("trial %d: %s", trial.number, " ".join(f"{k}={format_value(v)}" for k, v in trial.params.items()))
        try:
            with heartbeat(run_dir):
                rc = self.launcher(cmd, run_dir, self.trial_timeout)
        except Exception as exc:  # noqa: BLE001 - a launcher error fails this trial, not the study
            rc = -1
            run_dir.mkdir(parents=True, exist_ok=True)
            with open(run_dir / "launch.log", "a", encoding="utf-8") as fh:
                fh.write(f"[opgrpo-optuna] launch failed: {type(exc).__name__}: {exc}\n")
        used = [o or run_objective(run_dir) for o in self.objectives]
        values, error = read_values(run_dir, used, rc)
        if len(used) == 1:
            trial.set_user_attr("objective", used[0])
        try:
            if values is None:
                _mark_failed(run_dir, error, overrides)
                trial.set_user_attr("error", error)
                log.warning("trial %d failed: %s", trial.number, error)
                stop = _tell(self.study, trial, state=optuna.trial.TrialState.FAIL)
            else:
                log.info("trial %d: %s", trial.number, ", ".join(f"{o} = {v:.4f}" for o, v in zip(used, values)))
                stop = _tell(self.study, trial, values=values if len(values) > 1 else values[0])
        finally:
            with _LIVE_LOCK:
                _LIVE.discard((str(self.study_dir), trial.number))
        write_outputs(self.study, self.study_dir, self.spec, self.objectives)
        if stop:
            log.info("the sampler has no more points to try (e.g. a finished GridSampler grid): study stopped")
            self.stop.set()
        return stop

    def work(self) -> None:
        while not self.stop.is_set():
            trial = self.ask()
            if trial is None:
                return
            self.run_trial(trial)


def run_study(spec: StudySpec, study_dir: str | Path, base_overrides: Sequence[str] = (), *,
              command: Sequence[str] | None = None, n_trials: int | None = None, trial_timeout: float | None = None,
              launcher: Launcher = launch, report: bool = True, n_jobs: int | None = None,
              hydra_launcher: str = "", storage: str | None = None,
              stale_after: float = STALE_AFTER_S) -> StudyResult:
    """Run (or resume, or join) the study in ``study_dir`` until ``n_trials`` (default ``spec.n_trials``) trials
    have finished, ``n_jobs`` (default ``spec.n_jobs``) at a time in this process; other drivers on the same
    ``study_dir`` share the count. ``launcher`` runs one trial's command (a subprocess by default);
    ``hydra_launcher`` (e.g. ``slurm``) makes each trial a one-job multirun through that Hydra launcher."""
    import optuna
    from optuna.storages.journal import JournalFileOpenLock

    study_dir = Path(study_dir).resolve()
    study_dir.mkdir(parents=True, exist_ok=True)
    command = list(command) if command else [sys.executable, "-m", "opgrpo"]
    hydra_launcher, base = split_launcher(base_overrides, hydra_launcher)
    objectives, directions = objectives_of(spec, base)
    target = n_trials if n_trials is not None else spec.n_trials
    study = optuna.create_study(storage=open_storage(study_dir, storage if storage is not None else spec.storage),
                                study_name=spec.study_name, sampler=_sampler(spec), directions=directions,
                                load_if_exists=True)
    if [d.name.lower() for d in study.directions] != directions:
        raise ValueError(f"study {spec.study_name!r} in {study_dir} optimises "
                         f"{[d.name.lower() for d in study.directions]}, not {directions}: use another --study-dir")
    _write_atomic(study_dir / "spec.json", json.dumps({
        "objectives": objectives, "directions": directions, "space": {k: repr(v) for k, v in spec.space.items()},
        "fixed": spec.fixed, "base_overrides": base, "hydra_launcher": hydra_launcher, "command": command}, indent=2))
    run = _Run(study=study, spec=spec, study_dir=study_dir, base=base, command=command, objectives=objectives,
               target=target, launcher=launcher, hydra_launcher=hydra_launcher, trial_timeout=trial_timeout,
               stale_after=stale_after, lock=JournalFileOpenLock(str(study_dir / "study.ask")))
    jobs = max(1, n_jobs if n_jobs is not None else spec.n_jobs)
    if jobs == 1:
        run.work()
    else:
        workers = [threading.Thread(target=run.work, name=f"trials-{i}", daemon=True) for i in range(jobs)]
        for w in workers:
            w.start()
        try:
            for w in workers:
                while w.is_alive():
                    w.join(timeout=1.0)
        except KeyboardInterrupt:
            run.stop.set()  # no new trials; the running ones are retried by the next driver on this study
            raise
    best = write_outputs(study, study_dir, spec, objectives, plot=True)
    if best.get("warning"):
        log.warning("%s", best["warning"])
    out = None
    if report:
        from opgrpo.sweep.report import build_report

        try:
            out = build_report(study_dir, study_dir / "report")
        except Exception as exc:  # noqa: BLE001 - the study's results stand without the report
            log.warning("report failed: %s", exc)
    return StudyResult(study=study, study_dir=study_dir, best=best, report=out)


# ---- command line -------------------------------------------------------------------------------------------
def _csv(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="opgrpo-optuna",
        description="Optuna search (ask/tell) over opgrpo runs: each trial is `python -m opgrpo <overrides>` in\n"
                    "<study-dir>/trial_<n>. The study lives in <study-dir>/study.journal: the same command resumes\n"
                    "it, and several drivers on one --study-dir (or --n-jobs) run its trials in parallel.",
        epilog="examples:\n"
               "  opgrpo-optuna --study-dir studies/rw --n-trials 8 experiment=cpu_demo 'pipeline=[grpo,eval]'\n"
               "  opgrpo-optuna --objectives eval/reward/coverage_rate,eval/reward/uniqueness_rate "
               "--study-dir studies/pareto experiment=cpu_demo\n"
               "  opgrpo-optuna --launcher slurm --n-jobs 8 --study-dir studies/paper experiment=paper "
               "hydra.launcher.partition=gpu",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("overrides", nargs="*", help="Hydra overrides given to every trial (e.g. experiment=cpu_demo)")
    ap.add_argument("--spec", default="", help="spec file or sweep preset name (default: sweeps/optuna.yaml)")
    ap.add_argument("--study-dir", default="", help="default: outputs/optuna/<study_name>")
    ap.add_argument("--n-trials", type=int, default=None, help="finished trials to reach, all drivers together "
                                                               "(default: the spec's)")
    ap.add_argument("--study-name", default="", help="default: the spec's hydra.sweeper.study_name")
    ap.add_argument("--objectives", default="",
                    help="comma-separated summary.json keys: 2+ make a multi-objective study "
                         "(e.g. eval/reward/coverage_rate,eval/reward/uniqueness_rate)")
    ap.add_argument("--directions", default="", help="comma-separated maximize|minimize, one or one per objective "
                                                     "(default: the spec's direction)")
    ap.add_argument("--n-jobs", type=int, default=None, help="trials this driver runs at once (default: the spec's "
                                                             "n_jobs, 1)")
    ap.add_argument("--launcher", default="", help="run each trial as a one-job multirun through this Hydra "
                                                   "launcher (slurm, submitit_local); default: a local subprocess")
    ap.add_argument("--storage", default=None, help="an Optuna storage URL instead of <study-dir>/study.journal")
    ap.add_argument("--stale-after", type=float, default=STALE_AFTER_S,
                    help="seconds without a heartbeat before another driver's running trial is retried")
    ap.add_argument("--command", default="", help="the entrypoint to launch (default: '<python> -m opgrpo')")
    ap.add_argument("--trial-timeout", type=float, default=None, help="seconds before a trial is killed (failed)")
    ap.add_argument("--no-report", action="store_true", help="skip the sweep report at the end")
    ap.add_argument("--dry-run", action="store_true", help="print the search space and the trial command, run nothing")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="[%(asctime)s][%(name)s][%(threadName)s][%(levelname)s] %(message)s")
    logging.getLogger("optuna").setLevel(logging.WARNING)

    try:
        spec = load_spec(resolve_spec(args.spec))
        if args.objectives or args.directions:
            spec.set_objectives(_csv(args.objectives) or spec.objectives or [spec.objective],
                                _csv(args.directions) or spec.directions or [spec.direction])
    except (OSError, TypeError, ValueError) as exc:
        ap.error(str(exc))
    sweeps = [ov for ov in args.overrides if ov.partition("=")[0].lstrip("+~") == "sweep"]
    if sweeps:
        ap.error(f"{sweeps[0]}: a sweep preset is not a trial setting; the search space comes from --spec "
                 f"(e.g. --spec {sweeps[0].partition('=')[2] or 'optuna'})")
    if args.n_jobs is not None and args.n_jobs < 1:
        ap.error(f"--n-jobs must be >= 1, got {args.n_jobs}")
    if args.study_name:
        spec.study_name = args.study_name
    study_dir = Path(args.study_dir or Path("outputs") / "optuna" / spec.study_name)
    command = shlex.split(args.command) if args.command else None
    if args.dry_run:
        hydra_launcher, base = split_launcher(args.overrides, args.launcher)
        objectives, directions = objectives_of(spec, base)
        print(json.dumps({"study_dir": str(study_dir), "study_name": spec.study_name,
                          "storage": args.storage or spec.storage or str(study_dir / JOURNAL),
                          "objectives": [o or "each trial's config objective" for o in objectives],
                          "directions": directions, "n_trials": args.n_trials or spec.n_trials,
                          "n_jobs": args.n_jobs or spec.n_jobs,
                          "space": {k: repr(v) for k, v in spec.space.items()},
                          "command": trial_command(command or [sys.executable, "-m", "opgrpo"],
                                                   [*trial_overrides(spec, {}, base),
                                                    *(f"{k}=<sampled>" for k in spec.space)],
                                                   study_dir / "trial_<n>", hydra_launcher)}, indent=2))
        return 0
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    result = run_study(spec, study_dir, args.overrides, command=command, n_trials=args.n_trials,
                       trial_timeout=args.trial_timeout, report=not args.no_report, n_jobs=args.n_jobs,
                       hydra_launcher=args.launcher, storage=args.storage, stale_after=args.stale_after)
    print(json.dumps(result.best, indent=2, default=str))
    if result.best.get("pareto_front_html"):
        print(f"pareto front: {result.best['pareto_front_html']}")
    if result.report:
        print(f"report: {result.report['html']}")
    return 0 if result.best.get("n_complete") else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
