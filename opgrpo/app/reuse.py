"""Reuse, resume and sharing of pipeline stages, decided from their manifests (never from paths alone).

Before a pipeline stage runs, rank 0 builds the manifest of its inputs (opgrpo.app.identity) and ``plan_stage``
decides, saying what it did in one log line:

- **reuse** the stage's folder in this run directory when its manifest is complete and its inputs match;
- **reuse** ``init_from``'s completed estimator / SFT stage (the user chose that run);
- **reuse** a shared stage from the store (``store.dir``, by default ``<sweep dir>/.stages`` in a multirun) found by
  its input fingerprint; when another job is computing it (it holds ``<entry>.lock`` with a heartbeat,
  opgrpo.utils.locks) wait for it; a silent holder is taken over; the job that computes it publishes its folder
  into the store (temp name, then rename) and links it back into its run directory;
- **resume** a training stage (SFT, GRPO) interrupted with the same inputs (``max_steps`` may differ) from its last
  checkpoint; ``resume=true`` refuses other inputs, naming the keys; the estimator's mining cache resumes likewise;
- else **run** it afresh, after moving what the folder held aside to ``.superseded/`` with a WARNING naming what
  differs (``resume=false`` always runs afresh).

``finish_stage`` writes the completed manifest (products, the stage's summary numbers, the output's fingerprint).
``prepare_run`` guards the directory against a second live job, keeps in the run's summary only the numbers of stages
whose manifests match the config, and takes ``init_from``'s estimator and SFT policy.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opgrpo.app.context import RunContext
from opgrpo.app.identity import (
    PRODUCTS,
    STAGE_KEYS,
    UPSTREAM,
    extend_keys,
    model_identity,
    stage_keys,
    stage_manifest,
)
from opgrpo.app.runconfig import ConfigError
from opgrpo.utils.manifest import DONE, Manifest, differences, read_manifest, text_hash

log = logging.getLogger("opgrpo.app.reuse")

SUPERSEDED = ".superseded"
"""Where a run directory keeps stage folders computed from other inputs (moved aside, never deleted)."""
TRAINING = ("sft", "grpo")
"""Stages that resume from checkpoints."""
INIT_FROM_STAGES = ("estimator", "sft")
"""The stages ``init_from`` provides."""
DEPENDS_ON = {"grpo": ("estimator", "sft"), "eval": ("estimator", "sft", "grpo"), "eval_base": ("estimator",)}
"""Per stage, the earlier stages whose products it used (the reward's estimator, the policy it trained or
evaluated): a stage computed again makes their numbers stale."""
_HELD: dict[str, Any] = {}  # stage -> the store lock this process holds while it computes the stage (rank 0)


@dataclass
class Plan:
    """What ``plan_stage`` decided for one stage (broadcast to every rank)."""

    action: str  # "reuse" or "run"
    resume: bool = False
    products: dict[str, str] = field(default_factory=dict)  # RunContext attribute -> absolute path
    summary: dict[str, Any] = field(default_factory=dict)
    manifest: Manifest | None = None
    error: str = ""


def _stage_dir(ctx: RunContext, name: str) -> Path:
    return ctx.run.path / name


def upstream_paths(name: str, ctx: RunContext) -> dict[str, str]:
    """The artefacts stage ``name`` uses (``UPSTREAM``): the reward's estimator and the policy it starts from or
    evaluates."""
    wanted = UPSTREAM.get(name, ())
    out = {}
    if "estimator" in wanted:
        out["estimator"] = ctx.encoder_path()
    if "policy" in wanted:
        e = ctx.cfg.eval
        out["policy"] = (e.model_path or ctx.start_policy()) if name == "eval_base" else \
            (e.model_path or ctx.current_policy()) if name == "eval" else ctx.current_policy()
    return out


def _complete(manifest: Manifest | None, folder: Path) -> bool:
    return bool(manifest and manifest.state == DONE
                and all((folder / rel).exists() for rel in manifest.products.values()))


def _reuse(folder: Path, manifest: Manifest, how: str) -> Plan:
    log.info("stage %s: %s (inputs %s)", manifest.stage, how, manifest.fingerprint)
    return Plan("reuse", products={k: str(folder / rel) for k, rel in manifest.products.items()},
                summary=dict(manifest.summary), manifest=manifest)


def _supersede(ctx: RunContext, name: str, why: str) -> None:
    folder = _stage_dir(ctx, name)
    if not (folder.exists() or folder.is_symlink()):
        return
    dest = ctx.run.path / SUPERSEDED / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(folder, dest)
    log.warning("stage %s: %s held a stage %s; moved aside to %s", name, folder, why, dest)


def _why(old: Manifest | None, new: Manifest, ignore: tuple[str, ...] = ()) -> list[str]:
    if old is None:
        return ["no manifest (made by an older opgrpo, or by hand): what produced it is unknown"]
    return differences(old, new, ignore) or ([f"state {old.state}"] if old.state != DONE else [])


def _init_from(ctx: RunContext, name: str, new: Manifest) -> Plan | None:
    """``init_from``'s completed stage ``name`` (its manifest; a folder from before manifests with a WARNING)."""
    folder = Path(ctx.cfg.init_from).expanduser() / name
    old = read_manifest(folder)
    if _complete(old, folder):
        diff = differences(old, new)
        if diff:
            log.info("stage %s from init_from differs from this run's settings (kept, as init_from asks): %s", name,
                     "; ".join(diff))
        return _reuse(folder, old, f"taken from init_from {folder}")
    rel = PRODUCTS[name]
    if all((folder / p).exists() for p in rel.values()):
        log.warning("stage %s: init_from's %s has no completed manifest (an older opgrpo); used as it is", name,
                    folder)
        return Plan("reuse", products={k: str(folder / p) for k, p in rel.items()})
    return None


def plan_stage(name: str, ctx: RunContext) -> Plan:
    """Decide (rank 0) whether stage ``name`` is reused, resumed or run afresh; moves stale folders aside and takes
    the store's lock when this job is to compute a shared stage."""
    cfg = ctx.cfg
    new = stage_manifest(name, cfg, upstream_paths(name, ctx))
    if cfg.init_from and name in INIT_FROM_STAGES:
        plan = _init_from(ctx, name, new)
        if plan is not None:
            return plan
    folder = _stage_dir(ctx, name)
    if folder.is_symlink() and not folder.exists():  # a link to a store entry that was removed
        folder.unlink()
    old = read_manifest(folder)
    if cfg.resume is not False and _complete(old, folder) and old.fingerprint == new.fingerprint:
        return _reuse(folder, old, f"reused {folder}: completed with the same inputs")
    shared = _store_plan(name, ctx, new)
    if shared is not None:
        return shared
    exists = folder.exists() and any(folder.iterdir())
    resume = keep = False
    if exists and cfg.resume is not False:
        diff = _why(old, new, extend_keys(new)) if old is None else differences(old, new, extend_keys(new))
        # a stage linked from the store is shared: never trained further in place
        checkpoints = any(folder.glob("checkpoint-*")) and not folder.is_symlink()
        if not diff and old.state != DONE:  # interrupted with the same inputs (max_steps may differ)
            resume, keep = name in TRAINING, True
            log.info("stage %s: continuing %s (interrupted with the same inputs%s)", name, folder,
                     ", from its last checkpoint" if resume else ", its caches kept")
        elif not diff and name in TRAINING and checkpoints:  # completed; extended (max_steps) from its checkpoint
            resume = keep = True
            log.info("stage %s: extending %s from its last checkpoint (%s changed)", name, folder,
                     ", ".join(differences(old, new)))
        elif cfg.resume and name in TRAINING:
            why = ("it completed and kept no checkpoint to extend from" if not diff else
                   "it was run with other settings; resume=true continues only the same training")
            raise ConfigError(f"invalid configuration:\n  resume: stage {name} in {folder}: {why}:\n    "
                              + "\n    ".join(diff or differences(old, new)) + "\n  (resume=null moves it aside "
                              "and trains afresh; resume=false always does)")
    if exists and not keep:
        _supersede(ctx, name, "computed from other inputs (" + "; ".join(_why(old, new)) + ")"
                   if cfg.resume is not False else "of an earlier attempt (resume=false runs afresh)")
    new.products = dict(PRODUCTS.get(name, {}))
    new.write(folder)
    return Plan("run", resume=resume, manifest=new)


def apply_plan(name: str, plan: Plan, ctx: RunContext) -> None:
    """On every rank: take a reused stage's products (estimator path, policy path) and numbers; set whether the
    training stage resumes."""
    for attr, path in plan.products.items():
        setattr(ctx, attr, path)
    ctx.resume_stage = plan.resume
    if plan.action == "reuse" and plan.summary:
        ctx.run.restore(plan.summary)


def finish_stage(name: str, ctx: RunContext, plan: Plan) -> None:
    """Rank 0, after the stage ran: the completed manifest (products, numbers, output fingerprint); a shared stage
    is published to the store and linked back."""
    folder = _stage_dir(ctx, name)
    m = plan.manifest
    m.state = DONE
    m.products = dict(PRODUCTS.get(name, {}))
    outputs = [model_identity(str(folder / rel)) for rel in m.products.values()]
    m.output = text_hash(outputs or {k: v for k, v in ctx.run.summary.items() if k.startswith(f"{name}/")})
    # lineage in the summary (and so in W&B and the report): what this stage was computed from and what it made
    ctx.run.restore({f"{name}/lineage/inputs": m.fingerprint, f"{name}/lineage/output": m.output,
                     **{f"{name}/lineage/{k}": v for k, v in m.upstream.items()},
                     **{f"{name}/lineage/{k}": m.keys[k] for k in m.data if k in m.keys}})
    m.summary = {k: v for k, v in ctx.run.summary.items() if k.startswith(f"{name}/")}
    m.write(folder)
    held = _HELD.pop(name, None)
    if held is not None:
        from opgrpo.utils.locks import publish_dir

        lock, entry = held
        try:
            publish_dir(folder, entry)
            os.symlink(entry, folder, target_is_directory=True)
            log.info("stage %s: published to the store %s", name, entry)
        finally:
            lock.release()


# ---- the store shared between a sweep's jobs -----------------------------------------------------------------
def _store_plan(name: str, ctx: RunContext, new: Manifest) -> Plan | None:
    """Reuse stage ``name`` from the store, waiting for a job that computes it; None when this job must compute it
    (then it holds the entry's lock, released by ``finish_stage`` or ``release_held``) or there is no store."""
    root = ctx.store_dir
    if not root or name not in ctx.cfg.store.stages or ctx.cfg.resume is False:
        return None
    from opgrpo.utils.locks import StageLock

    entry = Path(root) / f"{name}-{new.fingerprint}"
    entry.parent.mkdir(parents=True, exist_ok=True)

    def ready() -> bool:
        return _complete(read_manifest(entry), entry)

    lock = StageLock(entry.with_name(entry.name + ".lock"), stale_after=ctx.cfg.store.stale_after_s)
    if lock.acquire(ready=ready, on_wait=lambda owner: log.info(
            "stage %s: waiting for %s, which computes it for the store (%s)", name, owner, entry)):
        _HELD[name] = (lock, entry)
        return None
    folder = _stage_dir(ctx, name)
    if not (folder.is_symlink() and Path(os.readlink(folder)) == entry):
        _supersede(ctx, name, "computed apart from the store's copy")
        os.symlink(entry, folder, target_is_directory=True)
    return _reuse(folder, read_manifest(entry), f"reused from the store {entry}")


def release_held() -> None:
    """Release the store locks this process holds (a stage that failed): another job may compute it."""
    while _HELD:
        _, (lock, _) = _HELD.popitem()
        lock.release()


# ---- the run as a whole --------------------------------------------------------------------------------------
def prepare_run(ctx: RunContext, stages: list[str]) -> None:
    """Rank 0, before the first stage: the numbers in the run's summary are those of the stages (not run now) whose
    manifests match this config; ``init_from``'s estimator and SFT policy become this run's."""
    run, cfg = ctx.run, ctx.cfg
    for name in STAGE_KEYS:
        if name in stages:
            continue
        redone = [s for s in DEPENDS_ON.get(name, ()) if s in stages]
        if redone:  # its numbers were computed from products this run replaces
            log.info("%s/ was computed from the %s this run computes again: its numbers are not in this run's "
                     "summary", name, " and ".join(redone))
            continue
        folder = run.path / name
        m = read_manifest(folder)
        if not _complete(m, folder):
            continue
        diff = {k for k, v in stage_keys(name, cfg).items() if m.keys.get(k) != v}
        if diff:
            log.info("%s/ was computed with other settings (%s): its numbers are not in this run's summary", name,
                     ", ".join(sorted(diff)[:5]))
        else:
            run.restore(m.summary)
    if cfg.init_from:
        for name in INIT_FROM_STAGES:
            plan = _init_from(ctx, name, stage_manifest(name, cfg))
            if plan is not None and name not in stages:
                for attr, path in plan.products.items():
                    setattr(ctx, attr, path)
    run.restore({})


def init_from_problem(cfg: Any, stages: list[str]) -> str:
    """Why ``init_from`` cannot be used ("" when it can): not a directory, no completed estimator or SFT stage in it,
    or no stage of this run reads them."""
    root = Path(cfg.init_from).expanduser()
    if not root.is_dir():
        return f"no such run directory {cfg.init_from!r}"
    found = [n for n in INIT_FROM_STAGES if _complete(read_manifest(root / n), root / n)
             or all((root / n / p).exists() for p in PRODUCTS[n].values())]
    if not found:
        return f"{cfg.init_from!r} holds no completed estimator or SFT stage (estimator/model, sft/final)"
    readers = {"estimator", "sft", "grpo", "eval", "eval_base", "generate", "pope"}
    if not readers & set(stages):
        return (f"nothing in stage(s) {', '.join(stages)} reads it (it gives its estimator and SFT policy to "
                "estimator, sft, eval_base, grpo, eval, generate, pope)")
    return ""



def live_job(run_path: Path, stale_after: float) -> str:
    """Why this run directory is taken ("" when it is not): its status says running and its heartbeat is fresh from
    another live process (opgrpo.utils.runfiles.live_status). A job that died without a word (its beat stopped) is
    reported as interrupted and replaced."""
    from opgrpo.utils.locks import beat_age, beat_owner
    from opgrpo.utils.runfiles import (
        HEARTBEAT,
        INTERRUPTED,
        RUNNING,
        RunFileError,
        live_status,
        read_status,
    )

    try:
        status = read_status(run_path)
    except RunFileError:
        return ""
    beat, state = run_path / HEARTBEAT, live_status(run_path, status, stale_after)
    if state == RUNNING:
        owner = ":".join(map(str, beat_owner(beat) or ("?",)))
        return (f"run directory {run_path} is in use by {owner} (status running, "
                f"heartbeat {beat_age(beat):.0f} s ago); wait for it, or choose another hydra.run.dir")
    if state == INTERRUPTED:
        log.warning("the previous attempt in %s was interrupted (status running since %s, no heartbeat for %.0f s)",
                    run_path, status.get("time", "?"), beat_age(beat))
    return ""
