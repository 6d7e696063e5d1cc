"""The sweep report's coverage-vs-uniqueness scatter: an interactive plotly figure for the HTML page
(:func:`scatter_figure`) and a PNG (:func:`plot_pareto`); the curves over GRPO steps are in opgrpo.sweep.curves.

Both show one point per arm, a group of seed replicates (``table.group_table``): the mean over the seeds with its
95% interval as error bars, in the arm's colour (``opgrpo.sweep.arms``: the same colour as its lines in the curves
and its swatch in the page's tables), the Pareto front of the means as a step line, and, when the runs evaluated
the policy before training (``eval_base``), each arm's start point as an open square with a dotted arrow to where
training took it. NLI overall accuracy is in the legend and the hover text. matplotlib runs on the Agg backend;
plotly is imported only by :func:`scatter_figure`.
"""
from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path

from opgrpo.sweep.arms import Arms, arms_of
from opgrpo.sweep.records import EVAL_STAGE, START_STAGE, RunRecord
from opgrpo.sweep.seeds import CI_SUFFIX, N_SUFFIX
from opgrpo.sweep.table import (
    COVERAGE_RATE,
    NLI_OVERALL,
    REFERENCE_TOTAL,
    UNIQUENESS_RATE,
    group_table,
    number,
    pareto_front,
)

__all__ = ["SCATTER_DIV", "plot_pareto", "scatter_figure"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


FRONT_COLOUR = "#d62728"
SCATTER_DIV = "pareto-scatter"
START_COVERAGE, START_UNIQUENESS = "start/coverage_rate", "start/uniqueness_rate"  # report.run_extras' columns
START_LABEL = f"start: before training ({START_STAGE})"


def _finite(value) -> bool:
    return not math.isnan(number(value))


def _half(g, col: str, i: int) -> float:
    """The 95% half-width of ``col`` in group row ``i`` (0 where there is none: one seed)."""
    hw = number(g.loc[i, col + CI_SUFFIX]) if col + CI_SUFFIX in g.columns else math.nan
    return 0.0 if math.isnan(hw) else hw


def _points(g) -> list[int]:
    """The group rows that have both rates."""
    return [i for i in range(len(g)) if _finite(g.loc[i, COVERAGE_RATE]) and _finite(g.loc[i, UNIQUENESS_RATE])]


def _accuracy(g) -> list[float]:
    return [number(v) for v in g[NLI_OVERALL]] if NLI_OVERALL in g.columns else [math.nan] * len(g)


def _coincident(g, pts: Sequence[int]) -> dict[tuple[float, float], list[int]]:
    at: dict[tuple[float, float], list[int]] = {}
    for i in pts:
        at.setdefault((float(g.loc[i, COVERAGE_RATE]), float(g.loc[i, UNIQUENESS_RATE])), []).append(i)
    return at


def _label(g, i: int) -> str:
    n = int(g.loc[i, "n_seeds"])
    return str(g.loc[i, "group"]) + (f" (n={n})" if n > 1 else "")


def _title(g, pts: Sequence[int]) -> str:
    title = "Coverage vs uniqueness (Pareto front: both maximised)"
    if any(int(g.loc[i, "n_seeds"]) > 1 for i in pts):
        title += "\nmeans over seeds with 95% t-intervals"
    if len(pts) > 1 and len(_coincident(g, pts)) == 1:
        title += f"\nall {len(pts)} points coincide"
    return title


def starts(g, pts: Sequence[int]) -> list[int]:
    """The arms among ``pts`` whose start point (``start/*`` means: eval_base) is known."""
    if START_COVERAGE not in g.columns or START_UNIQUENESS not in g.columns:
        return []
    return [i for i in pts if _finite(g.loc[i, START_COVERAGE]) and _finite(g.loc[i, START_UNIQUENESS])]


def _legend_name(g, i: int, acc: Sequence[float]) -> str:
    return _label(g, i) + ("" if math.isnan(acc[i]) else f" · NLI {acc[i]:.2f}")


def plot_pareto(records: Sequence[RunRecord], df, path: Path, arms: Arms | None = None) -> Path:
    """Coverage rate vs uniqueness rate of the completed runs (``df`` = ``runs_table(records)``, with the report's
    ``start/*`` columns when it has them), one point per arm in its colour (the mean, with 95% error bars where an
    arm has several seeds), the Pareto front as a step line, each point labelled by the overrides that vary; the
    start points (eval_base) as open squares with an arrow to the trained point."""
    plt = _plt()
    g = group_table(records, df)
    arms = arms or arms_of(g, records)
    pts = _points(g)
    acc = _accuracy(g)
    fig, ax = plt.subplots(figsize=(8, 5.8))
    x = lambda idx: [float(g.loc[i, COVERAGE_RATE]) for i in idx]
    y = lambda idx: [float(g.loc[i, UNIQUENESS_RATE]) for i in idx]
    colour = {i: arms.colour.get(str(g.loc[i, "group"]), "#7f7f7f") for i in range(len(g))}
    start = starts(g, pts)
    for n, i in enumerate(start):
        sx, sy = float(g.loc[i, START_COVERAGE]), float(g.loc[i, START_UNIQUENESS])
        ax.annotate("", xy=(x([i])[0], y([i])[0]), xytext=(sx, sy), zorder=1,
                    arrowprops={"arrowstyle": "->", "color": colour[i], "lw": 1, "linestyle": ":", "alpha": 0.8})
        ax.scatter([sx], [sy], marker="s", s=70, facecolors="none", edgecolors=colour[i], linewidths=1.6, zorder=2,
                   label=START_LABEL if n == 0 else None)
    replicated = [i for i in pts if int(g.loc[i, "n_seeds"]) > 1]
    for n, i in enumerate(replicated):
        ax.errorbar(x([i]), y([i]), xerr=[_half(g, COVERAGE_RATE, i)], yerr=[_half(g, UNIQUENESS_RATE, i)],
                    fmt="none", ecolor=colour[i], elinewidth=1, capsize=3, zorder=2,
                    label="95% interval over seeds" if n == 0 else None)
    for i in pts:
        ax.scatter(x([i]), y([i]), c=colour[i], s=60, edgecolors="black", linewidths=0.5, zorder=3,
                   label=_legend_name(g, i, acc))
    front = pareto_front([(float(g.loc[i, COVERAGE_RATE]), float(g.loc[i, UNIQUENESS_RATE])) for i in range(len(g))])
    if front:
        ax.plot(x(front), y(front), drawstyle="steps-pre", color=FRONT_COLOUR, lw=1.5, zorder=1, marker="o", ms=13,
                mfc="none", mec=FRONT_COLOUR, label="Pareto front")  # the rings show a front of one point too
    at = _coincident(g, pts)
    mid = (min(x(pts)) + max(x(pts))) / 2 if pts else 0.0
    for (px, py), idx in at.items():  # labels point inwards so that the outermost ones stay inside the axes
        right = px > mid
        ax.annotate("\n".join(_label(g, i) for i in idx), (px, py), textcoords="offset points",
                    xytext=(-7 if right else 7, 7), ha="right" if right else "left", fontsize=8)
    ax.margins(x=0.1, y=0.12)
    if not pts:
        ax.text(0.5, 0.5, "no completed run with coverage and uniqueness rates", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel(f"coverage rate ({EVAL_STAGE}, share of reference perspectives covered)")
    ax.set_ylabel(f"uniqueness rate ({EVAL_STAGE}, share of unique perspectives)")
    ax.set_title(_title(g, pts), fontsize=10)
    ax.grid(alpha=0.3)
    if pts:
        ax.legend(loc="best", fontsize=9, framealpha=0.9, title="arm (colour)" if len(pts) > 1 else None,
                  title_fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fmt(value: float, half: float = math.nan) -> str:
    return f"{value:.4g}" + ("" if math.isnan(half) else f" ± {half:.2g}")


def _hover(g, i: int) -> str:
    """One group's hover text (HTML): its runs and seeds, overrides, rates, reference total and NLI numbers."""
    def val(col: str) -> str:
        return _fmt(number(g.loc[i, col]), number(g.loc[i, col + CI_SUFFIX]) if col + CI_SUFFIX in g.columns
                    else math.nan)

    esc = html.escape
    n = int(g.loc[i, "n_seeds"])
    lines = [f"<b>{esc(str(g.loc[i, 'group']))}</b>",
             f"runs: {esc(str(g.loc[i, 'runs']))}" + (f" (seeds {esc(str(g.loc[i, 'seeds']))}, n={n})" if n > 1 else ""),
             f"overrides: {esc(str(g.loc[i, 'overrides']) or '(none)')}",
             f"coverage rate: {val(COVERAGE_RATE)}", f"uniqueness rate: {val(UNIQUENESS_RATE)}"]
    ref = f"reward/{REFERENCE_TOTAL}"
    if ref in g.columns and _finite(g.loc[i, ref]):
        lines.append(f"total at reference weights: {val(ref)}")
    nli = [c for c in g.columns if c.startswith("nli/") and not c.endswith((CI_SUFFIX, N_SUFFIX, "_stderr"))
           and _finite(g.loc[i, c])]
    if nli:
        backend = str(g.loc[i, "nli_backend"]) if "nli_backend" in g.columns else ""
        lines.append(f"NLI accuracy{f' ({esc(backend)})' if backend else ''}: "
                     + ", ".join(f"{esc(c.removeprefix('nli/'))} {val(c)}" for c in nli))
    else:
        lines.append("NLI accuracy: none recorded")
    return "<br>".join(lines)


def _rate_range(g, col: str, pts: Sequence[int], extra: Sequence[float] = ()) -> list[float]:
    """An axis range around the points, their error bars and ``extra`` values (start points), at least 0.1 wide,
    not far outside 0..1."""
    lo = min([float(g.loc[i, col]) - _half(g, col, i) for i in pts] + list(extra))
    hi = max([float(g.loc[i, col]) + _half(g, col, i) for i in pts] + list(extra))
    mid, half = (lo + hi) / 2, max(hi - lo, 0.1) / 2 * 1.3
    return [max(mid - half, -0.03), min(mid + half, 1.03)]


def scatter_figure(g, arms: Arms | None = None):
    """The interactive coverage-vs-uniqueness scatter of a group table (``table.group_table``): one trace per arm
    in its colour (``arms``; None = ``arms_of(g)``) with 95% error bars over seeds, the Pareto front of the means as
    a step line, the start points (eval_base) as open squares joined to the trained point; the hover text names
    the arm's runs, overrides and NLI numbers (all arms at that point when several coincide). A
    ``plotly.graph_objects.Figure``."""
    import plotly.graph_objects as go

    arms = arms or arms_of(g)
    pts = _points(g)
    acc = _accuracy(g)
    hover = {i: _hover(g, i) for i in pts}
    text = {i: "" for i in pts}
    for idx in _coincident(g, pts).values():
        head = f"<i>{len(idx)} groups at this point</i><br>" if len(idx) > 1 else ""
        for i in idx:
            hover[i] = head + "<br><br>".join(_hover(g, j) for j in idx)
        text[idx[0]] = "<br>".join(html.escape(_label(g, j)) for j in idx)
    fig = go.Figure()
    front = pareto_front([(float(g.loc[i, COVERAGE_RATE]), float(g.loc[i, UNIQUENESS_RATE])) for i in range(len(g))])
    if front:
        fig.add_trace(go.Scatter(x=[g.loc[i, COVERAGE_RATE] for i in front], y=[g.loc[i, UNIQUENESS_RATE] for i in front],
                                 mode="lines+markers", line={"color": FRONT_COLOUR, "width": 2, "shape": "vh"},
                                 marker={"symbol": "circle-open", "size": 22, "color": FRONT_COLOUR, "line": {"width": 2}},
                                 name="Pareto front", hoverinfo="skip"))
    start = starts(g, pts)
    for n, i in enumerate(start):
        c = arms.colour.get(str(g.loc[i, "group"]), "#7f7f7f")
        sx, sy = float(g.loc[i, START_COVERAGE]), float(g.loc[i, START_UNIQUENESS])
        where = f"coverage rate {sx:.4g}, uniqueness rate {sy:.4g}"
        fig.add_trace(go.Scatter(
            x=[sx, g.loc[i, COVERAGE_RATE]], y=[sy, g.loc[i, UNIQUENESS_RATE]], mode="lines+markers",
            line={"color": c, "width": 1.2, "dash": "dot"},
            marker={"symbol": ["square-open", "circle"], "size": [12, 0], "color": c, "line": {"width": 2}},
            name=START_LABEL, legendgroup="start", showlegend=n == 0,
            hovertext=[f"{html.escape(_label(g, i))}: {START_LABEL}<br>{where}", ""], hoverinfo="text"))

    def bars(i: int, col: str) -> dict:
        return {"type": "data", "array": [_half(g, col, i) or None], "visible": True, "color": arms.colour.get(
            str(g.loc[i, "group"]), "#7f7f7f"), "thickness": 1.2, "width": 4}

    for i in pts:
        fig.add_trace(go.Scatter(
            x=[g.loc[i, COVERAGE_RATE]], y=[g.loc[i, UNIQUENESS_RATE]],
            mode="markers+text" if len(pts) <= 12 else "markers", name=_legend_name(g, i, acc),
            marker={"size": 14, "color": arms.colour.get(str(g.loc[i, "group"]), "#7f7f7f"),
                    "line": {"width": 1, "color": "black"}},
            error_x=bars(i, COVERAGE_RATE), error_y=bars(i, UNIQUENESS_RATE), text=[text[i]],
            textposition="top right", textfont={"size": 11}, hovertext=[hover[i]], hoverinfo="text"))
    if not pts:
        fig.add_annotation(text="no completed run with coverage and uniqueness rates", showarrow=False,
                           xref="paper", yref="paper", x=0.5, y=0.5)
    for axis, col in (("xaxis", COVERAGE_RATE), ("yaxis", UNIQUENESS_RATE)):
        if pts:
            extra = [float(g.loc[i, START_COVERAGE if col == COVERAGE_RATE else START_UNIQUENESS]) for i in start]
            fig.update_layout({axis: {"range": _rate_range(g, col, pts, extra)}})
    head, *sub = _title(g, pts).split("\n")
    fig.update_layout(title={"text": head + (f"<br><sup>{'; '.join(sub)}</sup>" if sub else "")},
                      xaxis_title=f"coverage rate ({EVAL_STAGE})", yaxis_title=f"uniqueness rate ({EVAL_STAGE})",
                      template="plotly_white", height=560, margin={"l": 70, "r": 30, "t": 80, "b": 60},
                      legend={"orientation": "h", "x": 0, "y": -0.16}, hoverlabel={"align": "left"})
    return fig
