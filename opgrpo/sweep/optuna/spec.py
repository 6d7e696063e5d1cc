"""The search space of an Optuna study, read from a spec file laid out as ``sweeps/optuna.yaml``.

``load_spec(path, parse)`` reads ``hydra.sweeper.{direction, objectives, study_name, n_trials, n_jobs, storage,
sampler, params, max_failure_rate}``, the top-level ``objective`` (optional: without it each trial is scored by its
own config's ``objective``, e.g. ``experiment=cpu_demo``'s reward-based one) and every other setting of the file
into a :class:`StudySpec`: ``params`` in Hydra's sweep syntax become Optuna distributions (``parse``, the caller's
parser of that syntax: ``opgrpo.app.optuna_cli.distribution``), the rest become overrides that every trial gets.
``hydra.sweeper.objectives`` (a list of ``summary.json`` keys) with ``direction`` as one entry per objective makes it
a multi-objective study (e.g. coverage rate and uniqueness rate, both maximised). ``opgrpo.sweep.optuna.run`` runs
the study. No Hydra here: the app parses the sweep syntax and finds the preset files (``opgrpo.app.optuna_cli``).
An objective measured at each trial's own reward config (``eval/reward/*``) while the space moves that config is
warned about (:func:`objective_warnings`): rank by the reference numbers, ``eval/reference/*``.
"""
from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opgrpo.utils.jsonio import flatten

__all__ = ["DEFAULT_OBJECTIVE", "DIRECTIONS", "StudySpec", "format_value", "load_spec", "objective_warnings"]

log = logging.getLogger("opgrpo.optuna")

DEFAULT_OBJECTIVE = ""
"""No objective in the spec: each trial's own ``objective`` setting (read from its resolved config.yaml)."""
DIRECTIONS = ("maximize", "minimize")
_PLAIN = re.compile(r"^[A-Za-z0-9_./\-:+@]+$")


@dataclass
class StudySpec:
    """What a spec file says: the search space, fixed overrides and how to run the study."""

    space: dict[str, Any]  # name -> optuna distribution
    fixed: list[str] = field(default_factory=list)  # overrides every trial gets (the spec's own settings)
    objective: str = DEFAULT_OBJECTIVE  # one objective; "" = each trial's own config ``objective``
    direction: str = "maximize"
    objectives: list[str] = field(default_factory=list)  # 2+ summary.json keys: a multi-objective study
    directions: list[str] = field(default_factory=list)  # one per entry of ``objectives``
    study_name: str = "opgrpo"
    n_trials: int = 20
    n_jobs: int = 1  # trials this driver runs at once (threads; more drivers on one study add more)
    storage: str = ""  # an Optuna storage URL; "" = the journal file <study-dir>/study.journal
    max_failure_rate: float = 1.0
    sampler: dict[str, Any] = field(default_factory=dict)  # {"_target_": "optuna.samplers.X", **kwargs}

    def set_objectives(self, objectives: list[str], directions: list[str] | None = None) -> None:
        """One objective (``objective``/``direction``) or several (``objectives``/``directions``), checked:
        directions default to maximize, one direction applies to every objective."""
        objectives = [str(o) for o in objectives if str(o)]
        directions = [str(d).lower() for d in (directions or [])] or [self.direction]
        bad = [d for d in directions if d not in DIRECTIONS]
        if bad:
            raise ValueError(f"direction must be maximize or minimize, got {bad[0]!r}")
        if len(directions) == 1:
            directions = directions * max(1, len(objectives))
        if objectives and len(directions) != len(objectives):
            raise ValueError(f"direction: {len(directions)} directions for {len(objectives)} objectives "
                             f"({', '.join(objectives)}); give one, or one per objective")
        if len(set(objectives)) != len(objectives):
            raise ValueError(f"objectives: {objectives} names an objective twice")
        if len(objectives) >= 2:
            self.objectives, self.directions = objectives, directions
        else:
            self.objectives, self.directions = [], []
            if objectives:
                self.objective = objectives[0]
            self.direction = directions[0]
        for text in objective_warnings(self.objectives or [self.objective], self.space):
            log.warning("%s", text)


OWN_PREFIXES = ("eval/reward/", "eval_base/reward/")
"""Summary keys of the numbers at each run's own reward config (``reward.tau_*``, weights, buckets)."""
REFERENCE_PREFIXES = ("eval/reference/", "eval_base/reference/")
"""Summary keys of the numbers by the reference rule (opgrpo.reward.evaluation): comparable between trials."""
_NOT_SCORED = ("aggregation", "gdpo_weights", "extra_funcs", "extra_weights", "encode_batch_size", "estimator_path")
_RULE_KEYS = ("estimator.calibration.", "report.reference_weights", "reward.masking", "reward.max_completion_chars")


def objective_warnings(objectives: list[str], space: dict[str, Any]) -> list[str]:
    """Objectives that rank trials by how they are measured rather than by what training did: an own-config key
    (``eval/reward/*``) while the search space moves the reward settings it is measured with (thresholds, weights,
    buckets), or a reference key (``eval/reference/*``) while it moves the reference rule itself."""
    own = [k for k in space if k.startswith("reward.") and k.split(".")[1] not in _NOT_SCORED]
    rule = [k for k in space if k.startswith(_RULE_KEYS)]
    out = []
    for o in objectives:
        if o.startswith(OWN_PREFIXES) and own:
            out.append(f"objective {o} is measured at each trial's own reward config, which the search space moves "
                       f"({', '.join(own)}): a trial with looser thresholds or other weights scores higher without "
                       f"training better. Rank by {o.replace('/reward/', '/reference/', 1)} (the same responses "
                       "scored by one reference rule)")
        elif o.startswith(REFERENCE_PREFIXES) and rule:
            out.append(f"objective {o}: the search space moves the reference rule itself ({', '.join(rule)}), so the "
                       "trials' reference numbers are measured by different rules")
    return out


def tidy(value: Any) -> Any:
    """A sampled value as people write it: Optuna steps a range by ``low + k * step``, which gives
    ``0.09999999999999999`` for 0.1; a float within 4 ULPs of a decimal of at most 10 significant digits becomes
    that decimal (0.1), any other float (a continuous sample such as 0.06521620986668497) stays exactly as it is,
    and so does anything else."""
    if isinstance(value, float) and math.isfinite(value) and value != 0.0:
        for digits in range(1, 11):
            short = float(f"{value:.{digits}g}")
            if abs(short - value) <= 4 * math.ulp(value):
                return short
    return value


def tidy_params(params: dict[str, Any]) -> dict[str, Any]:
    """:func:`tidy` of every value (what the logs, overrides, study.csv and best.json show)."""
    return {k: tidy(v) for k, v in params.items()}


def format_value(value: Any) -> str:
    """A Python value as a Hydra override value (floats :func:`tidy`: ``0.1``, not ``0.09999999999999999``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(tidy(value))
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    text = str(value)
    if _PLAIN.match(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def load_spec(path: str | Path, parse: Callable[[str, Any], Any]) -> StudySpec:
    """Read a spec file (layout of sweeps/optuna.yaml). ``parse(key, expr)`` turns one ``params`` entry into an
    Optuna distribution, or into its value as a string when it is not a sweep (a fixed override). The keys outside
    ``hydra`` and ``defaults`` become overrides of every trial; ``defaults: [override /group: option]`` entries
    become ``group=option``."""
    import yaml

    path = Path(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise TypeError(f"{path}: expected a mapping at the top level")
    sweeper = ((data.get("hydra") or {}).get("sweeper")) or {}
    params = sweeper.get("params") or {}
    if not isinstance(params, dict):
        raise TypeError(f"{path}: hydra.sweeper.params must be a mapping of key: sweep")
    space, fixed = {}, []
    for key, expr in params.items():
        dist = parse(str(key), expr)
        if isinstance(dist, str):
            fixed.append(f"{key}={dist}")
        else:
            space[str(key)] = dist
    for entry in data.get("defaults") or []:
        if isinstance(entry, dict):
            for k, v in entry.items():
                group = str(k).removeprefix("override ").strip().lstrip("/")
                if not group.startswith("hydra/") and v is not None:
                    fixed.insert(0, f"{group}={format_value(v)}")
    settings = {key: value for key, value in data.items() if key not in ("hydra", "defaults")}
    fixed += [f"{key}={format_value(value)}" for key, value in flatten(settings, sep=".").items()]
    sampler = sweeper.get("sampler") or {}
    if sampler and not str(sampler.get("_target_", "")).startswith("optuna.samplers."):
        raise ValueError(f"{path}: hydra.sweeper.sampler._target_ must name an optuna.samplers class")
    n_trials = int(sweeper.get("n_trials", 20))
    if n_trials < 1:
        raise ValueError(f"{path}: hydra.sweeper.n_trials must be >= 1, got {n_trials}")
    n_jobs = int(sweeper.get("n_jobs") or 1)
    if n_jobs < 1:
        raise ValueError(f"{path}: hydra.sweeper.n_jobs must be >= 1, got {n_jobs}")
    spec = StudySpec(space=space, fixed=fixed, objective=str(data.get("objective") or DEFAULT_OBJECTIVE),
                     study_name=str(sweeper.get("study_name") or path.stem), n_trials=n_trials, n_jobs=n_jobs,
                     storage=str(sweeper.get("storage") or ""),
                     max_failure_rate=float(sweeper.get("max_failure_rate", 1.0)), sampler=dict(sampler))
    objectives = sweeper.get("objectives") or []
    objectives = [objectives] if isinstance(objectives, str) else list(objectives)
    if objectives and spec.objective:
        raise ValueError(f"{path}: give either the top-level objective ({spec.objective}) or "
                         f"hydra.sweeper.objectives ({', '.join(map(str, objectives))}), not both")
    direction = sweeper.get("direction") or "maximize"
    try:
        spec.set_objectives(objectives, [direction] if isinstance(direction, str) else list(direction))
    except ValueError as exc:
        raise ValueError(f"{path}: hydra.sweeper.{exc}") from None
    return spec
