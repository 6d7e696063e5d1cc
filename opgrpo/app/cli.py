"""The `opgrpo` console script: one Hydra app for every stage (see ``opgrpo --help``).

Hydra composes the config from ``conf/`` (found by path, see opgrpo.app.paths), this module validates it
before anything heavy is imported, sets up the run directory and hands over to opgrpo.app.stages. The
return value of the task function is the metric named by ``objective``, which Hydra sweepers optimise.
"""
from __future__ import annotations

import logging
import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from opgrpo.app.paths import PRIMARY, config_dir
from opgrpo.app.schema import register
from opgrpo.utils.runfiles import COMPLETED, RUNNING, STATUS_JSON

log = logging.getLogger("opgrpo")


def run(cfg: DictConfig) -> float | None:
    """Validate `cfg`, run its stage(s) in the Hydra output directory, return the objective metric."""
    from opgrpo.app.rundir import RunDir
    from opgrpo.app.validate import ConfigError, validate
    from opgrpo.training.distributed import export_submitit_env, setup_process_group

    export_submitit_env()  # a SLURM/submitit job with several tasks: one process group, every task a rank
    run_dir = RunDir(HydraConfig.get().runtime.output_dir)
    try:
        _check_launcher()
        _check_shared_run_dir()
        validate(cfg)
    except ConfigError as exc:
        run_dir.fail(exc)
        log.error("%s", exc)
        if HydraConfig.get().mode.name == "MULTIRUN":
            return None  # one bad run of a sweep must not stop the others; status.json says why
        raise SystemExit(2) from None
    setup_process_group(deepspeed=cfg.deepspeed.enabled, timeout_min=cfg.dist_timeout_min)
    run_dir.write_config(OmegaConf.to_yaml(cfg, resolve=True))
    run_dir.set_status(RUNNING, overrides=list(HydraConfig.get().overrides.task))
    from opgrpo.app.stages import run_stages

    try:
        run_stages(cfg, run_dir)
    except BaseException as exc:  # noqa: BLE001 - recorded, then re-raised or swallowed for sweeps
        run_dir.fail(exc)
        if HydraConfig.get().mode.name == "MULTIRUN" and not isinstance(exc, KeyboardInterrupt):
            log.exception("run failed; continuing the sweep (see %s)", run_dir.path / STATUS_JSON)
            return None
        raise
    run_dir.set_status(COMPLETED, overrides=list(HydraConfig.get().overrides.task))
    value = run_dir.objective(cfg.objective)
    log.info("run directory: %s", run_dir.path)
    if value is not None:
        log.info("objective %s = %.4f", cfg.objective, value)
    return value


def _check_launcher() -> None:
    """A cluster launcher only acts on a multirun: without -m the job would run here, on this machine."""
    hc = HydraConfig.get()
    target = str(hc.launcher.get("_target_", "")) if hc.launcher is not None else ""
    if hc.mode.name != "MULTIRUN" and "submitit" in target:
        from opgrpo.app.validate import ConfigError

        raise ConfigError(f"invalid configuration:\n  launcher: {target.rsplit('.', 1)[-1]} only submits multiruns; "
                          "without -m this run would start here, on this machine. Add -m (opgrpo -m ... launcher=slurm)")


def _check_shared_run_dir() -> None:
    """Every rank of a multi-process run must write into one run directory: a timestamped default could differ
    between ranks started a second apart, so a single run (not a multirun, whose directory the launcher fixes)
    needs ``OPGRPO_RUN_DIR`` or ``hydra.run.dir``."""
    from opgrpo.training.distributed import dist_info

    hc = HydraConfig.get()
    info = dist_info()
    if info.world_size <= 1 or hc.mode.name == "MULTIRUN" or os.environ.get("OPGRPO_RUN_DIR"):
        return
    if any(o.startswith("hydra.run.dir=") for o in hc.overrides.hydra):
        return
    from opgrpo.app.validate import ConfigError

    raise ConfigError(f"invalid configuration:\n  hydra.run.dir: a run with {info.world_size} processes needs one run "
                      "directory shared by every rank; set OPGRPO_RUN_DIR=<dir> (or hydra.run.dir=<dir>) in the "
                      "launch command")


def main() -> None:
    """Run the app; a multirun with failed or unfinished jobs exits with status 1 (see opgrpo.app.callbacks)."""
    from opgrpo.app.callbacks import LAST_MULTIRUN

    register()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app = hydra.main(config_path=str(config_dir()), config_name=PRIMARY.removesuffix(".yaml"), version_base="1.3")(run)
    app()
    if LAST_MULTIRUN.failed:
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
