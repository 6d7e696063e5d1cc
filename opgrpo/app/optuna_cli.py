"""`opgrpo-optuna`: an Optuna search over reward weights and thresholds, one `opgrpo` run per trial.

Why hand-written: Hydra's Optuna sweeper plugin (hydra-optuna-sweeper, what ``opgrpo -m hydra/sweeper=optuna`` would
use) pins ``optuna<3`` and does not support Optuna >= 4, which this project needs. So this small driver uses
Optuna's ask/tell API directly and reads the plugin's spec layout (``sweeps/optuna.yaml``, read by
``opgrpo.sweep.optuna.spec``, its sweep syntax parsed here by Hydra's override parser): ``hydra.sweeper.{direction,
objectives, study_name, n_trials, n_jobs, storage, sampler, params}`` and the top-level ``objective``. It should
give way to the plugin once a release supports Optuna >= 4. For every trial it

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
make a multi-objective study, e.g. ``eval/reference/coverage_rate`` and ``eval/reference/uniqueness_rate``, both
maximised. When every completed trial has the same value, the driver warns (log and ``best.json``'s
``warning``): the study cannot rank them.

Storage and parallel trials: the study lives in Optuna's journal file ``<study_dir>/study.journal``
(``JournalStorage(JournalFileBackend)``, file locks that work on NFS), so several drivers on the same
``--study-dir`` (copies on the login node, SLURM jobs, ``--n-jobs`` threads of one driver) share one study: they
ask for trials one at a time under a lock file, so together they run exactly ``n_trials``. The same command
resumes the study: a trial left running by a driver that is gone (its process no longer exists on this host, or
its heartbeat file ``trial_<n>/.heartbeat`` is older than ``--stale-after`` seconds) is marked failed
(``interrupted``) and its values are retried as a new trial; trials of live drivers are left alone.
``<study_dir>`` is a sweep directory for ``opgrpo.sweep.report.build_report``; the driver writes that report to
``<study_dir>/report`` at the end (``--no-report`` to skip).

This module is what of the driver knows Hydra: the command line (:func:`main`), the sweep syntax of ``params``
(:func:`distribution`, Hydra's override parser), the spec presets in the config root (:func:`resolve_spec`) and
the guard of ``opgrpo -m sweep=optuna`` (:class:`NotAHydraSweeper`). The study itself is run by the plain
subpackage ``opgrpo.sweep.optuna`` (``run``: ``run_study`` and its workers; ``trial``, ``heartbeat``, ``study``,
``outputs``, ``spec``).
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
from typing import Any

from opgrpo.app.paths import config_dir
from opgrpo.sweep.optuna import spec as study_spec
from opgrpo.sweep.optuna.heartbeat import STALE_AFTER_S
from opgrpo.sweep.optuna.run import run_study
from opgrpo.sweep.optuna.spec import StudySpec, format_value
from opgrpo.sweep.optuna.study import (
    JOURNAL,
    objectives_of,
    split_launcher,
    trial_overrides,
)
from opgrpo.sweep.optuna.trial import trial_command

__all__ = ["NotAHydraSweeper", "default_spec_path", "distribution", "load_spec", "main", "not_a_sweeper_message",
           "resolve_spec"]


# ---- the spec file: Hydra's sweep syntax, the presets ---------------------------------------------------------
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
        text = expr if isinstance(expr, str) else format_value(expr)
        override = OverridesParser.create().parse_override(f"{key}={text}")
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


def load_spec(path: str | Path) -> StudySpec:
    """A spec file (layout of sweeps/optuna.yaml) read by ``opgrpo.sweep.optuna.spec.load_spec``, its ``params``
    parsed by :func:`distribution`."""
    return study_spec.load_spec(path, distribution)


def default_spec_path() -> Path:
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


class NotAHydraSweeper:
    """Hydra callback of ``sweeps/optuna.yaml``: a multirun of the preset (``opgrpo -m sweep=optuna``) stops at
    start-up, before Hydra looks for the hydra-optuna-sweeper plugin, with the ``opgrpo-optuna`` command that
    runs the study. A single run (``opgrpo sweep=optuna``) is unaffected."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        print(not_a_sweeper_message(_task_overrides(config)), file=sys.stderr)
        raise SystemExit(2)  # SystemExit passes Hydra's callback guard (it turns exceptions into warnings)


def _task_overrides(config: Any) -> list[str]:
    try:
        return [str(o) for o in config.hydra.overrides.task]
    except Exception:  # noqa: BLE001 - a config without Hydra's node: no overrides to carry over
        return []


def not_a_sweeper_message(overrides: list[str]) -> str:
    """What ``opgrpo -m sweep=optuna <overrides>`` prints: why not, and the equivalent ``opgrpo-optuna`` command."""
    args, spec = [], ""
    for ov in overrides:
        key, _, value = ov.partition("=")
        if key.lstrip("+~") == "sweep":
            spec = "" if value == "optuna" else value
        elif key == "launcher" and value not in ("local", "basic"):
            args[:0] = ["--launcher", value]
        elif key.startswith("hydra.sweeper."):
            continue
        else:
            args.append(ov)
    cmd = ["opgrpo-optuna", *(["--spec", spec] if spec else []), *args]
    return ("invalid configuration:\n  hydra.sweeper: sweep=optuna is the search space of `opgrpo-optuna`, not a "
            "Hydra sweeper; Hydra's Optuna sweeper plugin (hydra-optuna-sweeper) does not support Optuna >= 4 and "
            "is not installed, so `opgrpo -m sweep=optuna` cannot run. Run the study with\n    "
            + shlex.join(cmd) + "\n  (add --n-jobs N or start more copies on the same --study-dir for parallel "
            "trials; `opgrpo-optuna --help`, sweeps/README.md)")


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
               "  opgrpo-optuna --objectives eval/reference/coverage_rate,eval/reference/uniqueness_rate "
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
                         "(e.g. eval/reference/coverage_rate,eval/reference/uniqueness_rate)")
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
