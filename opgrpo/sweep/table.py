"""The runs of a sweep side by side: one table row per run, and the coverage-vs-uniqueness Pareto front.

``runs_table(records)`` reduces each :class:`~opgrpo.sweep.records.RunRecord` to its status, its overrides
(one column per overridden key), the final evaluation's reward components and rates, NLI accuracy per split,
training cost and the last GRPO step's reward components, and marks the runs on the Pareto front
(:func:`pareto_front`, coverage rate and uniqueness rate both maximised). The helpers that label runs by the
overrides that vary and read reward curves are shared with the plots.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from opgrpo.reward.config import COMPONENTS
from opgrpo.sweep.records import EVAL_STAGE, RunRecord
from opgrpo.utils.runfiles import COMPLETED

__all__ = ["COVERAGE_RATE", "NLI_OVERALL", "UNIQUENESS_RATE", "curve_components", "curve_key", "number",
           "pareto_front", "run_label", "runs_table", "varying_keys"]

REWARD_COMPONENTS = ("total", *COMPONENTS)
COVERAGE_RATE = "coverage_rate"
UNIQUENESS_RATE = "uniqueness_rate"
NLI_OVERALL = "nli/overall"


def number(value: Any) -> float:
    """``value`` as a float; NaN for anything that is not a number (bools included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def _split_key(split: str) -> tuple:
    if split == "overall":
        return (0, 0, "")
    if split.isdigit():
        return (1, int(split), "")
    m = re.fullmatch(r">\s*(\d+)", split)
    return (2, int(m.group(1)), "") if m else (3, 0, split)


def _metrics(rec: RunRecord) -> dict[str, float]:
    """The flat summary of a run reduced to the report's columns."""
    s, st = rec.summary, EVAL_STAGE
    out: dict[str, float] = {
        COVERAGE_RATE: number(s.get(f"{st}/reward/coverage_rate")),
        UNIQUENESS_RATE: number(s.get(f"{st}/reward/uniqueness_rate")),
    }
    for comp in REWARD_COMPONENTS:
        out[f"reward/{comp}"] = number(s.get(f"{st}/reward/{comp}"))
    splits = sorted({k.split("/")[1] for k in s if k.startswith(f"{st}/") and k.endswith("/accuracy")
                     and k.count("/") == 2 and k.split("/")[1] != "reward"} | {"overall"}, key=_split_key)
    for split in splits:
        out[f"nli/{split}"] = number(s.get(f"{st}/{split}/accuracy"))
    out["nli/overall_stderr"] = number(s.get(f"{st}/overall/accuracy_stderr"))
    runtimes = [number(v) for k, v in s.items() if k.endswith("/train_runtime") or k == "estimator/total_s"]
    runtimes = [v for v in runtimes if not math.isnan(v)]
    out["cost/grpo_runtime_s"] = number(s.get("grpo/train_runtime"))
    out["cost/grpo_steps"] = number(s.get("grpo/global_step"))
    out["cost/train_runtime_s"] = sum(runtimes) if runtimes else math.nan
    last = _last_rewards(rec.curves)
    for comp, value in last.items():
        out[f"grpo_last/{comp}"] = value
    return out


def curve_components(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The reward components logged in GRPO metrics rows (``rewards/<c>/mean``), then ``reward`` (the total)."""
    comps: list[str] = []
    for row in rows:
        for k in row:
            m = re.fullmatch(r"rewards/(.+)/mean", k)
            if m and m.group(1) not in comps:
                comps.append(m.group(1))
    if any("reward" in row for row in rows):
        comps.append("reward")
    return comps


def curve_key(comp: str) -> str:
    """The metrics-row key of a component named by :func:`curve_components`."""
    return "reward" if comp == "reward" else f"rewards/{comp}/mean"


def _last_rewards(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for comp in curve_components(rows):
        values = [number(r.get(curve_key(comp))) for r in rows if curve_key(comp) in r]
        values = [v for v in values if not math.isnan(v)]
        if values:
            out[comp] = values[-1]
    return out


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points that no other point dominates, both coordinates maximised.

    j dominates i when x_j >= x_i and y_j >= y_i with at least one strict. Equal points do not dominate each
    other (both stay). Points with a NaN coordinate are never on the front and dominate nothing. The indices
    come in order of increasing x (then decreasing y), i.e. along the front from its top-left end.
    """
    valid = [(i, float(x), float(y)) for i, (x, y) in enumerate(points)
             if not (math.isnan(float(x)) or math.isnan(float(y)))]
    front = []
    for i, x, y in valid:
        dominated = any((xj >= x and yj >= y) and (xj > x or yj > y) for j, xj, yj in valid if j != i)
        if not dominated:
            front.append((x, -y, i))
    return [i for _, _, i in sorted(front)]


def varying_keys(records: Sequence[RunRecord]) -> list[str]:
    """Override keys whose value differs between runs (runs with no known overrides do not count)."""
    known = [r for r in records if r.overrides]
    keys = _override_keys(known)
    return [k for k in keys if len({r.overrides.get(k) for r in known}) > 1]


def _override_keys(records: Sequence[RunRecord]) -> list[str]:
    keys: list[str] = []
    for r in records:
        keys += [k for k in r.overrides if k not in keys]
    return keys


def run_label(rec: RunRecord, keys: Sequence[str]) -> str:
    """``coverage=0.1 uniqueness=0.5``: the run's values of ``keys`` (last name part only), else its name."""
    parts = [f"{k.replace('/', '.').split('.')[-1]}={rec.overrides[k]}" for k in keys if k in rec.overrides]
    return " ".join(parts) if parts else rec.name


def runs_table(records: Sequence[RunRecord]):
    """A pandas DataFrame, one row per run: run, status, overrides..., metrics..., pareto, error, path.

    ``df.attrs["front_order"]``: the names of the runs on the front, along it; ``df.attrs["common_overrides"]``:
    the overrides every run shares.
    """
    import pandas as pd

    keys = _override_keys(records)
    rows = []
    for rec in records:
        row: dict[str, Any] = {"run": rec.name, "status": rec.status}
        row.update({k: rec.overrides.get(k, "") for k in keys})
        row.update(_metrics(rec))
        rows.append(row)
    metric_cols: list[str] = []
    for row in rows:
        metric_cols += [c for c in row if c not in metric_cols and c not in keys and c not in ("run", "status")]
    group = {"reward": 1, "nli": 2, "cost": 3, "grpo_last": 4}
    metric_cols.sort(key=lambda c: (group.get(c.split("/")[0], 0),
                                    _split_key(c.split("/")[1]) if c.startswith("nli/") else (0, 0, "")))
    base = [COVERAGE_RATE, UNIQUENESS_RATE, NLI_OVERALL]
    columns = ["run", "status", *keys, *metric_cols] if rows else ["run", "status", *base]
    df = pd.DataFrame(rows, columns=columns)
    ok = [i for i, rec in enumerate(records) if rec.status == COMPLETED]
    front = pareto_front([(df.loc[i, COVERAGE_RATE], df.loc[i, UNIQUENESS_RATE]) for i in ok])
    on_front = {ok[j] for j in front}
    df["pareto"] = [i in on_front for i in range(len(df))]
    df["error"] = [rec.error for rec in records]
    df["path"] = [rec.path for rec in records]
    df.attrs["front_order"] = [records[ok[j]].name for j in front]
    varying = set(varying_keys(records))
    known = [r for r in records if r.overrides]
    df.attrs["common_overrides"] = {k: known[0].overrides.get(k, "") for k in keys if k not in varying}
    return df

