"""What an Optuna study of ``opgrpo-optuna`` (opgrpo.app.optuna_cli) writes in its study directory after every
trial: ``study.csv``, ``best.json`` and, for a multi-objective study, ``pareto.csv`` / ``pareto.json`` and Optuna's
Pareto-front plot ``pareto_front.html``; several drivers rewrite them, so each file is replaced atomically.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opgrpo.sweep.optuna.spec import StudySpec, tidy_params

log = logging.getLogger("opgrpo.optuna")


def write_atomic(path: Path, text: str) -> None:
    """Several drivers rewrite the same files: write a private temporary file, then rename it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _trial_record(t, objectives: Sequence[str]) -> dict[str, Any]:
    return {"number": t.number, "values": dict(zip(objectives, t.values or [])), "params": tidy_params(t.params),
            "overrides": t.user_attrs.get("overrides", []), "run_dir": t.user_attrs.get("run_dir", "")}


def write_outputs(study, study_dir: Path, spec: StudySpec, objective: str | Sequence[str], *,
                  plot: bool = False) -> dict[str, Any]:
    """study.csv (one row per trial) and best.json; a multi-objective study also pareto.csv / pareto.json
    (its Pareto trials, Optuna's ``best_trials``) and with ``plot`` Optuna's Pareto-front plot,
    ``pareto_front.html``. Returns the best.json content."""
    import optuna
    import pandas as pd

    objectives = [objective] if isinstance(objective, str) else list(objective)
    multi = len(objectives) > 1
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    pareto = {t.number for t in study.best_trials} if multi and complete else set()
    rows = []
    for t in trials:
        row = {"number": t.number, "state": t.state.name}
        if multi:
            row.update(zip(objectives, t.values or [None] * len(objectives)))
            row["pareto"] = t.number in pareto
        else:
            row["value"] = t.value
        row.update(datetime_start=t.datetime_start, datetime_complete=t.datetime_complete,
                   duration_s=t.duration.total_seconds() if t.duration else None)
        row.update({f"params_{k}": v for k, v in tidy_params(t.params).items()})
        row.update({k: t.user_attrs.get(k, "") for k in ("run_dir", "error", "driver")})
        row["interrupted"] = bool(t.user_attrs.get("interrupted"))
        rows.append(row)
    write_atomic(study_dir / "study.csv", pd.DataFrame(rows).to_csv(index=False))
    best: dict[str, Any] = {"study_name": spec.study_name, "n_trials": len(trials), "n_complete": len(complete),
                            "n_failed": sum(t.state == optuna.trial.TrialState.FAIL for t in trials)}
    if multi:
        best.update(objectives=objectives, directions=[d.name.lower() for d in study.directions])
        front = [_trial_record(t, objectives) for t in sorted(study.best_trials, key=lambda t: t.number)] \
            if complete else []
        best["pareto"] = front
        write_atomic(study_dir / "pareto.json", json.dumps(front, indent=2, default=str))
        flat = [{"number": r["number"], **r["values"], **{f"params_{k}": v for k, v in r["params"].items()},
                 "run_dir": r["run_dir"], "overrides": " ".join(r["overrides"])} for r in front]
        write_atomic(study_dir / "pareto.csv", pd.DataFrame(flat, columns=["number", *objectives, "run_dir",
                                                                           "overrides"] if not flat else None)
                     .to_csv(index=False))
        warnings = [identical_objective_warning([t.values[i] for t in complete], name)
                    for i, name in enumerate(objectives)]
        best["warning"] = "; ".join(w for w in warnings if w)
        if plot:
            best["pareto_front_html"] = write_pareto_plot(study, study_dir / "pareto_front.html", objectives)
    else:
        objective = objectives[0]
        if not objective:  # each trial's own: name them
            objective = ", ".join(sorted({str(t.user_attrs.get("objective", "")) for t in complete} - {""})) or \
                "(each trial's config objective)"
        best.update(objective=objective, direction=study.direction.name.lower())
        if complete:
            bt = study.best_trial
            best.update(number=bt.number, value=bt.value, params=tidy_params(bt.params),
                        overrides=bt.user_attrs.get("overrides", []), run_dir=bt.user_attrs.get("run_dir", ""))
        else:
            best.update(number=None, value=None, params={}, overrides=[], run_dir="")
        best["warning"] = identical_objective_warning([t.value for t in complete], objective)
    write_atomic(study_dir / "best.json", json.dumps(best, indent=2, default=str))
    return best


def write_pareto_plot(study, path: Path, objectives: Sequence[str]) -> str:
    """Optuna's Pareto-front plot of a 2- or 3-objective study as one self-contained HTML file (plotly.js
    inlined; hover shows each trial's values, params, overrides and run directory). The path, or "" when
    there is nothing to plot or plotly is missing (a warning)."""
    import optuna

    if not 2 <= len(objectives) <= 3 or not study.get_trials(deepcopy=False,
                                                              states=(optuna.trial.TrialState.COMPLETE,)):
        return ""
    try:
        fig = optuna.visualization.plot_pareto_front(study, target_names=list(objectives))
    except ImportError as exc:
        log.warning("no Pareto-front plot: %s (pip install 'plotly>=5.20')", exc)
        return ""
    fig.update_layout(title=f"Pareto front of {study.study_name}: " + " vs ".join(objectives))
    write_atomic(path, fig.to_html(include_plotlyjs=True, full_html=True))
    return str(path)


def identical_objective_warning(values: Sequence[float], objective: str) -> str:
    """A warning when at least two completed trials all have the same objective value ("" otherwise)."""
    if len(values) < 2 or max(values) - min(values) > 1e-12 * max(1.0, abs(values[0])):
        return ""
    text = (f"the objective {objective} is {values[0]:.4g} in all {len(values)} completed trials: it does not tell "
            "them apart, and the best trial is an arbitrary pick")
    if "accuracy" in objective:
        text += ("; on CPU the causal-LM NLI stand-in scores accuracy 0, use a reward-based objective "
                 "(e.g. objective=eval/reference/coverage_rate)")
    return text
