"""`opgrpo-optuna`: an Optuna search over reward weights and thresholds, one `opgrpo` run per trial.

Hydra's Optuna sweeper plugin pins optuna<3, so this small driver uses Optuna's ask/tell API directly and
reads the same spec layout (``sweeps/optuna.yaml``, read by ``opgrpo.sweep.optuna_spec``):
``hydra.sweeper.{direction, study_name, n_trials, sampler, params}`` and the top-level ``objective``. For
every trial it

1. asks Optuna for values of the search space (``params`` in Hydra's sweep syntax, see the spec file),
2. runs ``python -m opgrpo <base overrides> <trial overrides> hydra.run.dir=<study_dir>/trial_<n>`` as a
   subprocess (output in ``trial_<n>/launch.log``),
3. reads the objective from ``trial_<n>/summary.json`` and tells Optuna; a run that fails, is killed or has no
   finite objective is a ``FAIL`` trial (its ``status.json`` says why) and the study goes on,
4. rewrites ``study.csv`` (one row per trial) and ``best.json``.

The objective is the spec's ``objective`` or an ``objective=`` base override; without either, each trial's own
config ``objective`` (its resolved ``config.yaml``), so that ``experiment=cpu_demo`` is scored by its
reward-based objective rather than the NLI accuracy that the CPU stand-in leaves at 0. When every completed
trial has the same value, the driver warns (log and ``best.json``'s ``warning``): the study cannot rank them.

The study is stored in ``<study_dir>/study.db`` (sqlite), so the same command resumes it: trials that were
running when the driver stopped are marked failed and retried with the same values, and the study runs until
``n_trials`` trials have finished. ``<study_dir>`` is a sweep directory for ``opgrpo.sweep.report.build_report``;
the driver writes that report to ``<study_dir>/report`` at the end (``--no-report`` to skip).
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


def read_outcome(run_dir: Path, objective: str, returncode: int) -> tuple[float | None, str]:
    """(objective value, "") for a completed run, else (None, why). ``objective`` "": the run's own."""
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
    objective = objective or run_objective(run_dir)
    if not objective:
        return None, f"no objective: neither the spec, an objective= override nor the run's {CONFIG_YAML} names one"
    value = summary.get(objective)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None, f"objective {objective!r} is missing or not a finite number in {SUMMARY_JSON} ({value!r})"
    return float(value), ""


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


def trial_overrides(spec: StudySpec, params: dict[str, Any], base: Sequence[str]) -> list[str]:
    """Base overrides, then the spec's fixed settings not already in base, then the trial's values."""
    base_keys = {b.split("=", 1)[0].lstrip("+~") for b in base}
    fixed = [f for f in spec.fixed if f.split("=", 1)[0] not in base_keys]
    return [*base, *fixed, *(f"{k}={format_value(v)}" for k, v in params.items())]


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


def write_outputs(study, study_dir: Path, spec: StudySpec, objective: str) -> dict[str, Any]:
    """study.csv (one row per trial) and best.json; returns the best.json content."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    rows = []
    for t in trials:
        row = {"number": t.number, "state": t.state.name, "value": t.value,
               "datetime_start": t.datetime_start, "datetime_complete": t.datetime_complete,
               "duration_s": t.duration.total_seconds() if t.duration else None}
        row.update({f"params_{k}": v for k, v in t.params.items()})
        row.update({k: t.user_attrs.get(k, "") for k in ("run_dir", "error")})
        row["interrupted"] = bool(t.user_attrs.get("interrupted"))
        rows.append(row)
    import pandas as pd

    pd.DataFrame(rows).to_csv(study_dir / "study.csv", index=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not objective:  # each trial's own: name them
        objective = ", ".join(sorted({str(t.user_attrs.get("objective", "")) for t in complete} - {""})) or \
            "(each trial's config objective)"
    best: dict[str, Any] = {"study_name": spec.study_name, "objective": objective, "direction": spec.direction,
                            "n_trials": len(trials), "n_complete": len(complete),
                            "n_failed": sum(t.state == optuna.trial.TrialState.FAIL for t in trials)}
    if complete:
        bt = study.best_trial
        best.update(number=bt.number, value=bt.value, params=bt.params,
                    overrides=bt.user_attrs.get("overrides", []), run_dir=bt.user_attrs.get("run_dir", ""))
    else:
        best.update(number=None, value=None, params={}, overrides=[], run_dir="")
    best["warning"] = identical_objective_warning([t.value for t in complete], objective)
    (study_dir / "best.json").write_text(json.dumps(best, indent=2, default=str))
    return best


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


def run_study(spec: StudySpec, study_dir: str | Path, base_overrides: Sequence[str] = (), *,
              command: Sequence[str] | None = None, n_trials: int | None = None, trial_timeout: float | None = None,
              launcher: Launcher = launch, report: bool = True) -> StudyResult:
    """Run (or resume) the study in ``study_dir`` until ``n_trials`` (default ``spec.n_trials``) have finished."""
    import optuna

    study_dir = Path(study_dir).resolve()
    study_dir.mkdir(parents=True, exist_ok=True)
    command = list(command) if command else [sys.executable, "-m", "opgrpo"]
    objective = _objective_of(spec, base_overrides)
    target = n_trials if n_trials is not None else spec.n_trials
    study = optuna.create_study(storage=f"sqlite:///{study_dir / 'study.db'}", study_name=spec.study_name,
                                sampler=_sampler(spec), direction=spec.direction, load_if_exists=True)
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        # Left running by a driver that stopped: record it, then retry the same values as a new trial.
        log.warning("trial %d was interrupted; retrying its values", t.number)
        optuna.trial.Trial(study, t._trial_id).set_user_attr("interrupted", True)
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        if t.user_attrs.get("run_dir"):
            _mark_failed(Path(t.user_attrs["run_dir"]), "interrupted (the driver stopped); retried as a new trial",
                         t.user_attrs.get("overrides", []))
        study.enqueue_trial(t.params)
    (study_dir / "spec.json").write_text(json.dumps({"objective": objective, "direction": spec.direction,
                                                     "space": {k: repr(v) for k, v in spec.space.items()},
                                                     "fixed": spec.fixed, "base_overrides": list(base_overrides),
                                                     "command": command}, indent=2))
    while True:
        finished = _finished(study.get_trials(deepcopy=False))
        if len(finished) >= target:
            break
        failed = sum(t.state == optuna.trial.TrialState.FAIL for t in finished)
        if finished and failed / len(finished) > spec.max_failure_rate:
            log.error("stopping: %d of %d trials failed (max_failure_rate %.2f)", failed, len(finished),
                      spec.max_failure_rate)
            break
        trial = study.ask(spec.space)
        run_dir = study_dir / f"trial_{trial.number}"
        overrides = trial_overrides(spec, trial.params, base_overrides)
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("overrides", overrides)
        cmd = [*command, *overrides, f"hydra.run.dir={run_dir}"]
        log.info("trial %d: %s", trial.number, " ".join(f"{k}={format_value(v)}" for k, v in trial.params.items()))
        try:
            rc = launcher(cmd, run_dir, trial_timeout)
        except Exception as exc:  # noqa: BLE001 - a launcher error fails this trial, not the study
            rc = -1
            (run_dir / "launch.log").parent.mkdir(parents=True, exist_ok=True)
            with open(run_dir / "launch.log", "a", encoding="utf-8") as fh:
                fh.write(f"[opgrpo-optuna] launch failed: {type(exc).__name__}: {exc}\n")
        used = objective or run_objective(run_dir)
        value, error = read_outcome(run_dir, used, rc)
        trial.set_user_attr("objective", used)
        if value is None:
            _mark_failed(run_dir, error, overrides)
            trial.set_user_attr("error", error)
            log.warning("trial %d failed: %s", trial.number, error)
            stop = _tell(study, trial, state=optuna.trial.TrialState.FAIL)
        else:
            log.info("trial %d: %s = %.4f", trial.number, used, value)
            stop = _tell(study, trial, values=value)
        write_outputs(study, study_dir, spec, objective)
        if stop:
            log.info("the sampler has no more points to try (e.g. a finished GridSampler grid): study stopped")
            break
    best = write_outputs(study, study_dir, spec, objective)
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
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="opgrpo-optuna",
        description="Optuna search (ask/tell) over opgrpo runs: each trial is `python -m opgrpo <overrides>` in "
                    "<study-dir>/trial_<n>; the study resumes from <study-dir>/study.db.",
        epilog="example: opgrpo-optuna --study-dir studies/rw --n-trials 8 experiment=cpu_demo 'pipeline=[grpo,eval]'",
    )
    ap.add_argument("overrides", nargs="*", help="Hydra overrides given to every trial (e.g. experiment=cpu_demo)")
    ap.add_argument("--spec", default="", help="spec file or sweep preset name (default: sweeps/optuna.yaml)")
    ap.add_argument("--study-dir", default="", help="default: outputs/optuna/<study_name>")
    ap.add_argument("--n-trials", type=int, default=None, help="finished trials to reach (default: the spec's)")
    ap.add_argument("--study-name", default="", help="default: the spec's hydra.sweeper.study_name")
    ap.add_argument("--command", default="", help="the entrypoint to launch (default: '<python> -m opgrpo')")
    ap.add_argument("--trial-timeout", type=float, default=None, help="seconds before a trial is killed (failed)")
    ap.add_argument("--no-report", action="store_true", help="skip the sweep report at the end")
    ap.add_argument("--dry-run", action="store_true", help="print the search space and the trial command, run nothing")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] %(message)s")
    logging.getLogger("optuna").setLevel(logging.WARNING)

    spec = load_spec(resolve_spec(args.spec))
    if args.study_name:
        spec.study_name = args.study_name
    study_dir = Path(args.study_dir or Path("outputs") / "optuna" / spec.study_name)
    command = shlex.split(args.command) if args.command else None
    if args.dry_run:
        print(json.dumps({"study_dir": str(study_dir), "study_name": spec.study_name, "direction": spec.direction,
                          "objective": _objective_of(spec, args.overrides) or "each trial's config objective",
                          "n_trials": args.n_trials or spec.n_trials,
                          "space": {k: repr(v) for k, v in spec.space.items()},
                          "command": [*(command or [sys.executable, "-m", "opgrpo"]),
                                      *trial_overrides(spec, {}, args.overrides),
                                      *(f"{k}=<sampled>" for k in spec.space),
                                      f"hydra.run.dir={study_dir}/trial_<n>"]}, indent=2))
        return 0
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    result = run_study(spec, study_dir, args.overrides, command=command, n_trials=args.n_trials,
                       trial_timeout=args.trial_timeout, report=not args.no_report)
    print(json.dumps(result.best, indent=2, default=str))
    if result.report:
        print(f"report: {result.report['html']}")
    return 0 if result.best.get("n_complete") else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
