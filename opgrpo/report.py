"""The sweep report: every run of a sweep side by side, and the coverage-vs-uniqueness trade-off.

``build_report(sweep_dir, out_dir)`` collects every run directory under ``sweep_dir`` (at any depth: a
Hydra multirun ``<sweep>/<job>/``, an Optuna study's ``trial_<n>/``, or a single run), and writes to
``out_dir``:

    runs.csv     one row per run: status, its overrides (one column per overridden key), the final
                 evaluation reward components and rates, NLI accuracy per split, training cost, the
                 last GRPO step's reward components, whether it is on the Pareto front, and the error
    runs.md      the same table in Markdown (completed runs), then the failed/unfinished runs
    pareto.png   coverage rate vs uniqueness rate of the completed runs, the Pareto front (both
                 maximised) as a step line, each point labelled by the overrides that vary, coloured
                 by NLI overall accuracy (grey where a run has none)
    curves.png   reward-component curves over GRPO steps, one line per run (``grpo/metrics.jsonl``)
    index.html   the table and both images (embedded), failed and unfinished runs in their own section

A run whose directory is incomplete or unreadable (no status, no summary, corrupt JSON, a failed run)
never stops the report: it is listed as failed or unfinished with the reason. Plain functions, no
Hydra; matplotlib runs on the Agg backend. Runs can also be pulled from a W&B project
(``wandb_project=``) when wandb is installed and online; offline that part is skipped and noted.
"""
from __future__ import annotations

import base64
import contextlib
import html
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RunRecord", "build_report", "collect_runs", "find_run_dirs", "load_run", "pareto_front",
           "parse_overrides", "runs_table"]

EVAL_STAGE = "eval"  # the stage whose summary numbers the report compares (the trained policy's evaluation)
REWARD_COMPONENTS = ("total", "coverage", "uniqueness", "format", "tag")
COVERAGE_RATE = "coverage_rate"
UNIQUENESS_RATE = "uniqueness_rate"
NLI_OVERALL = "nli/overall"
COMPLETED, FAILED, UNFINISHED = "completed", "failed", "unfinished"


@dataclass
class RunRecord:
    """What the report knows about one run."""

    name: str  # path relative to the sweep dir ("0", "trial_3", ...); "wandb:<name>" for W&B runs
    path: str
    status: str  # completed | failed | unfinished
    error: str = ""  # why a run is failed/unfinished
    overrides: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    curves: list[dict[str, Any]] = field(default_factory=list)  # grpo/metrics.jsonl rows


# ---- reading run directories --------------------------------------------------------------------------------
def _is_run_dir(path: Path) -> bool:
    return (path / "status.json").is_file() or (path / ".hydra").is_dir()


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


def _read_json(path: Path) -> tuple[Any, str]:
    """(data, "") or (None, reason)."""
    if not path.is_file():
        return None, f"no {path.name}"
    try:
        return json.loads(path.read_text(encoding="utf-8", errors="replace")), ""
    except (OSError, ValueError) as exc:
        return None, f"corrupt {path.name}: {exc}"


def _read_jsonl(path: Path) -> list[dict]:
    rows: list[dict] = []
    if not path.is_file():
        return rows
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return rows
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a torn line of a killed run
        if isinstance(row, dict):
            rows.append(row)
    return rows


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


def _overrides_of(path: Path, status: Any) -> list[str]:
    ov_file = path / ".hydra" / "overrides.yaml"
    if ov_file.is_file():
        import yaml

        data = None
        with contextlib.suppress(OSError, yaml.YAMLError):  # a corrupt file falls back to status.json
            data = yaml.safe_load(ov_file.read_text(encoding="utf-8", errors="replace"))
        if isinstance(data, list):
            return [str(x) for x in data]
    if isinstance(status, dict) and isinstance(status.get("overrides"), list):
        return [str(x) for x in status["overrides"]]
    return []


def load_run(path: str | Path, sweep_dir: str | Path | None = None) -> RunRecord:
    """Read one run directory; never raises for bad content (the reason goes to ``error``)."""
    path = Path(path)
    try:
        name = path.relative_to(sweep_dir).as_posix() if sweep_dir is not None else path.name
    except ValueError:
        name = path.name
    if name in ("", "."):
        name = path.resolve().name
    status, status_err = _read_json(path / "status.json")
    summary, summary_err = _read_json(path / "summary.json")
    if not isinstance(summary, dict):
        summary_err = summary_err or "summary.json is not an object"
        summary = {}
    rec = RunRecord(name=name, path=str(path), status=UNFINISHED, overrides=parse_overrides(_overrides_of(path, status)),
                    summary=summary, curves=_read_jsonl(path / "grpo" / "metrics.jsonl"))
    state = status.get("status") if isinstance(status, dict) else None
    if status_err.startswith("corrupt") or (status is not None and not isinstance(status, dict)):
        rec.status, rec.error = FAILED, status_err or "status.json is not an object"
    elif state == FAILED:
        rec.status, rec.error = FAILED, str(status.get("error") or "failed (no error recorded)")
    elif state == COMPLETED:
        if summary_err:
            rec.status, rec.error = FAILED, f"completed but {summary_err}"
        else:
            rec.status = COMPLETED
    elif state is None:
        rec.error = "no status.json (never started or killed before the run began)"
    else:
        rec.error = f"status {state!r}" + (f" since {status['time']}" if status.get("time") else "")
    return rec


def collect_runs(sweep_dir: str | Path, exclude: Iterable[str | Path] = ()) -> list[RunRecord]:
    return [load_run(p, sweep_dir) for p in find_run_dirs(sweep_dir, exclude)]


# ---- the table ----------------------------------------------------------------------------------------------
def _num(value: Any) -> float:
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
        COVERAGE_RATE: _num(s.get(f"{st}/reward/coverage_rate")),
        UNIQUENESS_RATE: _num(s.get(f"{st}/reward/uniqueness_rate")),
    }
    for comp in REWARD_COMPONENTS:
        out[f"reward/{comp}"] = _num(s.get(f"{st}/reward/{comp}"))
    splits = sorted({k.split("/")[1] for k in s if k.startswith(f"{st}/") and k.endswith("/accuracy")
                     and k.count("/") == 2 and k.split("/")[1] != "reward"} | {"overall"}, key=_split_key)
    for split in splits:
        out[f"nli/{split}"] = _num(s.get(f"{st}/{split}/accuracy"))
    out["nli/overall_stderr"] = _num(s.get(f"{st}/overall/accuracy_stderr"))
    runtimes = [_num(v) for k, v in s.items() if k.endswith("/train_runtime") or k == "estimator/total_s"]
    runtimes = [v for v in runtimes if not math.isnan(v)]
    out["cost/grpo_runtime_s"] = _num(s.get("grpo/train_runtime"))
    out["cost/grpo_steps"] = _num(s.get("grpo/global_step"))
    out["cost/train_runtime_s"] = sum(runtimes) if runtimes else math.nan
    last = _last_rewards(rec.curves)
    for comp, value in last.items():
        out[f"grpo_last/{comp}"] = value
    return out


def _curve_components(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    comps: list[str] = []
    for row in rows:
        for k in row:
            m = re.fullmatch(r"rewards/(.+)/mean", k)
            if m and m.group(1) not in comps:
                comps.append(m.group(1))
    if any("reward" in row for row in rows):
        comps.append("reward")
    return comps


def _curve_key(comp: str) -> str:
    return "reward" if comp == "reward" else f"rewards/{comp}/mean"


def _last_rewards(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for comp in _curve_components(rows):
        values = [_num(r.get(_curve_key(comp))) for r in rows if _curve_key(comp) in r]
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


def _varying_keys(records: Sequence[RunRecord]) -> list[str]:
    """Override keys whose value differs between runs (runs with no known overrides do not count)."""
    known = [r for r in records if r.overrides]
    keys = _override_keys(known)
    return [k for k in keys if len({r.overrides.get(k) for r in known}) > 1]


def _override_keys(records: Sequence[RunRecord]) -> list[str]:
    keys: list[str] = []
    for r in records:
        keys += [k for k in r.overrides if k not in keys]
    return keys


def _label(rec: RunRecord, keys: Sequence[str]) -> str:
    parts = [f"{k.replace('/', '.').split('.')[-1]}={rec.overrides[k]}" for k in keys if k in rec.overrides]
    return " ".join(parts) if parts else rec.name


def runs_table(records: Sequence[RunRecord]):
    """A pandas DataFrame, one row per run: run, status, overrides..., metrics..., pareto, error, path."""
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
    varying = set(_varying_keys(records))
    known = [r for r in records if r.overrides]
    df.attrs["common_overrides"] = {k: known[0].overrides.get(k, "") for k in keys if k not in varying}
    return df


def _counts_line(df) -> str:
    n = {k: int((df["status"] == k).sum()) for k in (COMPLETED, FAILED, UNFINISHED)}
    return f"{len(df)} runs: {n[COMPLETED]} completed, {n[FAILED]} failed, {n[UNFINISHED]} unfinished"


def _common_line(df) -> str:
    common = df.attrs.get("common_overrides", {})
    return "Overrides shared by every run: " + (" ".join(f"{k}={v}" for k, v in common.items()) or "none")


# ---- figures ------------------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_pareto(records: Sequence[RunRecord], df, path: Path) -> Path:
    plt = _plt()
    ok = [i for i, r in enumerate(records) if r.status == COMPLETED]
    keys = _varying_keys([records[i] for i in ok])
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    xs = [float(df.loc[i, COVERAGE_RATE]) for i in ok]
    ys = [float(df.loc[i, UNIQUENESS_RATE]) for i in ok]
    acc = [float(df.loc[i, NLI_OVERALL]) for i in ok]
    plotted = [j for j in range(len(ok)) if not (math.isnan(xs[j]) or math.isnan(ys[j]))]
    with_acc = [j for j in plotted if not math.isnan(acc[j])]
    without = [j for j in plotted if math.isnan(acc[j])]
    if with_acc:
        sc = ax.scatter([xs[j] for j in with_acc], [ys[j] for j in with_acc], c=[acc[j] for j in with_acc],
                        cmap="viridis", s=60, edgecolors="black", linewidths=0.5, zorder=3)
        fig.colorbar(sc, ax=ax, label="NLI overall accuracy")
    if without:
        ax.scatter([xs[j] for j in without], [ys[j] for j in without], c="lightgrey", s=60, edgecolors="black",
                   linewidths=0.5, zorder=3, label="no NLI accuracy")
    front = pareto_front([(xs[j], ys[j]) for j in range(len(ok))])
    if front:
        ax.plot([xs[j] for j in front], [ys[j] for j in front], drawstyle="steps-pre", color="tab:red", lw=1.5,
                zorder=2, label="Pareto front")
    mid = (min(xs[j] for j in plotted) + max(xs[j] for j in plotted)) / 2 if plotted else 0.0
    at: dict[tuple[float, float], list[str]] = {}  # runs landing on the same point share one label
    for j in plotted:
        at.setdefault((xs[j], ys[j]), []).append(_label(records[ok[j]], keys))
    for (x, y), labels in at.items():  # labels point inwards so that the outermost ones stay inside the axes
        right = x > mid
        ax.annotate("\n".join(labels), (x, y), textcoords="offset points",
                    xytext=(-6 if right else 6, 6), ha="right" if right else "left", fontsize=7)
    ax.margins(x=0.08, y=0.1)
    if not plotted:
        ax.text(0.5, 0.5, "no completed run with coverage and uniqueness rates", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel(f"coverage rate ({EVAL_STAGE})")
    ax.set_ylabel(f"uniqueness rate ({EVAL_STAGE})")
    ax.set_title("Coverage vs uniqueness (Pareto front: both maximised)")
    ax.grid(alpha=0.3)
    if front or without:
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_curves(records: Sequence[RunRecord], path: Path) -> Path | None:
    """One subplot per reward component, one line per run; None (no file) when no run has GRPO metrics."""
    with_curves = [r for r in records if _curve_components(r.curves)]
    if not with_curves:
        return None
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    comps: list[str] = []
    for r in with_curves:
        comps += [c for c in _curve_components(r.curves) if c not in comps]
    keys = _varying_keys([r for r in records if r.status == COMPLETED] or records)
    ncols = min(3, len(comps))
    nrows = math.ceil(len(comps) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.5 * ncols, 3.3 * nrows), squeeze=False)
    for ax, comp in zip(axes.flat, comps):
        for r in with_curves:
            pts = [(_num(row.get("step")), _num(row.get(_curve_key(comp)))) for row in r.curves
                   if _curve_key(comp) in row]
            pts = [(s, v) for s, v in pts if not (math.isnan(s) or math.isnan(v))]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, lw=1.2, label=_label(r, keys))
        ax.set_title("total reward" if comp == "reward" else comp)
        ax.set_xlabel("GRPO step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(comps):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=7, frameon=False,
                   bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.04 + 0.03 * math.ceil(len(labels) / 4), 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---- text outputs -------------------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return "" if value is None else str(value)


def _display_columns(df) -> list[str]:
    """The columns worth showing: overrides that vary, metrics that some run has; not path/error."""
    constant = set(df.attrs.get("common_overrides", {}))
    cols = []
    for c in df.columns:
        if c in ("path", "error") or c in constant:
            continue
        if df[c].dtype.kind == "f" and df[c].isna().all():
            continue
        cols.append(c)
    return cols


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(_cell(v)) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _failed_rows(records: Sequence[RunRecord]) -> list[list[str]]:
    return [[r.name, r.status, r.error, " ".join(f"{k}={v}" for k, v in r.overrides.items()), r.path]
            for r in records if r.status != COMPLETED]


def _write_markdown(df, records, path: Path, sweep_dir: str, front: Sequence[str]) -> None:
    done = df[df["status"] == COMPLETED]
    cols = _display_columns(df)
    parts = [f"# Sweep report: {sweep_dir}", "",
             _counts_line(df) + ".", "",
             _common_line(df), "",
             "Pareto front (coverage rate vs uniqueness rate, both maximised): " + (", ".join(front) or "none"), "",
             "## Completed runs", "",
             _markdown_table(cols, done[cols].values.tolist()) if len(done) else "(none)", ""]
    failed = _failed_rows(records)
    parts += ["## Failed and unfinished runs", "",
              _markdown_table(["run", "status", "error", "overrides", "path"], failed) if failed else "(none)", ""]
    path.write_text("\n".join(parts), encoding="utf-8")


def _html_table(header: Sequence[str], rows: Sequence[Sequence[Any]], highlight: Sequence[bool] = ()) -> str:
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>"]
    for i, row in enumerate(rows):
        cls = ' class="front"' if i < len(highlight) and highlight[i] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _img(path: Path | None, alt: str) -> str:
    if path is None or not path.is_file():
        return f"<p>({html.escape(alt)}: nothing to plot)</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def _write_html(df, records, path: Path, sweep_dir: str, front: Sequence[str], images: Mapping[str, Path | None],
                notes: Sequence[str]) -> None:
    done = df[df["status"] == COMPLETED]
    cols = _display_columns(df)
    failed = _failed_rows(records)
    counts = _counts_line(df)
    body = [
        f"<h1>Sweep report</h1><p><code>{html.escape(sweep_dir)}</code></p><p>{html.escape(counts)}</p>",
        f"<p>{html.escape(_common_line(df))}</p>",
        *(f"<p><em>{html.escape(n)}</em></p>" for n in notes),
        "<h2>Coverage vs uniqueness</h2>",
        f"<p>Pareto front (both maximised): {html.escape(', '.join(front) or 'none')}</p>",
        _img(images.get("pareto"), "Pareto plot"),
        "<h2>Completed runs</h2>",
        _html_table(cols, done[cols].values.tolist(), list(done["pareto"])) if len(done) else "<p>(none)</p>",
        ("<p>Rows on the Pareto front are highlighted. Metrics are from the final evaluation "
         f"(<code>{EVAL_STAGE}/...</code>); <code>grpo_last/*</code> are the last GRPO step's reward components.</p>"),
        "<h2>Reward curves over GRPO steps</h2>",
        _img(images.get("curves"), "reward curves"),
        "<h2>Failed and unfinished runs</h2>",
        _html_table(["run", "status", "error", "overrides", "path"], failed) if failed else "<p>(none)</p>",
    ]
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}tr.front{background:#fff3c4}"
             "img{max-width:100%}")
    path.write_text(f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Sweep report</title>"
                    f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n",
                    encoding="utf-8")


# ---- W&B ----------------------------------------------------------------------------------------------------
def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


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
            config: dict[str, Any] = {}
            _flatten("", dict(run.config), config)
            summary = {k: v for k, v in dict(run.summary).items() if isinstance(v, (int, float, str, bool))}
            state = states.get(str(run.state), FAILED)
            rec = RunRecord(name=f"wandb:{run.name}", path=str(getattr(run, "url", "")), status=state,
                            error="" if state == COMPLETED else f"W&B state {run.state}",
                            overrides={k: str(v) for k, v in config.items() if k.startswith("reward")},
                            summary=summary)
            with contextlib.suppress(Exception):  # curves are optional
                for row in run.history(pandas=False):
                    row = {k.removeprefix("train/"): v for k, v in row.items()}
                    if any(k.startswith("rewards/") or k == "reward" for k in row):
                        row.setdefault("step", row.get("global_step", row.get("_step")))
                        rec.curves.append(row)
            if state == COMPLETED and not any(k.startswith(f"{EVAL_STAGE}/") for k in summary):
                rec.error = f"no {EVAL_STAGE}/ metrics in the W&B summary"
            records.append(rec)
        except Exception as exc:  # noqa: BLE001
            records.append(RunRecord(name=f"wandb:{getattr(run, 'name', '?')}", path="", status=FAILED,
                                     error=f"unreadable W&B run: {exc}"))
    return records, f"W&B project {project!r}: {len(records)} runs"


# ---- entry point --------------------------------------------------------------------------------------------
def build_report(sweep_dir: str | Path, out_dir: str | Path, *, wandb_project: str = "") -> dict[str, Any]:
    """Write runs.csv, runs.md, pareto.png, curves.png (when any run has GRPO metrics) and index.html to ``out_dir``.

    Returns ``{"runs", "completed", "failed", "unfinished", "pareto" (run names along the front),
    "pareto_front" (the same, comma-joined), "csv", "markdown", "pareto_plot", "curves_plot" ("" if none),
    "html", "out_dir"}`` (paths as strings).
    """
    sweep_dir, out_dir = Path(sweep_dir), Path(out_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"sweep directory {str(sweep_dir)!r} does not exist")
    out_dir.mkdir(parents=True, exist_ok=True)
    records = collect_runs(sweep_dir, exclude=[out_dir])
    notes: list[str] = []
    if wandb_project:
        extra, note = wandb_runs(wandb_project)
        records += extra
        notes.append(note)
    df = runs_table(records)
    front = list(df.attrs.get("front_order", []))
    paths = {"csv": out_dir / "runs.csv", "markdown": out_dir / "runs.md", "pareto_plot": out_dir / "pareto.png",
             "curves_plot": out_dir / "curves.png", "html": out_dir / "index.html"}
    df.to_csv(paths["csv"], index=False)
    _write_markdown(df, records, paths["markdown"], str(sweep_dir), front)
    plot_pareto(records, df, paths["pareto_plot"])
    if plot_curves(records, paths["curves_plot"]) is None:
        paths["curves_plot"].unlink(missing_ok=True)  # a stale one from an earlier report would mislead
        paths["curves_plot"] = None
    _write_html(df, records, paths["html"], str(sweep_dir), front,
                {"pareto": paths["pareto_plot"], "curves": paths["curves_plot"]}, notes)
    status = list(df["status"]) if len(df) else []
    return {
        "runs": len(records),
        "completed": status.count(COMPLETED),
        "failed": status.count(FAILED),
        "unfinished": status.count(UNFINISHED),
        "pareto": front,
        "pareto_front": ", ".join(front),
        **{k: "" if v is None else str(v) for k, v in paths.items()},
        "out_dir": str(out_dir),
        **({"wandb": notes[0]} if notes else {}),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m opgrpo.report SWEEP_DIR [OUT_DIR] [--wandb-project P]``."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m opgrpo.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep_dir")
    ap.add_argument("out_dir", nargs="?", help="default: SWEEP_DIR/report")
    ap.add_argument("--wandb-project", default="")
    args = ap.parse_args(argv)
    out = build_report(Path(args.sweep_dir), Path(args.out_dir or Path(args.sweep_dir) / "report"),
                       wandb_project=args.wandb_project)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()
