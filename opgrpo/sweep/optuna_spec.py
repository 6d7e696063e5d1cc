"""The search space of an Optuna study, read from a spec file laid out as ``sweeps/optuna.yaml``.

``load_spec(path)`` reads ``hydra.sweeper.{direction, study_name, n_trials, sampler, params,
max_failure_rate}``, the top-level ``objective`` (optional: without it each trial is scored by its own
config's ``objective``, e.g. ``experiment=cpu_demo``'s reward-based one) and every other setting of the file into a
:class:`StudySpec`: ``params`` in Hydra's sweep syntax become Optuna distributions (:func:`distribution`),
the rest become overrides that every trial gets. ``opgrpo.sweep.optuna_driver`` runs the study.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opgrpo.utils.jsonio import flatten

__all__ = ["DEFAULT_OBJECTIVE", "StudySpec", "default_spec_path", "distribution", "format_value", "load_spec",
           "resolve_spec"]

DEFAULT_OBJECTIVE = ""
"""No objective in the spec: each trial's own ``objective`` setting (read from its resolved config.yaml)."""
_PLAIN = re.compile(r"^[A-Za-z0-9_./\-:+@]+$")


@dataclass
class StudySpec:
    """What a spec file says: the search space, fixed overrides and how to run the study."""

    space: dict[str, Any]  # name -> optuna distribution
    fixed: list[str] = field(default_factory=list)  # overrides every trial gets (the spec's own settings)
    objective: str = DEFAULT_OBJECTIVE  # "" = each trial's own config ``objective``
    direction: str = "maximize"
    study_name: str = "opgrpo"
    n_trials: int = 20
    max_failure_rate: float = 1.0
    sampler: dict[str, Any] = field(default_factory=dict)  # {"_target_": "optuna.samplers.X", **kwargs}


def format_value(value: Any) -> str:
    """A Python value as a Hydra override value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    text = str(value)
    if _PLAIN.match(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


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
    """Read a spec file (layout of sweeps/optuna.yaml). The keys outside ``hydra`` and ``defaults`` become
    overrides of every trial; ``defaults: [override /group: option]`` entries become ``group=option``."""
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
        dist = distribution(str(key), expr)
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
    direction = str(sweeper.get("direction", "maximize")).lower()
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"{path}: hydra.sweeper.direction must be maximize or minimize, got {direction!r}")
    sampler = sweeper.get("sampler") or {}
    if sampler and not str(sampler.get("_target_", "")).startswith("optuna.samplers."):
        raise ValueError(f"{path}: hydra.sweeper.sampler._target_ must name an optuna.samplers class")
    n_trials = int(sweeper.get("n_trials", 20))
    if n_trials < 1:
        raise ValueError(f"{path}: hydra.sweeper.n_trials must be >= 1, got {n_trials}")
    return StudySpec(space=space, fixed=fixed, objective=str(data.get("objective") or DEFAULT_OBJECTIVE),
                     direction=direction, study_name=str(sweeper.get("study_name") or path.stem),
                     n_trials=n_trials, max_failure_rate=float(sweeper.get("max_failure_rate", 1.0)),
                     sampler=dict(sampler))


def default_spec_path() -> Path:
    from opgrpo.app.paths import config_dir

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
