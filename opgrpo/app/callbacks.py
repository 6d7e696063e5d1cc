"""Hydra callbacks of the `opgrpo` app (registered under ``hydra.callbacks`` in conf/opgrpo.yaml).

``WritableRunDir``: before Hydra creates the run directory (``hydra.run.dir``; a multirun's ``hydra.sweep.dir``) and
opens its log file there, both must be writable; else one line on stderr naming the path and the OS error, exit
status 1 (Hydra would end in a traceback, or in ``ValueError: Unable to configure handler 'file'`` with the cause
further up).

``SweepOutcome``:

- at the start of a multirun, compose every arm (the sweeper's parameters and the command line's sweeps, expanded
  as Hydra's basic sweeper does) and check each as its job would (opgrpo.app.validate.check, no run directory yet):
  an invalid arm stops the sweep before any job starts, printing every failed arm with its whole reason (exit 2);
- at its end, read every job's ``status.json`` in the sweep directory, build the sweep report (``stage=report``:
  table, coverage-vs-uniqueness Pareto plot, curves) in ``<sweep>/report/`` when at least one job completed with
  evaluation numbers, print which jobs failed or never finished and where the sweep and its report are, and exit
  with status 1 when a job did not complete (``opgrpo -m`` must not report success when members failed). It reads
  files rather than in-process state, so it also sees jobs that a launcher (submitit) ran in other processes. A
  report that cannot be built is a warning with the reason, never a failed sweep.
"""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.errors import ConfigCompositionException
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from opgrpo.utils.runfiles import COMPLETED, RunFileError, live_status, read_status

log = logging.getLogger("opgrpo")


@dataclass
class Outcome:
    """What the last multirun of this process left: its directory, the jobs that did not complete, its report."""

    sweep_dir: str = ""
    jobs: int = 0
    failed: list[str] = field(default_factory=list)
    report: str = ""  # the report's index.html ("" when none was built)


def sweep_outcome(sweep_dir: str | Path) -> Outcome:
    """Every job directory (one holding Hydra's ``.hydra/``) under ``sweep_dir`` and those not completed."""
    sweep_dir = Path(sweep_dir)
    jobs = sorted({p.parent.parent for p in sweep_dir.rglob(".hydra/config.yaml")})
    failed = []
    for job in jobs:
        try:
            status = read_status(job) or {}
        except RunFileError as exc:
            status = {"status": "unreadable", "error": str(exc)}
        if status.get("status") != COMPLETED:
            why = status.get("error") or f"status {live_status(job, status) or 'missing'}"
            failed.append(f"{job.relative_to(sweep_dir)}: " + str(why).strip().replace("\n", "\n    "))
    return Outcome(str(sweep_dir), len(jobs), failed)


def sweep_report(sweep_dir: str | Path, reference_weights: dict[str, float] | None = None) -> str:
    """Build the report of ``sweep_dir`` in ``<sweep_dir>/report``; its index.html, or "" when there is nothing
    to report (no job completed with evaluation numbers: said at INFO) or it failed (said as a WARNING)."""
    try:
        from opgrpo.sweep.records import SKIPPED, collect_runs
        from opgrpo.sweep.report import build_report, report_dir

        out_dir = report_dir("", sweep_dir)
        records = collect_runs(sweep_dir, exclude=[out_dir])
        if not any(r.status == COMPLETED for r in records):
            skipped = [r for r in records if r.status == SKIPPED]
            why = (f"none of the {len(skipped)} completed job(s) has evaluation numbers (eval/... in summary.json; "
                   f"job {skipped[0].name}: {skipped[0].error.split(': ', 1)[-1]})") if skipped else "no job completed"
            log.info("no sweep report: %s", why)
            return ""
        return build_report(sweep_dir, out_dir, reference_weights=reference_weights)["html"]
    except Exception as exc:  # noqa: BLE001 - the sweep's results stand without the report
        log.warning("the sweep report could not be built (%s: %s); build it later with "
                    "`opgrpo stage=report report.sweep_dir=%s`", type(exc).__name__, exc, sweep_dir)
        return ""


def _reference_weights(config: Any) -> dict[str, float] | None:
    node = OmegaConf.select(config, "report.reference_weights", default=None)
    return OmegaConf.to_container(node, resolve=True) if node is not None else None


def unwritable_dir(config: Any, key: str, log_file: bool) -> str:
    """Why the directory at ``key`` (``hydra.run.dir`` / ``hydra.sweep.dir``) cannot hold the run ("" when it can):
    with ``log_file`` (a single run) it is created and the job's log file (Hydra's
    ``hydra.job_logging.handlers.file.filename`` there) opened for appending, as Hydra is about to; without (a
    multirun, whose sweep directory must not exist before its arms are checked) nothing is created: its nearest
    existing folder must be a folder that takes a file (one is written and removed)."""
    import errno
    import tempfile

    try:
        path = Path(str(OmegaConf.select(config, key))).absolute()
    except Exception:  # noqa: BLE001 - a directory Hydra cannot resolve either: Hydra says why
        return ""
    try:
        if log_file:
            path.mkdir(parents=True, exist_ok=True)
        existing = next(p for p in (path, *path.parents) if p.exists())
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(existing))
        with tempfile.TemporaryFile(dir=existing):
            pass
        log_path = _log_file(config, path) if log_file else None
        if log_path:
            open(log_path, "a").close()  # noqa: SIM115 - Hydra's FileHandler appends to it next
    except OSError as exc:
        hint = "hydra.run.dir=DIR (or OPGRPO_RUN_DIR=DIR)" if key == "hydra.run.dir" else "hydra.sweep.dir=DIR"
        return f"opgrpo: cannot write the run directory {path} ({key}): {exc}; choose a writable one with {hint}"
    return ""


def _log_file(config: Any, output_dir: Path) -> str | None:
    """The file Hydra's job logging will write for a job in ``output_dir`` (None without a file handler)."""
    import copy

    from omegaconf import open_dict, read_write

    if OmegaConf.select(config, "hydra.job_logging.handlers.file", default=None) is None:
        return None
    try:
        cfg = copy.deepcopy(config)
        with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
            cfg.hydra.runtime.output_dir = str(output_dir)
        return str(OmegaConf.select(cfg, "hydra.job_logging.handlers.file.filename"))
    except Exception:  # noqa: BLE001 - a file name that does not resolve here: Hydra's logging will say
        return None


class WritableRunDir(Callback):
    """Stop before Hydra's own failure when the run (sweep) directory or the log file cannot be written."""

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        _exit_if(unwritable_dir(config, "hydra.run.dir", log_file=True))

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        _exit_if(unwritable_dir(config, "hydra.sweep.dir", log_file=False))


def _exit_if(problem: str) -> None:
    if problem:
        sys.stderr.write(problem + "\n")
        raise SystemExit(1)


class SweepOutcome(Callback):
    """Build the sweep's report, report failed jobs at the end of a multirun and make the entrypoint exit
    non-zero if there are any."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        failed = check_arms(config)
        if failed:
            sys.stderr.write(f"invalid configuration in {len(failed)} arm(s) of the sweep; no job was started:\n"
                             + "\n".join(f"arm {arm}:\n  {why}" for arm, why in failed) + "\n")
            raise SystemExit(2)
        problem = claim_sweep_dir(config)
        if problem:
            sys.stderr.write(problem + "\n")
            raise SystemExit(2)

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        remove_literal_submitit_folder(config)
        outcome = sweep_outcome(config.hydra.sweep.dir)
        try:
            weights = _reference_weights(config)
        except Exception:  # noqa: BLE001 - an unresolvable node: the paper weights
            weights = None
        outcome.report = sweep_report(outcome.sweep_dir, weights)
        if outcome.failed:
            log.error("%d of %d job(s) of the sweep did not complete:\n  %s", len(outcome.failed), outcome.jobs,
                      "\n  ".join(outcome.failed))
        log.info("sweep directory: %s (%d job(s), %d completed)", outcome.sweep_dir, outcome.jobs,
                 outcome.jobs - len(outcome.failed))
        if outcome.report:
            log.info("sweep report: %s", outcome.report)
        if outcome.failed:
            raise SystemExit(1)


def remove_literal_submitit_folder(config: Any) -> bool:
    """Remove the empty ``<sweep>/.submitit/%j`` that submitit's local controller creates (it makes the folder
    ``submitit_folder`` names before formatting ``%j``; the jobs write to ``.submitit/<job id>/``)."""
    folder = Path(str(OmegaConf.select(config, "hydra.launcher.submitit_folder", default="") or ""))
    if "%" not in folder.name or not folder.is_dir():
        return False
    try:
        folder.rmdir()  # only when empty
    except OSError:
        return False
    return True


def sweep_arms(config: Any) -> list[list[str]]:
    """The override list of every job of a multirun, as Hydra's basic sweeper expands them: ``hydra.sweeper.params``
    (a sweep preset's) then the command line's task overrides, their cartesian product."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
    args = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    return [arm for batch in BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(args), None)
            for arm in batch]


def check_arms(config: Any) -> list[tuple[str, str]]:
    """Compose and check every arm of a multirun as its job will (``sweep_arms``, opgrpo.app.validate.check without a
    run directory); (the arm: job number and the overrides that differ between arms, the whole reason) of each one
    that fails. A sweep whose arms a plugin sweeper (not Hydra's basic one) chooses is left to its jobs' own start-up
    checks."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    if "basic_sweeper" not in str(OmegaConf.select(config, "hydra.sweeper._target_", default="")):
        return []
    from opgrpo.app.runconfig import ConfigError
    from opgrpo.app.validate import check

    loader, failed, arms = GlobalHydra.instance().config_loader(), [], sweep_arms(config)
    for number, arm in enumerate(arms):
        try:
            job = loader.load_sweep_config(config, list(arm))
            HydraConfig.instance().set_config(job)
            check(job)
        except (ConfigError, OmegaConfBaseException, ConfigCompositionException) as exc:
            why = str(exc).strip()
            if exc.__cause__ is not None:  # Hydra's "Error merging override ...": the cause says what is wrong
                why += "\n  " + str(exc.__cause__).strip().replace("\n", "\n  ")
            swept = [o for o in arm if not all(o in other for other in arms)]
            failed.append((f"{number} ({' '.join(swept) or 'no swept overrides'})", why))
    HydraConfig.instance().set_config(config)
    return failed


SWEEP_JSON = "sweep.json"
"""A multirun's identity in its sweep directory: the sweeper, its parameters and the command line's overrides."""


def sweep_identity(config: Any) -> dict[str, Any]:
    """What makes a multirun the same sweep: its sweeper, the sweeper's parameters (a sweep preset's) and the task
    overrides of the command line (the swept ones as written), order aside."""
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
    return {"sweeper": str(OmegaConf.select(config, "hydra.sweeper._target_", default="")),
            "params": {str(k): str(v) for k, v in params.items()},
            "overrides": sorted(str(o) for o in config.hydra.overrides.task)}


def claim_sweep_dir(config: Any) -> str:
    """Why this multirun may not use its sweep directory ("" when it may): the directory holds another sweep (its
    ``sweep.json`` differs: the differences named) or jobs of a sweep without one. The same sweep again (the same
    command) is welcome: its completed jobs are reused and interrupted ones continue (opgrpo.app.reuse); a new sweep
    records itself."""
    import json

    root = Path(str(config.hydra.sweep.dir))
    path, ident = root / SWEEP_JSON, sweep_identity(config)
    if path.is_file():
        try:
            old = json.loads(path.read_text()).get("identity", {})
        except (OSError, ValueError, AttributeError):
            old = {}
        if old == ident:
            log.info("sweep directory %s holds this same sweep: completed jobs are reused, interrupted ones continue",
                     root)
            return ""
        diff = [f"{k}: {old.get(k)!r} -> {ident[k]!r}" for k in ident if old.get(k) != ident[k]]
        return (f"opgrpo: the sweep directory {root} holds another sweep ({SWEEP_JSON}):\n  " + "\n  ".join(diff)
                + "\nits jobs would be mixed with this one's; choose another hydra.sweep.dir")
    if any(root.glob("*/.hydra")) or (root / "multirun.yaml").exists():
        return (f"opgrpo: the sweep directory {root} holds jobs of a sweep that did not record itself (no "
                f"{SWEEP_JSON}: an older opgrpo); choose another hydra.sweep.dir")
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"identity": ident}, indent=2))
    return ""
