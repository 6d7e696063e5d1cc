"""The `opgrpo` console script: one Hydra app for every stage (see ``opgrpo --help``).

Hydra composes the config from ``conf/`` (found by path, see opgrpo.app.paths; an enum setting given none of its
choices fails right there, in Hydra's words, naming the key and the choices), this module builds the run's typed
config and its context once and validates them (opgrpo.app.validate.check) before anything heavy is imported, sets up
the run directory and hands over to opgrpo.app.stages. The return value of the task function is the metric named by
``objective``, which Hydra sweepers optimise. Every start-up failure (a check of opgrpo.app.validate, a ``???`` or an
interpolation that does not resolve) is one ``ConfigError`` naming its key(s), logged and written to ``status.json``
(failed), exit status 2. A multirun checks every arm the same way before its first job starts
(opgrpo.app.callbacks). No secret reaches what the run writes: credentials in a URL and a key typed where a ``*_env``
setting wants a variable's name are hidden (opgrpo.utils.redact) in config.yaml, status.json, every log line and
start-up error, and in Hydra's own ``.hydra/`` copy, which Hydra writes before this code runs and rank 0 rewrites
(``redact_hydra_files``). The ``--help`` text (``hydra.help`` in conf/opgrpo.yaml) lists the stages from the registry
(``help_stages``).
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from opgrpo.app.paths import PRIMARY, config_dir
from opgrpo.app.runconfig import ConfigError, stages_of
from opgrpo.app.schema import register
from opgrpo.utils.redact import RedactingFilter, redact
from opgrpo.utils.runfiles import COMPLETED, PREEMPTED, RUNNING, STATUS_JSON

log = logging.getLogger("opgrpo")


def run(cfg: DictConfig) -> float | None:
    """Validate `cfg`, run its stage(s) in the Hydra output directory, return the objective metric."""
    from opgrpo.app.rundir import RunDir
    from opgrpo.app.validate import check
    from opgrpo.training.distributed import export_submitit_env, setup_process_group

    export_submitit_env()  # a SLURM/submitit job with several tasks: one process group, every task a rank
    run_dir = RunDir(HydraConfig.get().runtime.output_dir)
    _redact_logs()
    if run_dir.main:
        redact_hydra_files()
    try:
        _check_launcher()
        _check_shared_run_dir()
        ctx = check(cfg, run_dir)  # the typed config, built once, and the run's context (its data parsed once)
        config_yaml = OmegaConf.to_yaml(cfg, resolve=True)  # the resolved config.yaml
    except (ConfigError, OmegaConfBaseException) as exc:
        exc = _startup_error(exc, cfg)
        run_dir.fail(exc)
        log.error("%s", exc)
        if HydraConfig.get().mode.name == "MULTIRUN":
            return None  # one bad run of a sweep must not stop the others; status.json says why
        raise SystemExit(2) from None
    setup_process_group(deepspeed=ctx.cfg.deepspeed.enabled, timeout_min=ctx.cfg.dist_timeout_min)
    from opgrpo.app.reuse import live_job
    from opgrpo.training.distributed import broadcast

    other = broadcast(live_job(run_dir.path, ctx.cfg.store.stale_after_s) if run_dir.main else "")
    if other:  # two jobs writing one run directory would mix their checkpoints and numbers; its status is theirs
        log.error("%s", other)
        if HydraConfig.get().mode.name == "MULTIRUN":
            return None
        raise SystemExit(2)
    ctx.store_dir = _store_dir(ctx.cfg.store.dir)
    run_dir.write_config(config_yaml)
    run_dir.set_status(RUNNING, overrides=list(HydraConfig.get().overrides.task))
    from opgrpo.app.stages import run_stages
    from opgrpo.training.preempt import Preempted, leave
    from opgrpo.utils.locks import Heartbeat
    from opgrpo.utils.runfiles import HEARTBEAT

    try:
        with Heartbeat(run_dir.path / HEARTBEAT) if run_dir.main else contextlib.nullcontext():
            run_stages(ctx)
    except ConfigError as exc:  # a stage refused what the run directory holds (resume=true with other settings)
        run_dir.fail(exc)
        log.error("%s", exc)
        if HydraConfig.get().mode.name == "MULTIRUN":
            return None
        raise SystemExit(2) from None
    except Preempted as exc:  # a checkpoint of the step is saved: record it, end as the launcher expects (143, ...)
        run_dir.set_status(PREEMPTED, overrides=list(HydraConfig.get().overrides.task), **exc.record())
        log.warning("%s", exc)
        leave(exc, is_main=run_dir.main)
    except BaseException as exc:  # noqa: BLE001 - recorded, then re-raised or swallowed for sweeps
        run_dir.fail(exc)
        if HydraConfig.get().mode.name == "MULTIRUN" and not isinstance(exc, KeyboardInterrupt):
            log.exception("run failed; continuing the sweep (see %s)", run_dir.path / STATUS_JSON)
            return None
        from opgrpo.utils.errors import RefusedError

        if isinstance(exc, RefusedError):  # a refusal whose message says it all (mixed estimators): no traceback
            log.error("%s", redact(str(exc)))
            raise SystemExit(1) from None
        if isinstance(exc, Exception) and _holds_secret(exc):  # Hydra would print it and the overrides as they are
            sys.stderr.write(redact(traceback.format_exc()))
            raise SystemExit(1) from None
        raise
    # a failed Hub push leaves the run completed (its results stand) with the push recorded: ctx.hub_push
    run_dir.set_status(COMPLETED, overrides=list(HydraConfig.get().overrides.task),
                       **({"hub": ctx.hub_push} if ctx.hub_push else {}))
    value = run_dir.objective(ctx.cfg.objective)
    log.info("run directory: %s", run_dir.path)
    if value is not None:
        log.info("objective %s = %.4f", ctx.cfg.objective, value)
    return value


def _store_dir(setting: str) -> str:
    """The store of stages shared between jobs (``store.dir``): "" = ``<sweep dir>/.stages`` in a multirun and none in
    a single run, "off" = none, else that path."""
    if setting == "off":
        return ""
    if setting:
        return str(Path(setting).expanduser().resolve())
    hc = HydraConfig.get()
    return str(Path(hc.sweep.dir).resolve() / ".stages") if hc.mode.name == "MULTIRUN" else ""


NO_EXPERIMENT_HINT = (
    "  experiment: none chosen, so these are the bare defaults: the paper's method settings (Qwen2.5-3B-Instruct, "
    "1,024 prompts per GRPO step, SFT batches of 256) on the small sample data. Pick a preset: experiment=cpu_demo "
    "(CPU, sample data, minutes) or experiment=paper benchmark.train_file=... benchmark.test_file=... (GPUs); "
    "see opgrpo --help")


def _startup_error(exc: Exception, cfg: DictConfig) -> Exception:
    """The start-up failure as a ConfigError naming its key: an OmegaConf error no check foresaw (a ``???`` value or
    an interpolation that fails to resolve) becomes one; a run that would train without an ``experiment=`` preset
    gets the hint to pick one (the bare defaults are the paper's settings on the sample data)."""
    if not isinstance(exc, ConfigError):
        exc = ConfigError(f"invalid configuration:\n  {getattr(exc, 'full_key', '') or 'config'}: "
                          f"{str(exc).splitlines()[0]}")
    if redact(str(exc)) != str(exc):  # a URL's credentials in a message that quotes a value
        exc = ConfigError(redact(str(exc)))
    try:
        stages = set(stages_of(cfg))
    except OmegaConfBaseException:
        stages = set()
    if HydraConfig.get().runtime.choices.get("experiment") in (None, "null") and {"estimator", "sft", "grpo"} & stages:
        exc = ConfigError(f"{exc}\n{NO_EXPERIMENT_HINT}")
    return exc


def _holds_secret(exc: Exception) -> bool:
    """Whether the failure's message or the job's overrides (which Hydra prints with a failure) hold a secret."""
    texts = [str(exc), *HydraConfig.get().overrides.task]
    return any(redact(t) != t for t in texts)


def _redact_logs() -> None:
    """Every handler of the root logger (Hydra's console and cli.log) hides secrets (opgrpo.utils.redact)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


HYDRA_FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")
"""What Hydra writes into the job's ``hydra.output_subdir`` (``.hydra/``) before the task function runs."""


def redact_hydra_files() -> None:
    """Rewrite Hydra's copy of the config (``.hydra/*.yaml``; a multirun's ``multirun.yaml`` too) without secrets:
    Hydra wrote it from the command line before any check of ours ran. Rank 0 only (the other ranks write none)."""
    hc = HydraConfig.get()
    files = [Path(hc.runtime.output_dir) / hc.output_subdir / name for name in HYDRA_FILES] if hc.output_subdir else []
    if hc.mode.name == "MULTIRUN":
        files.append(Path(hc.sweep.dir) / "multirun.yaml")
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        clean = redact(text)
        if clean != text:  # another job of the sweep may rewrite multirun.yaml at the same time: replace it whole
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(clean, encoding="utf-8")
            os.replace(tmp, path)


def _check_launcher() -> None:
    """A cluster launcher only acts on a multirun: without -m the job would run here, on this machine."""
    hc = HydraConfig.get()
    target = str(hc.launcher.get("_target_", "")) if hc.launcher is not None else ""
    if hc.mode.name != "MULTIRUN" and "submitit" in target:
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
    raise ConfigError(f"invalid configuration:\n  hydra.run.dir: a run with {info.world_size} processes needs one run "
                      "directory shared by every rank; set OPGRPO_RUN_DIR=<dir> (or hydra.run.dir=<dir>) in the "
                      "launch command")


def first_clause(doc: str | None, width: int = 96) -> str:
    """What ``--help`` says of a stage: its docstring's first paragraph up to the first ". ", "; " or ": " outside
    brackets after at least 40 characters, on one line, without reST markup; longer than ``width``, without its
    parentheses, then cut at a word."""
    text = " ".join((doc or "").strip().split("\n\n")[0].split()).replace("``", "")
    depth, cut = 0, len(text)
    for i, ch in enumerate(text):
        depth += (ch in "([") - (ch in ")]")
        if depth == 0 and i >= 40 and ch in ".;:" and (i + 1 == len(text) or text[i + 1] == " "):
            cut = i
            break
    clause = text[:cut].rstrip(".")
    while len(clause) > width and re.search(r" ?\([^()]*\)", clause):
        clause = re.sub(r" ?\([^()]*\)", "", clause, count=1)
    return clause if len(clause) <= width else clause[:width].rsplit(" ", 1)[0] + " ..."


def help_stages() -> str:
    """The ``Stages`` block of ``opgrpo --help``, one line per stage of the registry (opgrpo.app.stages.STAGES) with
    the first clause of its docstring, so a new stage shows up without editing the help text (the
    ``opgrpo_help_stages`` resolver in ``hydra.help.header``)."""
    try:
        from opgrpo.app.stages import PIPELINE_STAGES, STAGES
    except Exception as exc:  # noqa: BLE001 - --help must print even when a stage module cannot be imported
        return f"  (the stage registry opgrpo/app/stages.py could not be imported: {type(exc).__name__}: {exc})"
    lines = [f"  {name:<34}  {first_clause(func.__doc__)}" for name, func in STAGES.items()]
    lines.append(f"  {'pipeline':<34}  the stages listed in pipeline, in order (any of {', '.join(PIPELINE_STAGES)})")
    return "\n".join(lines).replace("$", "$$")  # Hydra fills the help template with string.Template


def main() -> None:
    """Run the app; a multirun with failed or unfinished jobs exits with status 1, one with an invalid arm with status
    2 before any job starts (opgrpo.app.callbacks)."""
    register()
    if not OmegaConf.has_resolver("opgrpo_help_stages"):
        OmegaConf.register_new_resolver("opgrpo_help_stages", help_stages)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app = hydra.main(config_path=str(config_dir()), config_name=PRIMARY.removesuffix(".yaml"), version_base="1.3")(run)
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
