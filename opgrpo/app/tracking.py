"""Experiment tracking of one `opgrpo` job: its own W&B run (``JobTracker``) and the other trackers the HF
trainers report to (``report_to``).

Metrics always go to the run directory (opgrpo.app.rundir). With ``logger.backend=wandb`` the project starts one
W&B run per Hydra job and finishes it itself (transformers' ``WandbCallback`` would reuse the first job's run
for every later job of a multirun and never finish it):

- project, entity, mode and tags from ``logger.wandb``; ``WANDB_MODE=disabled`` in the environment wins;
- group: ``logger.wandb.group``, else the sweep directory in a multirun (``multirun/2026-05-01/12-00-00``; outside
  the working directory its name and a hash of its path, ``w6-3f2a9c1e``: ``sweep_group``);
- name: ``logger.wandb.name``, else the job's overrides (in a multirun the swept ones only, e.g.
  ``reward.weights.coverage=0.1,seed=1``), ``default`` when there are none;
- config: the resolved config, plus what the stages add (``set_config``: e.g. the reward weights actually used);
- id: derived from the run directory's absolute path, so ``resume=true`` in the same directory continues the
  same W&B run; a W&B sweep agent's ``WANDB_RUN_ID`` wins;
- files: ``<run dir>/wandb/`` (offline runs: ``wandb sync <run dir>/wandb/offline-run-*``).

SFT and GRPO of one job log into that run through ``trainer_callbacks(stage)`` under ``sft/...`` and
``grpo/...``, each against its own step ``<stage>/train/global_step``; the run directory's summary (estimator,
eval/NLI numbers, ...) goes to the run's summary (``log_summary``). Only rank 0 (``RANK``) starts a run; on the
other ranks, and whenever W&B is off, the tracker does nothing. Because the project logs to W&B itself, the
trainers' ``report_to`` never holds ``wandb``: only the other trackers of ``logger.report_to``.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, List

from omegaconf import OmegaConf

from opgrpo.app.rundir import RunDir
from opgrpo.training.distributed import dist_info
from opgrpo.utils.checks import Choice, Problems
from opgrpo.utils.redact import redact_obj

log = logging.getLogger("opgrpo.app.tracking")

TRACKER_MODULES: dict[str, tuple[str, ...]] = {
    "tensorboard": ("tensorboard|tensorboardX",),
    "trackio": ("trackio",),
    "mlflow": ("mlflow",),
    "comet_ml": ("comet_ml",),
    "neptune": ("neptune",),
    "clearml": ("clearml",),
    "dvclive": ("dvclive",),
    "swanlab": ("swanlab",),
    "codecarbon": ("codecarbon",),
    "azure_ml": ("azureml",),
    "dagshub": ("dagshub", "mlflow"),
    "flyte": ("flytekit",),
}
"""``logger.report_to`` names (transformers' reporting integrations, W&B aside) -> the modules each needs
(``a|b``: either one)."""
FINAL_TRAIN_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss", "total_flos")
"""What a trainer logs once at its end: these go to the run's summary, not its history."""


# ---- which trackers ----------------------------------------------------------------------------------------
def report_to(cfg: Any) -> list[str]:
    """The trainers' ``report_to``: the ``logger.report_to`` trackers. Never ``wandb``: the project's own
    ``JobTracker`` callbacks log to W&B (transformers' ``WandbCallback`` would log the same numbers again,
    unprefixed, into whichever run happens to be open)."""
    return [name for name in cfg.logger.report_to if name != "wandb"]


def report_to_problems(names: Sequence[str]) -> list[str]:
    """``report_to: ...`` messages (the key relative to ``logger``) for unknown trackers, trackers whose package is
    not installed, and ``wandb`` (that is ``logger=wandb``)."""
    problems = []
    for name in names:
        if name == "wandb":
            problems.append("report_to: 'wandb' is not a report_to entry: logger=wandb gives each job its own W&B run")
        elif name not in TRACKER_MODULES:
            problems.append(f"report_to: unknown tracker {name!r} (expected some of {', '.join(TRACKER_MODULES)})")
        else:
            for need in TRACKER_MODULES[name]:
                choices = need.split("|")
                if not any(_installed(m) for m in choices):
                    problems.append(f"report_to: {name!r} needs the {' or '.join(choices)} package, which is not "
                                    f"installed (pip install {choices[0]})")
    if len(set(names)) != len(list(names)):
        problems.append(f"report_to: a tracker is listed twice ({list(names)})")
    return problems


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def wandb_disabled_by_env() -> bool:
    """``WANDB_MODE=disabled`` in the environment: the user switched W&B off; no config value turns it back on."""
    return os.environ.get("WANDB_MODE", "").strip().lower() == "disabled"


def wandb_enabled(cfg: Any) -> bool:
    """``logger.backend=wandb`` and neither ``logger.wandb.mode`` nor the environment disables it."""
    return cfg.logger.backend == "wandb" and cfg.logger.wandb.mode != "disabled" and not wandb_disabled_by_env()


def is_main_process() -> bool:
    """Rank 0 of a multi-process run (``RANK``; a single process is rank 0)."""
    return dist_info().is_main


# ---- the W&B run's settings ----------------------------------------------------------------------------------
def wandb_run_id(run_dir: str | Path, identity: str = "") -> str:
    """A W&B run id (16 hex digits) from the run directory's absolute path and the run's identity (what it computes,
    opgrpo.app.identity.run_identity): the same command in the same directory continues its W&B run (a resumed or
    requeued job), another run in that directory never shares it."""
    return hashlib.sha1(f"{Path(run_dir).resolve()}|{identity}".encode()).hexdigest()[:16]


def sweep_group(multirun_dir: str | Path) -> str:
    """A multirun's group, the same for every job of one sweep and different between sweeps: its sweep directory as
    given when it lies inside the working directory (``multirun/2026-05-01/12-00-00``: readable, and unique there),
    else the directory's name and a short hash of its absolute path (``w6-3f2a9c1e``): two experiments that both
    name their sweep ``w6`` in different places no longer share a group, and every job of a sweep (on any node)
    derives the same one from the same path. At most 128 characters (W&B's limit), keeping the end."""
    p = Path(multirun_dir)
    if p.is_absolute():
        try:
            p = p.resolve().relative_to(Path.cwd().resolve())
        except ValueError:
            digest = hashlib.sha1(str(p.resolve()).encode()).hexdigest()[:8]
            return f"{p.name}-{digest}"[-128:]
    return str(p)[-128:]


def swept_overrides(overrides: Sequence[str], multirun_overrides: Sequence[str]) -> list[str]:
    """The job's ``overrides`` whose key the multirun's command line (``multirun_overrides``, as in its
    ``multirun.yaml``) sweeps or does not set at all (a sweeper's ``params``); all of them when either list
    cannot be parsed."""
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parser = OverridesParser.create()
        fixed = {o.get_key_element() for o in parser.parse_overrides(list(multirun_overrides))
                 if not o.is_sweep_override()}
        return [raw for raw, o in zip(overrides, parser.parse_overrides(list(overrides)))
                if o.get_key_element() not in fixed]
    except Exception:  # noqa: BLE001 - a name is never worth failing a run
        return list(overrides)


def _multirun_overrides(multirun_dir: str | Path) -> list[str] | None:
    """``hydra.overrides.task`` of the sweep's ``multirun.yaml`` (Hydra's basic sweeper writes it first)."""
    path = Path(multirun_dir) / "multirun.yaml"
    try:
        return list(OmegaConf.load(path).hydra.overrides.task)
    except Exception:  # noqa: BLE001 - missing or unreadable: the name falls back to all overrides
        return None


def run_name(cfg: Any, overrides: Sequence[str], multirun_dir: str | Path | None = None) -> str:
    """``logger.wandb.name``, else the job's overrides joined by commas (the swept ones in a multirun)."""
    if cfg.logger.wandb.name:
        return str(cfg.logger.wandb.name)
    overrides = list(overrides)
    if multirun_dir:
        sweep = _multirun_overrides(multirun_dir)
        if sweep is not None:
            overrides = swept_overrides(overrides, sweep) or overrides
    return ",".join(overrides) or "default"


def hydra_job() -> tuple[list[str], str]:
    """(the job's task overrides, its sweep directory in a multirun or ""), from Hydra's job config
    (([], "") outside a Hydra app)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return [], ""
    hc = HydraConfig.get()
    multirun = hc.mode is not None and hc.mode.name == "MULTIRUN"
    return list(hc.overrides.task), str(hc.sweep.dir) if multirun else ""


def wandb_init_kwargs(cfg: Any, run_dir: str | Path, overrides: Sequence[str],
                      multirun_dir: str | Path | None = None, identity: str = "") -> dict[str, Any]:
    """The ``wandb.init`` arguments of one job (see the module docstring); ``identity``: what the run computes
    (opgrpo.app.identity.run_identity), part of its W&B id."""
    w = cfg.logger.wandb
    run_dir = Path(run_dir).resolve()
    group = w.group or (sweep_group(multirun_dir) if multirun_dir else None)
    config = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True)
    config["job"] = {"run_dir": str(run_dir), "overrides": list(overrides),
                     "sweep_dir": str(multirun_dir or "")}
    return redact_obj({  # no URL credentials in the config or in the run's name (from the overrides)
        "project": w.project or None, "entity": w.entity or None, "group": group or None,
        "name": run_name(cfg, overrides, multirun_dir), "job_type": str(cfg.stage),
        "tags": [str(t) for t in [*cfg.tags, *w.tags]] or None, "config": config,
        "id": os.environ.get("WANDB_RUN_ID") or wandb_run_id(run_dir, identity), "resume": "allow",
        "dir": str(run_dir), "mode": w.mode, "reinit": "finish_previous",
    })


# ---- the logger section ------------------------------------------------------------------------------------
class LoggerBackend(Choice):
    """``logger.backend``: the run directory only, or also Weights & Biases."""

    csv = "csv"
    wandb = "wandb"


class WandbMode(Choice):
    """``logger.wandb.mode``."""

    offline = "offline"
    online = "online"
    disabled = "disabled"


LOGGER_BACKENDS = tuple(b.value for b in LoggerBackend)
WANDB_MODES = tuple(m.value for m in WandbMode)


@dataclass
class WandbConfig:
    """Weights & Biases settings (logger.backend=wandb)."""

    project: str = "opgrpo"
    """W&B project."""
    entity: str = ""
    """W&B entity (team or user; "" = your default)."""
    group: str = ""
    """Run group ("" = the sweep directory in a multirun, else none)."""
    name: str = ""
    """Run name ("" = the job's overrides, the swept ones in a multirun, e.g. ``reward.weights.coverage=0.1``;
    ``default`` without overrides)."""
    tags: List[str] = field(default_factory=list)
    """Tags, added to the top-level ``tags``."""
    mode: WandbMode = WandbMode.offline
    """offline, online or disabled."""


@dataclass
class LoggerConfig:
    """Metrics always go to the run directory (JSONL/CSV); W&B on top when backend=wandb (one run per job, see
    opgrpo.app.tracking); other trackers through the trainers' ``report_to``."""

    backend: LoggerBackend = LoggerBackend.csv
    """csv (run directory only) or wandb (also Weights & Biases: one run per job, started by the project)."""
    wandb: WandbConfig = field(default_factory=WandbConfig)
    """W&B settings."""
    report_to: List[str] = field(default_factory=list)
    """Other trackers the SFT and GRPO trainers also log to (transformers' integrations: tensorboard, trackio,
    mlflow, comet_ml, ...; each must be installed). W&B is ``backend=wandb``, not an entry here."""

    def problems(self) -> list[str]:
        import importlib.util

        p = Problems()
        p.enum("backend", self.backend, LoggerBackend)
        p.enum("wandb.mode", self.wandb.mode, WandbMode)
        if self.backend == "wandb" and importlib.util.find_spec("wandb") is None:
            p.add("backend", "wandb needs the wandb package, which is not installed (pip install wandb)")
        p.extend(report_to_problems(list(self.report_to)))
        return list(p)


# ---- the tracker ---------------------------------------------------------------------------------------------
class JobTracker:
    """One job's W&B run, started and finished by the project; does nothing while W&B is off, on ranks other
    than 0, and after ``wandb.init`` failed (the run directory still has every number)."""

    def __init__(self) -> None:
        self.run: Any = None
        """The ``wandb`` run (None: not tracking)."""

    @property
    def active(self) -> bool:
        return self.run is not None

    def start(self, cfg: Any, run_dir: str | Path, overrides: Sequence[str] | None = None,
              multirun_dir: str | Path | None = None, identity: str = "") -> JobTracker:
        """Start the job's run. ``overrides`` / ``multirun_dir`` default to Hydra's job config (``hydra_job``);
        pass ``multirun_dir=""`` for a single run."""
        if cfg.logger.backend != "wandb":
            return self
        if wandb_disabled_by_env():
            log.warning("logger.backend=wandb, but WANDB_MODE=disabled in the environment: W&B stays off")
            return self
        if not wandb_enabled(cfg) or not is_main_process():
            return self
        if overrides is None or multirun_dir is None:
            job_overrides, job_sweep = hydra_job()
            overrides = job_overrides if overrides is None else overrides
            multirun_dir = job_sweep if multirun_dir is None else multirun_dir
        kwargs = wandb_init_kwargs(cfg, run_dir, overrides, multirun_dir, identity)
        if redact_obj(list(sys.argv)) != list(sys.argv):  # W&B would record the command line, credentials and all
            import wandb

            kwargs["settings"] = wandb.Settings(x_disable_meta=True)
        try:
            import wandb

            self.run = wandb.init(**kwargs)
        except Exception as exc:  # noqa: BLE001 - W&B trouble must not cost the training run
            log.error("W&B run could not start (%s: %s); the numbers still go to %s", type(exc).__name__, exc,
                      run_dir)
            self.run = None
            return self
        log.info("W&B run %s (%s, group %s, id %s, mode %s)", kwargs["name"], kwargs["project"], kwargs["group"],
                 kwargs["id"], kwargs["mode"])
        return self

    def set_config(self, extra: Mapping[str, Any]) -> None:
        """Add to the run's config (e.g. the reward weights a stage actually used)."""
        if self.run is not None and extra:
            self.run.config.update(redact_obj(dict(extra)), allow_val_change=True)

    def log_summary(self, flat: Mapping[str, Any]) -> None:
        """Put final numbers (flat ``stage/key`` -> value, as ``RunDir.summary``) into the run's summary."""
        if self.run is None:
            return
        values = {k: v for k, v in flat.items() if isinstance(v, (int, float, str, bool))}
        if values:
            self.run.summary.update(values)

    def trainer_callbacks(self, stage: str) -> list:
        """Trainer callbacks that log a training stage into this run under ``<stage>/...`` against the step
        metric ``<stage>/train/global_step`` ([] when not tracking)."""
        if self.run is None:
            return []
        step = f"{stage}/train/global_step"
        self.run.define_metric(step)
        self.run.define_metric(f"{stage}/*", step_metric=step, step_sync=True)
        return [_stage_callback_class()(self.run, stage)]

    def finish(self, exit_code: int = 0) -> None:
        """Finish the run (a non-zero ``exit_code`` marks it failed); safe to call twice."""
        run, self.run = self.run, None
        if run is None:
            return
        try:
            run.finish(exit_code=exit_code)
        except Exception as exc:  # noqa: BLE001
            log.error("W&B run did not finish cleanly: %s: %s", type(exc).__name__, exc)


def reward_used(reward: Any, funcs: Sequence[Any], weights: Sequence[float], trl_aggregation: str) -> dict:
    """What a GRPO stage trained on, for the run's config (``set_config({"reward_used": ...})``): the component
    weights inside the OP reward, the aggregation, and TRL's weight of each reward function by name (with
    ``aggregation=total`` that is 1 for ``op_total`` and 0 for the components it only logs, the same in every run of a
    weight sweep: the swept weights are the ``weights`` here)."""
    return {
        "aggregation": str(reward.aggregation),
        "weights": asdict(reward.weights),
        "trl_aggregation": trl_aggregation,
        "trl_reward_weights": {getattr(f, "__name__", f"reward_{i}"): float(w)
                               for i, (f, w) in enumerate(zip(funcs, weights))},
    }


@contextmanager
def tracked_job(cfg: Any, run: RunDir, overrides: Sequence[str] | None = None,
                multirun_dir: str | Path | None = None) -> Iterator[JobTracker]:
    """A started ``JobTracker`` for the block; at its end the run directory's summary goes to the run's summary
    and the run finishes (exit code 1 when the block raised)."""
    tracker = JobTracker().start(cfg, run.path, overrides, multirun_dir, identity=run.identity)
    exit_code = 1
    try:
        yield tracker
        exit_code = 0
    finally:
        tracker.log_summary(run.summary)
        tracker.finish(exit_code)


def _rewrite(key: str) -> str:
    """A trainer log key as W&B shows it (transformers' ``rewrite_logs``): eval_x -> eval/x, test_x -> test/x,
    anything else -> train/x."""
    for prefix in ("eval_", "test_"):
        if key.startswith(prefix):
            return f"{prefix[:-1]}/{key[len(prefix):]}"
    return f"train/{key}"


@functools.cache
def _stage_callback_class():
    """``StageWandbCallback`` (built on first use: transformers is only imported by the training stages)."""
    from transformers import TrainerCallback

    class StageWandbCallback(TrainerCallback):
        """Log a trainer's numbers into the job's W&B run under ``<stage>/``: each ``on_log`` becomes one history
        row with ``<stage>/train/global_step``; the end-of-training totals go to the summary; the trainer's
        arguments go to the config under ``<stage>_args``."""

        def __init__(self, run: Any, stage: str):
            self.run, self.stage = run, stage

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.run.config.update({f"{self.stage}_args": redact_obj(args.to_sanitized_dict())},
                                       allow_val_change=True)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            numbers = {k: v for k, v in logs.items()
                       if isinstance(v, (int, float)) or (hasattr(v, "item") and getattr(v, "ndim", 1) == 0)}
            final = {f"{self.stage}/{_rewrite(k)}": _scalar(numbers.pop(k)) for k in FINAL_TRAIN_KEYS if k in numbers}
            if final:  # the end-of-training log: totals only (its epoch is the last row's)
                self.run.summary.update(final)
                numbers.pop("epoch", None)
            row = {f"{self.stage}/{_rewrite(k)}": _scalar(v) for k, v in numbers.items()}
            if row:
                row[f"{self.stage}/train/global_step"] = int(state.global_step)
                self.run.log(row)

    return StageWandbCallback


def _scalar(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
