"""`opgrpo-optuna`: an Optuna search over reward weights and thresholds, one `opgrpo` run per trial.

Hydra's Optuna sweeper plugin pins optuna<3, so this small driver uses Optuna's ask/tell API directly and
reads the same spec layout (``sweeps/optuna.yaml``): ``hydra.sweeper.{direction, study_name, n_trials,
sampler, params}`` and the top-level ``objective``. For every trial it

1. asks Optuna for values of the search space (``params`` in Hydra's sweep syntax, see the spec file),
2. runs ``python -m opgrpo <base overrides> <trial overrides> hydra.run.dir=<study_dir>/trial_<n>`` as a
   subprocess (output in ``trial_<n>/launch.log``),
3. reads the objective from ``trial_<n>/summary.json`` and tells Optuna; a run that fails, is killed or has no
   finite objective is a ``FAIL`` trial (its ``status.json`` says why) and the study goes on,
4. rewrites ``study.csv`` (one row per trial) and ``best.json``.

The study is stored in ``<study_dir>/study.db`` (sqlite), so the same command resumes it: trials that were
running when the driver stopped are marked failed and retried with the same values, and the study runs until
``n_trials`` trials have finished. ``<study_dir>`` is a sweep directory for ``opgrpo.report.build_report``; the
driver writes that report to ``<study_dir>/report`` at the end (``--no-report`` to skip).
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("opgrpo.optuna")

DEFAULT_OBJECTIVE = "eval/overall/accuracy"
_PLAIN = re.compile(r"^[A-Za-z0-9_./\-:+@]+$")


# ---- the spec -----------------------------------------------------------------------------------------------
@dataclass
class StudySpec:
    """What a spec file says: the search space, fixed overrides and how to run the study."""

    space: dict[str, Any]  # name -> optuna distribution
    fixed: list[str] = field(default_factory=list)  # overrides every trial gets (the spec's own settings)
    objective: str = DEFAULT_OBJECTIVE
    direction: str = "maximize"
    study_name: str = "opgrpo"
    n_trials: int = 20
    max_failure_rate: float = 1.0
    sampler: dict[str, Any] = field(default_factory=dict)  # {"_target_": "optuna.samplers.X", **kwargs}


def format_value(value: Any) -> str:
    """A Python value as a Hydra override value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    text = str(value)
    if _PLAIN.match(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def distribution(key: str, expr: Any):
    """Hydra sweep syntax -> an optuna distribution, or the value as a string when it is not a sweep.

    ``interval(a, b)`` float (int when both ends are ints, e.g. ``int(interval(1, 8))``), ``tag(log, ...)`` log
    scale, ``range(a, b, step=s)`` stepped over the values Hydra expands it to (from a to its last value below or,
    for float steps that round onto it, at b), ``choice(x, y)`` / ``x,y`` categorical.
    """
    import optuna.distributions as od
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    try:
        override = OverridesParser.create().parse_override(f"{key}={format_value(expr) if not isinstance(expr, str) else expr}")
    except Exception as exc:  # noqa: BLE001 - hydra's parser raises several types
        raise ValueError(f"search space {key}: cannot parse {expr!r}: {exc}") from None
    if not override.is_sweep_override():
        return override.get_value_element_as_str()
    value = override.value()
    if isinstance(value, ChoiceSweep) or (isinstance(value, RangeSweep) and value.shuffle):
        choices = list(override.sweep_iterator())
        if any(not isinstance(c, (str, int, float, bool)) for c in choices):
            raise ValueError(f"search space {key}: choices must be numbers, strings or booleans, got {choices!r}")
        return od.CategoricalDistribution(choices)
    if isinstance(value, RangeSweep):
        values = list(override.sweep_iterator())
        if not values:
            raise ValueError(f"search space {key}: {expr!r} is empty")
        if all(isinstance(v, int) for v in (value.start, value.stop, value.step)):
            return od.IntDistribution(int(values[0]), int(values[-1]), step=int(value.step))
        low, high, step = round(float(values[0]), 10), round(float(values[-1]), 10), float(value.step)
        return od.FloatDistribution(low, high, step=step) if high > low else od.CategoricalDistribution([low])
    if isinstance(value, IntervalSweep):
        log_scale = "log" in value.tags
        if value.start is None or value.end is None:
            raise ValueError(f"search space {key}: interval needs both ends")
        if isinstance(value.start, int) and isinstance(value.end, int):
            return od.IntDistribution(value.start, value.end, log=log_scale)
        return od.FloatDistribution(float(value.start), float(value.end), log=log_scale)
    raise ValueError(f"search space {key}: unsupported sweep {expr!r}")


def _flat_overrides(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict):
        out = []
        for k, v in node.items():
            out += _flat_overrides(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return [f"{prefix}={format_value(node)}"]


def load_spec(path: str | Path) -> StudySpec:
    """Read a spec file (layout of sweeps/optuna.yaml). The keys outside ``hydra`` and ``defaults`` become
    overrides of every trial; ``defaults: [override /group: option]`` entries become ``group=option``."""
    import yaml

    path = Path(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise TypeError(f"{path}: expected a mapping at the top level")
    sweeper = ((data.get("hydra") or {}).get("sweeper")) or {}
    params = sweeper.get("params") or {}
    if not isinstance(params, dict):
        raise TypeError(f"{path}: hydra.sweeper.params must be a mapping of key: sweep")
    space, fixed = {}, []
    for key, expr in params.items():
        dist = distribution(str(key), expr)
        if isinstance(dist, str):
            fixed.append(f"{key}={dist}")
        else:
            space[str(key)] = dist
    for entry in data.get("defaults") or []:
        if isinstance(entry, dict):
            for k, v in entry.items():
                group = str(k).removeprefix("override ").strip().lstrip("/")
                if not group.startswith("hydra/") and v is not None:
                    fixed.insert(0, f"{group}={format_value(v)}")
    for key, value in data.items():
        if key not in ("hydra", "defaults"):
            fixed += _flat_overrides(value, key)
    direction = str(sweeper.get("direction", "maximize")).lower()
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"{path}: hydra.sweeper.direction must be maximize or minimize, got {direction!r}")
    sampler = sweeper.get("sampler") or {}
    if sampler and not str(sampler.get("_target_", "")).startswith("optuna.samplers."):
        raise ValueError(f"{path}: hydra.sweeper.sampler._target_ must name an optuna.samplers class")
    n_trials = int(sweeper.get("n_trials", 20))
    if n_trials < 1:
        raise ValueError(f"{path}: hydra.sweeper.n_trials must be >= 1, got {n_trials}")
    return StudySpec(space=space, fixed=fixed, objective=str(data.get("objective", DEFAULT_OBJECTIVE)),
                     direction=direction, study_name=str(sweeper.get("study_name") or path.stem),
                     n_trials=n_trials, max_failure_rate=float(sweeper.get("max_failure_rate", 1.0)),
                     sampler=dict(sampler))


def default_spec_path() -> Path:
    from opgrpo.paths import config_dir

    return config_dir() / "sweep" / "optuna.yaml"


def resolve_spec(name: str | None) -> Path:
    """A path, or a preset name of the ``sweep`` group (``optuna`` -> conf/sweep/optuna.yaml)."""
    if not name:
        return default_spec_path()
    p = Path(name)
    if p.is_file():
        return p
    preset = default_spec_path().parent / (name if name.endswith(".yaml") else f"{name}.yaml")
    if preset.is_file():
        return preset
    raise FileNotFoundError(f"spec {name!r} is neither a file nor a preset in {preset.parent}")


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


def read_outcome(run_dir: Path, objective: str, returncode: int) -> tuple[float | None, str]:
    """(objective value, "") for a completed run, else (None, why)."""
    try:
        status = json.loads((run_dir / "status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        status = None
    state = status.get("status") if isinstance(status, dict) else None
    if state == "failed":
        return None, str(status.get("error") or "failed")
    if returncode != 0:
        return None, f"exit code {returncode}: {_tail(run_dir / 'launch.log')}"
    if state != "completed":
        return None, f"run ended with status {state!r}"
    try:
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, f"unreadable summary.json: {exc}"
    value = summary.get(objective) if isinstance(summary, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None, f"objective {objective!r} is missing or not a finite number in summary.json ({value!r})"
    return float(value), ""


def _mark_failed(run_dir: Path, error: str, overrides: Sequence[str]) -> None:
    """Make sure a failed trial's directory says so (a run killed early writes no final status)."""
    path = run_dir / "status.json"
    try:
        status = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        status = None
    if isinstance(status, dict) and status.get("status") == "failed":
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"status": "failed", "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "error": error,
                                "overrides": list(overrides)}, indent=2))


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
    best: dict[str, Any] = {"study_name": spec.study_name, "objective": objective, "direction": spec.direction,
                            "n_trials": len(trials), "n_complete": len(complete),
                            "n_failed": sum(t.state == optuna.trial.TrialState.FAIL for t in trials)}
    if complete:
        bt = study.best_trial
        best.update(number=bt.number, value=bt.value, params=bt.params,
                    overrides=bt.user_attrs.get("overrides", []), run_dir=bt.user_attrs.get("run_dir", ""))
    else:
        best.update(number=None, value=None, params={}, overrides=[], run_dir="")
    (study_dir / "best.json").write_text(json.dumps(best, indent=2, default=str))
    return best


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
        value, error = read_outcome(run_dir, objective, rc)
        if value is None:
            _mark_failed(run_dir, error, overrides)
            trial.set_user_attr("error", error)
            log.warning("trial %d failed: %s", trial.number, error)
            stop = _tell(study, trial, state=optuna.trial.TrialState.FAIL)
        else:
            log.info("trial %d: %s = %.4f", trial.number, objective, value)
            stop = _tell(study, trial, values=value)
        write_outputs(study, study_dir, spec, objective)
        if stop:
            log.info("the sampler has no more points to try (e.g. a finished GridSampler grid): study stopped")
            break
    best = write_outputs(study, study_dir, spec, objective)
    out = None
    if report:
        from opgrpo.report import build_report

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
                          "objective": _objective_of(spec, args.overrides),
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
