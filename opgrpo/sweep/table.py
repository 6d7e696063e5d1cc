"""The runs of a sweep side by side: one table row per run, and the coverage-vs-uniqueness Pareto front.

``runs_table(records, reference)`` reduces each :class:`~opgrpo.sweep.records.RunRecord` to its status,
the NLI backend behind its NLI numbers, the reference rule behind its headline numbers (``reference_rule``), its
overrides (one column per overridden key), the final evaluation's rates and reward components, its own total
(``reward/total``, at the run's own weights and thresholds) and the total at common weights
(``reward/total_at_reference``, :func:`reference_total`), NLI accuracy per split, training cost and the last GRPO
step's reward components, and marks the runs on the Pareto front (:func:`pareto_front`, coverage rate and
uniqueness rate both maximised).

Headline numbers by one rule (issue 30.1): ``coverage_rate``, ``uniqueness_rate`` and the components behind
``reward/total_at_reference`` are the evaluation's reference numbers (``eval/reference/*``: the estimator's
calibrated thresholds and the paper's scoring rules, opgrpo.reward.evaluation), the same for runs whose responses
are the same whatever their own ``reward.tau_*``; the numbers at each run's own thresholds stay beside them as
``own/coverage_rate`` and ``own/uniqueness_rate``. A run from before the reference numbers shows its own numbers
in the headline columns (its ``own/*`` left empty), marked ``reference_rule`` = "none recorded (own thresholds)"
(opgrpo.sweep.records.check_rules refuses to mix rules). ``group_table(records, df)`` is the same table with the
completed runs that differ only by their seed (:mod:`opgrpo.sweep.seeds`) as one row each: every number as
the mean over the seeds with its 95% interval, the front taken over the means. The helpers that label runs by
the overrides that vary and read reward curves are shared with the plots.

Totals at common weights: every run's own ``total`` uses its own ``reward.weights``, so a weight sweep's totals
differ even for identical responses. ``total_at_reference`` = sum over the components of reference weight x
mean component score (the paper weights by default), the same for runs whose components are the same. It is a
weighted sum of means: unlike the scored total it is not clipped per response at ``reward.clip_min``.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from opgrpo.reward.config import COMPONENTS, RewardWeights
from opgrpo.sweep.records import EVAL_STAGE, NO_RULE, RunRecord
from opgrpo.utils.runfiles import COMPLETED

__all__ = ["COVERAGE_RATE", "NLI_OVERALL", "PAPER_WEIGHTS", "REFERENCE_TOTAL", "UNIQUENESS_RATE",
           "curve_components", "curve_key", "group_table", "headline_prefix", "non_finite_values", "number",
           "objective_warning", "pareto_front", "reference_curve", "reference_total", "reference_weights", "rule_text",
           "run_label", "runs_table", "varying_keys", "weights_text"]

COVERAGE_RATE = "coverage_rate"
UNIQUENESS_RATE = "uniqueness_rate"
NLI_OVERALL = "nli/overall"
REFERENCE_TOTAL = "total_at_reference"
PAPER_WEIGHTS: dict[str, float] = dict(zip(COMPONENTS, RewardWeights().as_list()))
"""The paper's component weights (SPEC "Reward": 0.3 coverage, 0.3 uniqueness, 0.1 format, 1.0 tag)."""
OWN_TOTALS = ("reward", "op_total", "total")
"""Names under which GRPO logs a run's own total (its own weights): not reward components."""


def reference_weights(weights: Mapping[str, float] | None = None) -> dict[str, float]:
    """``weights`` as one float per component (a missing one is 0; None = :data:`PAPER_WEIGHTS`); ValueError
    naming an unknown component or a value that is not a finite number >= 0."""
    if weights is None:
        return dict(PAPER_WEIGHTS)
    unknown = [k for k in weights if k not in COMPONENTS]
    if unknown:
        raise ValueError(f"reference weights: unknown component(s) {unknown}; expected {', '.join(COMPONENTS)}")
    out = {c: number(weights.get(c, 0.0)) for c in COMPONENTS}
    bad = {c: weights.get(c) for c, v in out.items() if not math.isfinite(v) or v < 0}
    if bad:
        raise ValueError(f"reference weights must be finite numbers >= 0, got {bad}")
    return out


def weights_text(weights: Mapping[str, float]) -> str:
    """``coverage=0.3 uniqueness=0.3 format=0.1 tag=1`` (with " (paper)" when they are the paper weights)."""
    text = " ".join(f"{c}={weights.get(c, 0.0):g}" for c in COMPONENTS)
    return text + (" (paper)" if dict(weights) == PAPER_WEIGHTS else "")


def reference_total(components: Mapping[str, Any], weights: Mapping[str, float] | None = None) -> float:
    """Sum over the components of weight x value (``components``: component name -> mean score); NaN when a
    component with a non-zero weight is missing or not a number."""
    w = reference_weights(weights)
    total = 0.0
    for comp in COMPONENTS:
        if w[comp] == 0:
            continue
        value = number(components.get(comp))
        if math.isnan(value):
            return math.nan
        total += w[comp] * value
    return total


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


def headline_prefix(rec: RunRecord) -> str:
    """Where a run's headline reward numbers are in its summary: ``eval/reference`` (the reference rule), else
    ``eval/reward`` (a run from before it: its own thresholds)."""
    return f"{EVAL_STAGE}/reference" if rec.reference_rule else f"{EVAL_STAGE}/reward"


def rule_text(rec: RunRecord) -> str:
    """The ``reference_rule`` column: the rule's fingerprint with its thresholds, or :data:`NO_RULE`."""
    if not rec.reference_rule:
        return NO_RULE
    tau = [number(rec.summary.get(f"{EVAL_STAGE}/reference/{k}")) for k in ("tau_cov", "tau_uniq")]
    return rec.reference_rule + ("" if any(math.isnan(t) for t in tau) else f" (tau {tau[0]:g}/{tau[1]:g})")


def _metrics(rec: RunRecord, weights: Mapping[str, float]) -> dict[str, float]:
    """The flat summary of a run reduced to the report's columns."""
    s, st, head = rec.summary, EVAL_STAGE, headline_prefix(rec)
    out: dict[str, float] = {
        COVERAGE_RATE: number(s.get(f"{head}/coverage_rate")),
        UNIQUENESS_RATE: number(s.get(f"{head}/uniqueness_rate")),
        "reward/total": number(s.get(f"{st}/reward/total")),
        f"reward/{REFERENCE_TOTAL}": reference_total({c: s.get(f"{head}/{c}") for c in COMPONENTS}, weights),
    }
    for rate in (COVERAGE_RATE, UNIQUENESS_RATE):  # beside the headline; a run from before it has them there
        out[f"own/{rate}"] = number(s.get(f"{st}/reward/{rate}")) if rec.reference_rule else math.nan
    for comp in COMPONENTS:
        out[f"reward/{comp}"] = number(s.get(f"{head}/{comp}"))
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
    out.update({f"grpo_last/{k}": v for k, v in _last_rewards(rec.curves, weights).items()})
    return out


def non_finite_values(records: Sequence[RunRecord]) -> list[tuple[str, str, str]]:
    """(run, summary key, "NaN" / "inf" / "-inf") for every NaN or infinite number in the runs' ``summary.json``
    (a missing number is not one of them): the report flags them instead of showing an unexplained blank."""
    out = []
    for rec in records:
        for key, value in rec.summary.items():
            v = number(value)
            if isinstance(value, float) and not math.isfinite(v):
                out.append((rec.name, key, "NaN" if math.isnan(v) else ("inf" if v > 0 else "-inf")))
    return out


def _columns_of(key: str, weights: Mapping[str, float], head: str = f"{EVAL_STAGE}/reward") -> list[str]:
    """The runs-table columns computed from summary key ``key`` (see ``_metrics``; ``head``: the run's
    :func:`headline_prefix`)."""
    st = EVAL_STAGE
    rate = key.rsplit("/", 1)[1]
    if key in (f"{head}/{COVERAGE_RATE}", f"{head}/{UNIQUENESS_RATE}"):
        return [rate]
    if key in (f"{st}/reward/{COVERAGE_RATE}", f"{st}/reward/{UNIQUENESS_RATE}"):
        return [f"own/{rate}"]
    if key == f"{st}/reward/total":
        return ["reward/total"]
    comp = key.removeprefix(f"{head}/")
    if comp in COMPONENTS:
        return [f"reward/{comp}"] + ([f"reward/{REFERENCE_TOTAL}"] if weights.get(comp) else [])
    if key == f"{st}/overall/accuracy_stderr":
        return ["nli/overall_stderr"]
    parts = key.split("/")
    if len(parts) == 3 and parts[0] == st and parts[2] == "accuracy" and parts[1] != "reward":
        return [f"nli/{parts[1]}"]
    out = {"grpo/train_runtime": ["cost/grpo_runtime_s"], "grpo/global_step": ["cost/grpo_steps"]}.get(key, [])
    if key.endswith("/train_runtime") or key == "estimator/total_s":
        out = [*out, "cost/train_runtime_s"]
    return out


def _facts(rec: RunRecord) -> dict[str, str]:
    """The text columns: the NLI backend, and any other text the evaluation recorded (e.g. the estimator)."""
    out = {"nli_backend": rec.nli_backend, "estimator": rec.estimator, "reference_rule": rule_text(rec)}
    for k, v in rec.summary.items():
        if k.startswith(f"{EVAL_STAGE}/reference/"):
            continue  # the rule is the reference_rule column
        if k.startswith(f"{EVAL_STAGE}/") and isinstance(v, str) and k != f"{EVAL_STAGE}/nli_backend":
            out[k.removeprefix(f"{EVAL_STAGE}/")] = v
    return out


def curve_components(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The reward components logged in GRPO metrics rows (``rewards/<c>/mean``), in ``COMPONENTS`` order, then
    any other reward function's; not the run's own total (``op_total``, ``reward``)."""
    logged: list[str] = []
    for row in rows:
        for k in row:
            m = re.fullmatch(r"rewards/(.+)/mean", k)
            if m and m.group(1) not in logged and m.group(1) not in OWN_TOTALS:
                logged.append(m.group(1))
    return [c for c in COMPONENTS if c in logged] + [c for c in logged if c not in COMPONENTS]


def curve_key(comp: str) -> str:
    """The metrics-row key of a component named by :func:`curve_components` (``reward``: the own total)."""
    return "reward" if comp == "reward" else f"rewards/{comp}/mean"


def reference_curve(rows: Sequence[Mapping[str, Any]], weights: Mapping[str, float] | None = None
                    ) -> list[tuple[float, float]]:
    """(step, total at the reference weights) for every GRPO metrics row that logs the weighted components."""
    out = []
    for row in rows:
        if not any(curve_key(c) in row for c in COMPONENTS):
            continue
        step = number(row.get("step"))
        value = reference_total({c: row.get(curve_key(c)) for c in COMPONENTS}, weights)
        if not (math.isnan(step) or math.isnan(value)):
            out.append((step, value))
    return out


def _last_rewards(rows: Sequence[Mapping[str, Any]], weights: Mapping[str, float]) -> dict[str, float]:
    """The last logged value of each component, of the total at the reference weights and of the run's own
    trained total (``reward``)."""
    out: dict[str, float] = {}
    for comp in [*curve_components(rows), "reward"]:
        values = [number(r.get(curve_key(comp))) for r in rows if curve_key(comp) in r]
        values = [v for v in values if not math.isnan(v)]
        if values:
            out[comp] = values[-1]
    ref = reference_curve(rows, weights)
    if ref:
        out[REFERENCE_TOTAL] = ref[-1][1]
    if "reward" in out:
        out["reward"] = out.pop("reward")  # the own total after the components and the reference total
    return out


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points that no other point dominates, both coordinates maximised.

    j dominates i when x_j >= x_i and y_j >= y_i with at least one strict. Equal points do not dominate each
    other (both stay). Points with a NaN or infinite coordinate are never on the front and dominate nothing. The indices
    come in order of increasing x (then decreasing y), i.e. along the front from its top-left end.
    """
    valid = [(i, float(x), float(y)) for i, (x, y) in enumerate(points)
             if math.isfinite(float(x)) and math.isfinite(float(y))]
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


def runs_table(records: Sequence[RunRecord], reference: Mapping[str, float] | None = None):
    """A pandas DataFrame, one row per run: run, status, nli_backend (and other text facts of the evaluation),
    overrides..., metrics..., pareto, error, path. ``reference``: the weights of ``reward/total_at_reference``
    (None = the paper weights).

    ``df.attrs["front_order"]``: the names of the runs on the front, along it; ``df.attrs["common_overrides"]``:
    the overrides every run shares; ``df.attrs["reference_weights"]``: the reference weights used;
    ``df.attrs["non_finite"]``: run -> column -> "NaN"/"inf"/"-inf" for the cells computed from a non-finite
    number of the run's summary.json (:func:`non_finite_values`).
    """
    import pandas as pd

    weights = reference_weights(reference)
    keys = _override_keys(records)
    facts: list[str] = []
    rows = []
    for rec in records:
        row: dict[str, Any] = {"run": rec.name, "status": rec.status}
        fact = _facts(rec)
        facts += [k for k in fact if k not in facts]
        row.update(fact)
        row.update({k: rec.overrides.get(k, "") for k in keys})
        row.update(_metrics(rec, weights))
        rows.append(row)
    flagged: dict[str, dict[str, str]] = {}  # run -> column -> "NaN"/"inf"/"-inf" of the summary value behind it
    heads = {rec.name: headline_prefix(rec) for rec in records}
    for name, key, text in non_finite_values(records):
        for col in _columns_of(key, weights, heads[name]):
            flagged.setdefault(name, {})[col] = text
    fixed = {"run", "status", *facts, *keys}
    metric_cols: list[str] = []
    for row in rows:
        metric_cols += [c for c in row if c not in metric_cols and c not in fixed]
    group = {"own": 1, "reward": 1.5, "nli": 2, "cost": 3, "grpo_last": 4}
    metric_cols.sort(key=lambda c: (group.get(c.split("/")[0], 0),
                                    _split_key(c.split("/")[1]) if c.startswith("nli/") else (0, 0, "")))
    base = [COVERAGE_RATE, UNIQUENESS_RATE, f"reward/{REFERENCE_TOTAL}", NLI_OVERALL]
    columns = ["run", "status", *facts, *keys, *metric_cols] if rows else ["run", "status", "nli_backend", *base]
    df = pd.DataFrame(rows, columns=columns)
    for fact in facts:
        df[fact] = df[fact].fillna("")
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
    df.attrs["reference_weights"] = weights
    df.attrs["facts"] = facts
    df.attrs["non_finite"] = flagged
    return df


_RUN_ONLY = ("run", "status", "pareto", "error", "path")


def group_table(records: Sequence[RunRecord], df):
    """One row per group of seed replicates among the completed runs (``df`` = ``runs_table(records)``).

    Columns: ``group`` (the overrides that vary between the groups, seeds left out; the run names when none
    vary), ``n_seeds``, ``runs`` and ``seeds`` (comma-joined), the text columns of ``df`` (values that differ
    inside a group joined by " / "; seed overrides left out), ``overrides`` (the group's overrides that not
    every run shares, without the seed), every numeric column of ``df`` as its mean over the group with the
    95% half-width next to it (``<column>_ci95``, :func:`opgrpo.sweep.seeds.t_interval`; NaN for one run),
    and ``pareto`` (on the front of the means). ``attrs["front_order"]``: the groups on the front, along it.
    """
    import pandas as pd

    from opgrpo.sweep.seeds import (
        grouped_numbers,
        is_seed_key,
        seed_groups,
        seed_of,
        without_seed,
    )

    ok = [i for i, r in enumerate(records) if r.status == COMPLETED]
    done = [records[i] for i in ok]
    groups = [[ok[j] for j in g] for g in seed_groups(done)]
    numeric = [c for c in df.columns if c not in _RUN_ONLY and df[c].dtype.kind in "fi"]
    texts = [c for c in df.columns if c not in _RUN_ONLY and c not in numeric and not is_seed_key(c)]
    varying = varying_keys(done)
    keys = [k for k in varying if not is_seed_key(k)]
    shared = set(_override_keys(done)) - set(varying)
    rows = []
    for members in groups:
        first = records[members[0]]
        names = [records[i].name for i in members]
        own = without_seed(first.overrides)
        seeds = [seed_of(records[i]) for i in members]
        row: dict[str, Any] = {"group": run_label(first, keys) if keys else ", ".join(names),
                               "runs": ", ".join(names), "seeds": ", ".join(seeds) if any(seeds) else ""}
        for c in texts:
            values = list(dict.fromkeys(str(df.loc[i, c]) for i in members))
            row[c] = " / ".join(values)
        row["overrides"] = " ".join(f"{k}={v}" for k, v in own.items() if k not in shared) or \
            " ".join(f"{k}={v}" for k, v in own.items())
        rows.append(row)
    labels = [r["group"] for r in rows]
    for r in rows:  # two groups with one label (they differ outside the overrides): tell them apart
        if labels.count(r["group"]) > 1:
            r["group"] += f" ({r['runs']})"
    text_df = pd.DataFrame(rows, columns=["group", "runs", "seeds", *texts, "overrides"])
    nums = grouped_numbers(df, groups, numeric)
    out = pd.concat([text_df[["group"]], nums[["n_seeds"]], text_df.drop(columns="group"),
                     nums.drop(columns="n_seeds")], axis=1)
    front = pareto_front(list(zip(out[COVERAGE_RATE], out[UNIQUENESS_RATE]))) if len(out) else []
    out["pareto"] = [i in set(front) for i in range(len(out))]
    out.attrs["front_order"] = [out.loc[i, "group"] for i in front]
    return out


def objective_warning(records: Sequence[RunRecord]) -> str:
    """A warning when the completed runs' objective (their config's ``objective``) has one and the same value
    in all of them (at least two), i.e. the sweep cannot rank them; "" otherwise."""
    done = [r for r in records if r.status == COMPLETED and r.objective]
    keys = {r.objective for r in done}
    if len(done) < 2 or len(keys) != 1:
        return ""
    key = keys.pop()
    values = [number(r.summary.get(key)) for r in done]
    if any(math.isnan(v) for v in values) or max(values) - min(values) > 1e-12 * max(1.0, abs(values[0])):
        return ""
    text = (f"the objective {key} is {values[0]:.4g} in all {len(done)} completed runs: it does not tell them "
            "apart (a sweeper's choice among them is arbitrary)")
    backends = {r.nli_backend for r in done}
    if key.startswith(f"{EVAL_STAGE}/") and "accuracy" in key and "causal_lm" in backends:
        text += ("; the causal-LM NLI stand-in (eval.nli.backend=causal_lm) scores below the accuracy threshold on "
                 "CPU, use a reward-based objective such as objective=eval/reference/coverage_rate")
    return text
