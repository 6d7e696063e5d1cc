"""Experiment trackers the HF trainers log to: which ones (``report_to``) and the W&B settings they read.

Metrics always go to the run directory (opgrpo.app.rundir); ``logger.backend=wandb`` adds Weights & Biases
through transformers' ``WandbCallback``, which reads its settings from ``WANDB_*`` environment variables.
"""
from __future__ import annotations

import logging
import os

from omegaconf import DictConfig

from opgrpo.app.rundir import RunDir

log = logging.getLogger("opgrpo.app.tracking")


def report_to(cfg: DictConfig) -> list[str]:
    """The trainers' ``report_to`` list for ``logger.backend`` (none while W&B is disabled)."""
    return ["wandb"] if report_to_wandb(cfg) else []


def wandb_disabled_by_env() -> bool:
    """``WANDB_MODE=disabled`` in the environment: the user switched W&B off; no config value turns it back on."""
    return os.environ.get("WANDB_MODE", "").strip().lower() == "disabled"


def report_to_wandb(cfg: DictConfig) -> bool:
    return cfg.logger.backend == "wandb" and cfg.logger.wandb.mode != "disabled" and not wandb_disabled_by_env()


def setup_wandb(cfg: DictConfig, run: RunDir) -> None:
    """Hand logger.wandb.* to the HF trainers' W&B callback (it reads these variables at wandb.init).

    ``WANDB_MODE=disabled`` in the environment wins over ``logger.wandb.mode``: it is never overwritten."""
    if cfg.logger.backend != "wandb":
        return
    w = cfg.logger.wandb
    if wandb_disabled_by_env():
        log.warning("logger.backend=wandb, but WANDB_MODE=disabled in the environment: W&B stays off")
        return
    env = {"WANDB_PROJECT": w.project, "WANDB_ENTITY": w.entity, "WANDB_RUN_GROUP": w.group,
           "WANDB_NAME": w.name or run.path.name, "WANDB_TAGS": ",".join([*cfg.tags, *w.tags]),
           "WANDB_MODE": w.mode, "WANDB_DIR": str(run.path)}
    for key, value in env.items():
        if value:
            os.environ[key] = str(value)
