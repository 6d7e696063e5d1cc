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
(``interrupted``) and its values are retried as a new trial; trials of live drivers are left alone. ``<study_dir>`` is a sweep directory for
``opgrpo.sweep.report.build_report``; the driver writes that report to ``<study_dir>/report`` at the end
(``--no-report`` to skip).

This module is the command line; the parts: ``opgrpo.sweep.optuna_run`` (``run_study`` and its workers),
``optuna_trial`` (one trial's command and outcome), ``optuna_heartbeat`` (live and stale trials),
``optuna_study`` (storage, sampler, objectives, overrides), ``optuna_outputs`` (study.csv, best.json, Pareto files).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from opgrpo.sweep.optuna_heartbeat import (
    HEARTBEAT,
    HEARTBEAT_S,
    HOST,
    STALE_AFTER_S,
    heartbeat,
    is_stale,
    touch_heartbeat,
)
from opgrpo.sweep.optuna_outputs import (
    identical_objective_warning,
    write_outputs,
    write_pareto_plot,
)
from opgrpo.sweep.optuna_run import StudyResult, run_study
from opgrpo.sweep.optuna_spec import load_spec, resolve_spec
from opgrpo.sweep.optuna_study import (
    JOURNAL,
    objectives_of,
    open_storage,
    split_launcher,
    trial_overrides,
)
from opgrpo.sweep.optuna_trial import (
    Launcher,
    launch,
    read_outcome,
    read_values,
    run_objective,
    trial_command,
)

__all__ = ["HEARTBEAT", "HEARTBEAT_S", "HOST", "JOURNAL", "STALE_AFTER_S", "Launcher", "StudyResult",
           "heartbeat", "identical_objective_warning", "is_stale", "launch", "main", "objectives_of", "open_storage",
           "read_outcome", "read_values", "run_objective", "run_study", "split_launcher", "touch_heartbeat",
           "trial_command", "trial_overrides", "write_outputs", "write_pareto_plot"]

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
