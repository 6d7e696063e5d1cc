"""The runs of a sweep as records: run directories found and read, or W&B runs pulled, never raising.

``collect_runs(sweep_dir)`` finds every run directory under ``sweep_dir`` (at any depth: a Hydra multirun
``<sweep>/<job>/``, an Optuna study's ``trial_<n>/``, or a single run); ``runs_from_dirs(run_dirs)`` takes
exactly the run directories it is given. Each is read into a :class:`RunRecord`: its status (completed,
failed, unfinished, or skipped: completed without evaluation numbers, e.g. a ``stage=report`` run; each with
the reason), its overrides (from ``.hydra/overrides.yaml``, else ``status.json``), its resolved
``config.yaml``, its flat ``summary.json`` and its GRPO curves (``grpo/metrics.jsonl``). A run directory that
is incomplete or unreadable is a failed or unfinished record, not an error. ``wandb_runs(project)`` does the
same for the runs of a W&B project.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opgrpo.utils.errors import RefusedError
from opgrpo.utils.jsonio import flatten, read_jsonl
from opgrpo.utils.runfiles import (
    COMPLETED,
    CONFIG_YAML,
    FAILED,
    METRICS_JSONL,
    STATUS_JSON,
    SUMMARY_JSON,
    RunFileError,
    live_status,
    read_status,
    read_summary,
)

__all__ = ["EVAL_STAGE", "NO_RULE", "SKIPPED", "START_STAGE", "UNFINISHED", "MixedEstimatorsError", "MixedRulesError",
           "RunRecord", "check_estimators", "check_rules", "collect_runs", "config_diff", "find_run_dirs",
           "has_eval_numbers", "load_run", "parse_overrides", "run_extras", "runs_from_dirs", "stage_times",
           "wandb_runs"]

EVAL_STAGE = "eval"  # the stage whose summary numbers the report compares (the trained policy's evaluation)
START_STAGE = "eval_base"  # the untrained policy's evaluation: the start point drawn in the report
TIME = "time"  # summary prefix of the wall times opgrpo.app.stages records: time/<stage>_s, time/job_s
UNFINISHED = "unfinished"  # a record's status besides COMPLETED and FAILED: running, killed or never started
SKIPPED = "skipped"  # completed, but without evaluation numbers to compare (report, compare, describe runs ...)


@dataclass
class RunRecord:
    """What the report knows about one run."""

    name: str  # path relative to the sweep dir ("0", "trial_3", ...); "wandb:<name>" for W&B runs
    path: str
    status: str  # completed | failed | unfinished | skipped
    error: str = ""  # why a run is failed/unfinished/skipped
    overrides: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    curves: list[dict[str, Any]] = field(default_factory=list)  # grpo/metrics.jsonl rows
    config: dict[str, Any] = field(default_factory=dict)  # the resolved config.yaml ({} when missing/unreadable)

    @property
    def nli_backend(self) -> str:
        """The NLI backend behind the run's NLI numbers: the evaluation's own record, else its config ("")."""
        value = self.summary.get(f"{EVAL_STAGE}/nli_backend")
        if not isinstance(value, str) or not value:
            value = _select(self.config, "eval.nli.backend")
        return value if isinstance(value, str) else ""

    @property
    def estimator(self) -> str:
        """Which estimator scored the run's reward numbers: its fingerprint, "(untuned estimator)" appended for a base
        model (opgrpo.estimator.identity); "" when the run recorded none (runs from before the fingerprint)."""
        fp = self.summary.get(f"{EVAL_STAGE}/reward_estimator/fingerprint")
        if not isinstance(fp, str) or not fp:
            fp = self.summary.get(f"{EVAL_STAGE}/reward_estimator/path")
        if not isinstance(fp, str) or not fp:
            return ""
        tuned = self.summary.get(f"{EVAL_STAGE}/reward_estimator/tuned")
        return fp if tuned is not False else f"{fp} (untuned estimator)"

    @property
    def reference_rule(self) -> str:
        """The fingerprint of the rule the run's headline reward numbers were measured by (``eval/reference/rule``,
        opgrpo.reward.evaluation); "" for a run that recorded none (its numbers are at its own thresholds)."""
        value = self.summary.get(f"{EVAL_STAGE}/reference/rule")
        return value if isinstance(value, str) else ""

    @property
    def objective(self) -> str:
        """The summary key the run returned to its sweeper (its config's ``objective``; "" when unknown)."""
        value = self.config.get("objective")
        return value if isinstance(value, str) else ""


def _select(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def has_eval_numbers(summary: dict[str, Any]) -> bool:
    """Whether a flat summary holds a number of the final evaluation (``eval/...``), bools and NaN excluded."""
    return any(k.startswith(f"{EVAL_STAGE}/") and isinstance(v, (int, float)) and not isinstance(v, bool)
               and not math.isnan(v) for k, v in summary.items())


def _no_eval_reason(rec: RunRecord) -> str:
    stage = rec.config.get("stage")
    if stage == "pipeline" and isinstance(rec.config.get("pipeline"), list):
        stage = "pipeline " + ",".join(map(str, rec.config["pipeline"]))
    prefixes = sorted({k.split("/")[0] for k in rec.summary if "/" in k} - {TIME})
    if prefixes:
        has = f"it has {', '.join(p + '/' for p in prefixes)} numbers"
    else:
        has = f"no {SUMMARY_JSON}" if not (Path(rec.path) / SUMMARY_JSON).is_file() else f"its {SUMMARY_JSON} is empty"
    return (f"no evaluation numbers ({EVAL_STAGE}/... in summary.json): "
            + (f"a stage={stage} run, " if isinstance(stage, str) and stage else "") + has)


# ---- reading run directories --------------------------------------------------------------------------------
def _is_run_dir(path: Path) -> bool:
    return (path / STATUS_JSON).is_file() or (path / ".hydra").is_dir()


def find_run_dirs(sweep_dir: str | Path, exclude: Iterable[str | Path] = ()) -> list[Path]:
    """Every run directory under ``sweep_dir`` (itself included), in natural order; a run's own sub-folders are
    not searched. Directories that contain any of ``exclude`` (e.g. the report's own run) are left out."""
    root = Path(sweep_dir)
    excluded = [Path(e).resolve() for e in exclude]
    found: list[Path] = []
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        if _is_run_dir(here):
            dirnames[:] = []
            resolved = here.resolve()
            if not any(e == resolved or resolved in e.parents for e in excluded):
                found.append(here)
            continue
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
    return sorted(found, key=lambda p: _natural_key(p.relative_to(root).as_posix()))


def _natural_key(text: str) -> list:
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text) if t]


def parse_overrides(overrides: Sequence[str]) -> dict[str, str]:
    """``["reward.weights.coverage=0.1", "+sweep/ablate=no_tag", "~logger"]`` -> ``{"reward.weights.coverage": "0.1",
    "sweep/ablate": "no_tag", "logger": "<deleted>"}`` (leading ``+``/``++`` dropped, quotes kept as written)."""
    out: dict[str, str] = {}
    for item in overrides:
        if not isinstance(item, str):
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if key.startswith("~"):
            out[key[1:]] = "<deleted>"
            continue
        out[key.lstrip("+")] = value.strip() if sep else ""
    return out


def _overrides_of(path: Path, status: dict[str, Any] | None) -> list[str]:
    ov_file = path / ".hydra" / "overrides.yaml"
    if ov_file.is_file():
        import yaml

        data = None
        with contextlib.suppress(OSError, yaml.YAMLError):  # a corrupt file falls back to status.json
            data = yaml.safe_load(ov_file.read_text(encoding="utf-8", errors="replace"))
        if isinstance(data, list):
            return [str(x) for x in data]
    if status is not None and isinstance(status.get("overrides"), list):
        return [str(x) for x in status["overrides"]]
    return []


def _config_of(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load((path / CONFIG_YAML).read_text(encoding="utf-8", errors="replace"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def load_run(path: str | Path, sweep_dir: str | Path | None = None, name: str = "") -> RunRecord:
    """Read one run directory; never raises for bad content (the reason goes to ``error``). ``name``: the
    record's name ("" = the path relative to ``sweep_dir``, else the directory's name)."""
    path = Path(path)
    if not name:
        try:
            name = path.relative_to(sweep_dir).as_posix() if sweep_dir is not None else path.name
        except ValueError:
            name = path.name
    if name in ("", "."):
        name = path.resolve().name
    if not path.is_dir():
        return RunRecord(name=name, path=str(path), status=FAILED,
                         error="a file, not a run directory" if path.is_file() else "no such directory")
    status_err = summary_err = ""  # unusable files (a missing summary.json is not an error: no numbers)
    try:
        status = read_status(path)
    except RunFileError as exc:
        status, status_err = None, str(exc)
    try:
        summary = read_summary(path)
    except RunFileError as exc:
        summary, summary_err = None, str(exc)
    rec = RunRecord(name=name, path=str(path), status=UNFINISHED,
                    overrides=parse_overrides(_overrides_of(path, status)), summary=summary or {},
                    curves=read_jsonl(path / "grpo" / METRICS_JSONL), config=_config_of(path))
    state = status.get("status") if status is not None else None
    if status_err:
        rec.status, rec.error = FAILED, status_err
    elif state == FAILED:
        rec.status, rec.error = FAILED, str(status.get("error") or "failed (no error recorded)")
    elif state == COMPLETED:
        if summary_err:
            rec.status, rec.error = FAILED, f"completed but {summary_err}"
        elif not has_eval_numbers(rec.summary):
            rec.status, rec.error = SKIPPED, _no_eval_reason(rec)
        else:
            rec.status = COMPLETED
    elif state is None:
        rec.error = f"no {STATUS_JSON} (never started or killed before the run began)"
    else:
        state = live_status(path, status)  # running with a stopped heartbeat: interrupted (SIGKILL, node loss)
        where = f" in stage {status['stage']} at step {status['step']}" if "step" in status else ""
        rec.error = f"{state}{where}" + (f" (status since {status['time']})" if status.get("time") else "")
    return rec


def collect_runs(sweep_dir: str | Path, exclude: Iterable[str | Path] = ()) -> list[RunRecord]:
    """``load_run`` of every ``find_run_dirs(sweep_dir, exclude)``."""
    return [load_run(p, sweep_dir) for p in find_run_dirs(sweep_dir, exclude)]


def _run_dir_of(path: Path) -> Path:
    """A file inside a run (``<run>/eval/nli_metrics.json``) stands for that run; anything else for itself."""
    if path.is_file():
        for parent in path.parents:
            if _is_run_dir(parent):
                return parent
    return path


def _unique_names(paths: Sequence[Path]) -> list[str]:
    """Each path's shortest trailing part that no other path ends with (``0``; ``sweepA/0`` vs ``sweepB/0``)."""
    parts = [p.resolve().parts for p in paths]
    names = []
    for i, mine in enumerate(parts):
        others = [q for j, q in enumerate(parts) if j != i]
        for n in range(1, len(mine) + 1):
            if all(q[-n:] != mine[-n:] for q in others):
                break
        names.append("/".join(mine[-n:]).lstrip("/") if mine else str(paths[i]))
    return names


def runs_from_dirs(run_dirs: Sequence[str | Path], labels: Sequence[str] = ()) -> list[RunRecord]:
    """Exactly these runs, in this order: one record per entry (a path inside a run, such as its
    ``eval/nli_metrics.json``, stands for the run; the same run twice is kept once). A missing directory is a
    failed record ("no such directory"). Names: ``labels`` (one per entry; ValueError otherwise), else the
    shortest trailing part of each path that tells the runs apart."""
    if labels and len(labels) != len(run_dirs):
        raise ValueError(f"{len(labels)} labels for {len(run_dirs)} run directories")
    paths, names, seen = [], [], set()
    for i, entry in enumerate(run_dirs):
        path = _run_dir_of(Path(entry).expanduser())
        key = path.resolve()
        if key in seen:
            continue
        seen.add(key)
        paths.append(path)
        names.append(str(labels[i]) if labels else "")
    derived = _unique_names(paths)
    return [load_run(p, name=n or d) for p, n, d in zip(paths, names, derived)]


# ---- W&B ----------------------------------------------------------------------------------------------------
def wandb_runs(project: str) -> tuple[list[RunRecord], str]:
    """Runs of a W&B project as records (overrides = their ``reward*`` config keys); ``([], reason)`` when wandb is
    missing, offline or unreachable."""
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return [], f"W&B project {project!r} skipped: WANDB_MODE={os.environ['WANDB_MODE']}"
    try:
        import wandb
    except ImportError:
        return [], f"W&B project {project!r} skipped: wandb is not installed"
    try:
        runs = list(wandb.Api(timeout=30).runs(project))
    except Exception as exc:  # noqa: BLE001 - offline, no API key, unknown project: the file report still stands
        return [], f"W&B project {project!r} skipped: {type(exc).__name__}: {exc}"
    states = {"finished": COMPLETED, "running": UNFINISHED, "pending": UNFINISHED}
    records = []
    for run in runs:
        try:
            config = flatten(dict(run.config), sep=".")
            summary = {k: v for k, v in dict(run.summary).items() if isinstance(v, (int, float, str, bool))}
            state = states.get(str(run.state), FAILED)
            rec = RunRecord(name=f"wandb:{run.name}", path=str(getattr(run, "url", "")), status=state,
                            error="" if state == COMPLETED else f"W&B state {run.state}",
                            overrides={k: str(v) for k, v in config.items() if k.startswith("reward")},
                            summary=summary, config=dict(run.config))
            with contextlib.suppress(Exception):  # curves are optional
                for row in run.history(pandas=False):
                    row = {k.removeprefix("train/"): v for k, v in row.items()}
                    if any(k.startswith("rewards/") or k == "reward" for k in row):
                        row.setdefault("step", row.get("global_step", row.get("_step")))
                        rec.curves.append(row)
            if state == COMPLETED and not has_eval_numbers(summary):
                rec.status, rec.error = SKIPPED, f"no evaluation numbers ({EVAL_STAGE}/... in the W&B summary)"
            records.append(rec)
        except Exception as exc:  # noqa: BLE001
            records.append(RunRecord(name=f"wandb:{getattr(run, 'name', '?')}", path="", status=FAILED,
                                     error=f"unreadable W&B run: {exc}"))
    return records, f"W&B project {project!r}: {len(records)} runs"


class MixedEstimatorsError(RefusedError, ValueError):
    """Runs whose reward numbers come from different estimators were put side by side (the CLI prints the message
    alone: ``RefusedError``)."""


def check_estimators(records: Sequence[RunRecord], allow_mixed: bool = False) -> list[str]:
    """Refuse (``MixedEstimatorsError``) completed runs scored by different estimators, whose coverage and
    uniqueness rates are not comparable, unless ``allow_mixed``; then return a warning naming each group. The
    reference rules are checked the same way (:func:`check_rules`)."""
    groups: dict[str, list[str]] = {}
    for r in records:
        if r.status == COMPLETED:
            groups.setdefault(r.estimator or "unknown", []).append(r.name)
    if len(groups) <= 1:
        return check_rules(records, allow_mixed)
    text = "; ".join(f"{est}: {', '.join(names)}" for est, names in groups.items())
    if not allow_mixed:
        raise MixedEstimatorsError(f"the runs' reward numbers come from {len(groups)} different estimators ({text}): "
                                   "their coverage and uniqueness rates are not comparable. Score them with one "
                                   "estimator (stage=eval eval.responses_file=<run>/eval/responses.jsonl "
                                   "reward.estimator_path=...), or set report.allow_mixed_estimators=true to show "
                                   "them anyway, marked by the estimator column")
    return [f"runs scored by different estimators are shown together (report.allow_mixed_estimators): {text}",
            *check_rules(records, allow_mixed)]


class MixedRulesError(MixedEstimatorsError):
    """Runs whose headline reward numbers were measured by different reference rules were put side by side."""


NO_RULE = "none recorded (own thresholds)"
"""The rule column of a run without reference numbers (from before them): its numbers are at its own thresholds."""


def _own_thresholds(rec: RunRecord) -> tuple[Any, Any]:
    reward = rec.config.get("reward") if isinstance(rec.config.get("reward"), dict) else {}
    return reward.get("tau_cov"), reward.get("tau_uniq")


def check_rules(records: Sequence[RunRecord], allow_mixed: bool = False) -> list[str]:
    """Refuse (``MixedRulesError``) completed runs whose headline numbers (coverage and uniqueness rates, the total
    at reference) were measured by different reference rules (``RunRecord.reference_rule``; runs without one count
    as one more rule), unless ``allow_mixed``; then return a warning naming each group. Runs none of which recorded
    a rule are compared at their own thresholds: a warning when their configs' ``reward.tau_*`` differ."""
    groups: dict[str, list[str]] = {}
    done = [r for r in records if r.status == COMPLETED]
    for r in done:
        groups.setdefault(r.reference_rule or NO_RULE, []).append(r.name)
    if list(groups) == [NO_RULE]:
        own = {_own_thresholds(r) for r in done if _own_thresholds(r) != (None, None)}
        if len(own) <= 1:
            return []
        return ["no run recorded reference numbers (eval/reference/*, runs from before them), so their rates are "
                f"at each run's own thresholds, which differ ({len(own)} pairs of reward.tau_cov/tau_uniq): not "
                "comparable. Re-score them by one rule: stage=eval eval.responses_file=<run>/eval/responses.jsonl"]
    if len(groups) <= 1:
        return []
    text = "; ".join(f"{rule}: {', '.join(names)}" for rule, names in groups.items())
    if not allow_mixed:
        raise MixedRulesError(f"the runs' headline reward numbers were measured by {len(groups)} different reference "
                              f"rules ({text}): not comparable (eval/reward.json names each rule: thresholds, "
                              "weights, masking). Re-score them by one rule (stage=eval "
                              "eval.responses_file=<run>/eval/responses.jsonl with the same estimator.calibration and "
                              "report.reference_weights), or set report.allow_mixed_estimators=true to show them "
                              "anyway, marked by the reference_rule column")
    return [f"runs measured by different reference rules are shown together (report.allow_mixed_estimators): {text}"]


# ---- what a run cost, where it started, how its config differs ----------------------------------------------
_LOG_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:,(\d{3}))?\]")
_STAGE_LINE = re.compile(r"=== stage (\S+) ===")


def _log_times(path: Path) -> dict[str, float]:
    """Stage wall times read from the run's log (``cli.log``: each stage starts with "=== stage NAME ===", the
    next one or the last line ends it); ``job`` from the first stage to the last line. For runs from before
    opgrpo.app.stages recorded them; a log appended to by a resumed run gives its last attempt per stage."""
    import datetime

    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return {}
    marks: list[tuple[str, float]] = []
    last = math.nan
    for line in lines:
        m = _LOG_LINE.match(line)
        if not m:
            continue
        t = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp() + int(m.group(2) or 0) / 1000
        last = t
        stage = _STAGE_LINE.search(line)
        if stage:
            marks.append((stage.group(1), t))
    out: dict[str, float] = {}
    for i, (name, t) in enumerate(marks):
        out[name] = round((marks[i + 1][1] if i + 1 < len(marks) else last) - t, 2)
    if marks:
        out["job"] = round(last - marks[0][1], 2)
    return out


def stage_times(rec: RunRecord) -> dict[str, float]:
    """Wall seconds per stage and of the whole job (``"job"``): what the run recorded (``time/<stage>_s``,
    ``time/job_s``), else what its ``cli.log`` says ({} when neither)."""
    recorded = {k.removeprefix(f"{TIME}/").removesuffix("_s"): float(v) for k, v in rec.summary.items()
                if k.startswith(f"{TIME}/") and k.endswith("_s") and isinstance(v, (int, float))
                and not isinstance(v, bool)}
    if recorded:
        return recorded
    return _log_times(Path(rec.path) / "cli.log") if rec.path and Path(rec.path).is_dir() else {}


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def run_extras(rec: RunRecord) -> dict[str, float]:
    """The report's columns beyond the final evaluation's numbers: the job's cost (``cost/job_wall_s``: wall time of
    its stages; ``cost/eval_s``: of its evaluations, eval and eval_base; ``cost/grpo_tokens``: prompt and completion
    tokens GRPO processed, TRL's ``num_tokens``) and the start point (``start/coverage_rate``,
    ``start/uniqueness_rate``: the untrained policy's rates, from ``eval_base``, by the same rule as the run's headline
    numbers: ``eval_base/reference/*`` when the run records a reference rule, else ``eval_base/reward/*``; NaN where
    the run has none)."""
    times = stage_times(rec)
    evals = [v for k, v in times.items() if k in (EVAL_STAGE, START_STAGE)]
    s = rec.summary
    start = f"{START_STAGE}/reference" if rec.reference_rule else f"{START_STAGE}/reward"  # the headline's rule
    return {
        "cost/job_wall_s": times.get("job", math.nan),
        "cost/eval_s": sum(evals) if evals else math.nan,
        "cost/grpo_tokens": _num(s.get("grpo/last/num_tokens")),
        "start/coverage_rate": _num(s.get(f"{start}/coverage_rate")),
        "start/uniqueness_rate": _num(s.get(f"{start}/uniqueness_rate")),
    }


def _yaml_text(value: Any) -> str:
    """A config value as YAML writes it: ``true``, ``null``, ``[grpo, eval]``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml_text(v)}" for k, v in value.items()) + "}"
    return str(value)


def config_diff(records: Sequence[RunRecord]) -> tuple[list[str], dict[str, dict[str, str]]]:
    """The resolved config keys (each run's ``config.yaml``, flattened to dotted keys) whose value differs between
    the runs that have one: (keys in config order, run name -> key -> value as YAML writes it; "(absent)" where a
    run's config lacks the key). ([], {}) with fewer than two configs."""
    flat = {r.name: flatten(r.config, sep=".") for r in records if r.config}
    if len(flat) < 2:
        return [], {}
    keys: list[str] = []
    for values in flat.values():
        keys += [k for k in values if k not in keys]
    table = {name: {k: _yaml_text(values[k]) if k in values else "(absent)" for k in keys}
             for name, values in flat.items()}
    differ = [k for k in keys if len({row[k] for row in table.values()}) > 1]
    return differ, {name: {k: row[k] for k in differ} for name, row in table.items()}
