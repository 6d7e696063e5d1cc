"""Setting up an Optuna study for ``opgrpo-optuna`` (opgrpo.app.optuna_cli): its storage (the journal file in
the study directory), its sampler, its objective(s) and direction(s), and the
overrides of each trial (base overrides, the spec's fixed settings, the sampled values).
"""
from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opgrpo.sweep.optuna.spec import StudySpec, format_value

log = logging.getLogger("opgrpo.optuna")

JOURNAL = "study.journal"
"""The study's journal file in the study directory (Optuna's JournalFileBackend)."""


def build_sampler(spec: StudySpec):
    if not spec.sampler:
        return None
    target = spec.sampler["_target_"]
    module, _, name = target.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    return cls(**{k: v for k, v in spec.sampler.items() if k != "_target_"})


def _objective_of(spec: StudySpec, base: Sequence[str]) -> str:
    """The objective every trial is scored by: an ``objective=`` base override, else the spec's ("" = each
    trial's own config ``objective``)."""
    for ov in reversed(list(base)):
        if ov.startswith("objective="):
            return ov.split("=", 1)[1].strip("'\"")
    return spec.objective


def objectives_of(spec: StudySpec, base: Sequence[str]) -> tuple[list[str], list[str]]:
    """(objectives, directions) of the study: the spec's ``objectives`` (a multi-objective study), else the one
    objective of :func:`_objective_of` ("" = each trial's own) with ``direction``."""
    if spec.objectives:
        return list(spec.objectives), list(spec.directions)
    return [_objective_of(spec, base)], [spec.direction]


def trial_overrides(spec: StudySpec, params: dict[str, Any], base: Sequence[str]) -> list[str]:
    """Base overrides, then the spec's fixed settings not already in base, then the trial's values."""
    base_keys = {b.split("=", 1)[0].lstrip("+~") for b in base}
    fixed = [f for f in spec.fixed if f.split("=", 1)[0] not in base_keys]
    return [*base, *fixed, *(f"{k}={format_value(v)}" for k, v in params.items())]


def split_launcher(base: Sequence[str], hydra_launcher: str = "") -> tuple[str, list[str]]:
    """A ``launcher=X`` base override (X not local) becomes the trials' Hydra launcher (as ``--launcher X``)."""
    rest = []
    for ov in base:
        key, _, value = ov.partition("=")
        if key == "launcher" and value not in ("local", "basic"):
            hydra_launcher = hydra_launcher or value
            continue
        rest.append(ov)
    return hydra_launcher, rest


def open_storage(study_dir: Path, url: str = ""):
    """The study's storage: ``url`` when given, else the journal file ``<study_dir>/study.journal``."""
    if url:
        return url
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(study_dir / JOURNAL)))
