"""Experiment trackers the HF trainers log to: which ones (``report_to``) and the W&B settings they read.

Metrics always go to the run directory (opgrpo.app.rundir); ``logger.backend=wandb`` adds Weights & Biases
through transformers' ``WandbCallback``, which reads its settings from ``WANDB_*`` environment variables.
"""
from __future__ import annotations

import os

from omegaconf import DictConfig

from opgrpo.app.rundir import RunDir


def report_to(cfg: DictConfig) -> list[str]:
    """The trainers' ``report_to`` list for ``logger.backend``."""
    return ["wandb"] if cfg.logger.backend == "wandb" else []


def setup_wandb(cfg: DictConfig, run: RunDir) -> None:
    """Hand logger.wandb.* to the HF trainers' W&B callback (it reads these variables at wandb.init)."""
    if cfg.logger.backend != "wandb":
        return
    w = cfg.logger.wandb
    env = {"WANDB_PROJECT": w.project, "WANDB_ENTITY": w.entity, "WANDB_RUN_GROUP": w.group,
           "WANDB_NAME": w.name or run.path.name, "WANDB_TAGS": ",".join([*cfg.tags, *w.tags]),
           "WANDB_MODE": w.mode, "WANDB_DIR": str(run.path)}
    for key, value in env.items():
        if value:
            os.environ[key] = str(value)
