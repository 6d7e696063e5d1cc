"""Running an Optuna study for ``opgrpo-optuna`` (opgrpo.app.optuna_cli): :func:`run_study` opens (or resumes,
or joins) the study and runs its trials, ``n_jobs`` worker threads at a time; the workers ask for trials one at a
time under the study directory's lock file, retry the trials of drivers that are gone, launch each trial and tell
Optuna its values.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opgrpo.sweep.optuna.heartbeat import (
    HOST,
    LIVE,
    LIVE_LOCK,
    STALE_AFTER_S,
    heartbeat,
    is_stale,
    touch_heartbeat,
)
from opgrpo.sweep.optuna.outputs import write_atomic, write_outputs
from opgrpo.sweep.optuna.spec import StudySpec, format_value, objective_warnings
from opgrpo.sweep.optuna.study import (
    build_sampler,
    objectives_of,
    open_storage,
    split_launcher,
    trial_overrides,
)
from opgrpo.sweep.optuna.trial import (
    Launcher,
    launch,
    mark_failed,
    read_values,
    run_objective,
    trial_command,
)

log = logging.getLogger("opgrpo.optuna")


@dataclass
class StudyResult:
    study: Any
    study_dir: Path
    best: dict[str, Any]
    report: dict[str, Any] | None


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
                with LIVE_LOCK:
                    LIVE.add((str(self.study_dir), trial.number))
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
                mark_failed(Path(t.user_attrs["run_dir"]), "interrupted (the driver stopped); retried as a new "
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
                mark_failed(run_dir, error, overrides)
                trial.set_user_attr("error", error)
                log.warning("trial %d failed: %s", trial.number, error)
                stop = _tell(self.study, trial, state=optuna.trial.TrialState.FAIL)
            else:
                log.info("trial %d: %s", trial.number, ", ".join(f"{o} = {v:.4f}" for o, v in zip(used, values)))
                stop = _tell(self.study, trial, values=values if len(values) > 1 else values[0])
        finally:
            with LIVE_LOCK:
                LIVE.discard((str(self.study_dir), trial.number))
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
    if objectives != (spec.objectives or [spec.objective]):  # an objective= among the overrides (the spec's: warned)
        for warning in objective_warnings(objectives, spec.space):
            log.warning("%s", warning)
    target = n_trials if n_trials is not None else spec.n_trials
    study = optuna.create_study(storage=open_storage(study_dir, storage if storage is not None else spec.storage),
                                study_name=spec.study_name, sampler=build_sampler(spec), directions=directions,
                                load_if_exists=True)
    if [d.name.lower() for d in study.directions] != directions:
        raise ValueError(f"study {spec.study_name!r} in {study_dir} optimises "
                         f"{[d.name.lower() for d in study.directions]}, not {directions}: use another --study-dir")
    write_atomic(study_dir / "spec.json", json.dumps({
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
