"""The sweep report's figures: the coverage-vs-uniqueness scatter (an interactive plotly figure for the HTML
page, :func:`scatter_figure`; a PNG, :func:`plot_pareto`) and the reward-component curves over GRPO steps
(:func:`plot_curves`, PNG), one line per run (the components and the total at the reference weights; never a
run's own total, whose weights differ between the runs of a weight sweep).

Both scatters show one point per group of seed replicates (``table.group_table``): the mean over the seeds
with its 95% interval as error bars, coloured by NLI overall accuracy on a fixed 0..1 scale, the Pareto front
of the means as a step line. matplotlib runs on the Agg backend; plotly is imported only by
:func:`scatter_figure`.
"""
from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path

from opgrpo.sweep.records import EVAL_STAGE, RunRecord
from opgrpo.sweep.seeds import CI_SUFFIX, N_SUFFIX
from opgrpo.sweep.table import (
    COVERAGE_RATE,
    NLI_OVERALL,
    REFERENCE_TOTAL,
    UNIQUENESS_RATE,
    curve_components,
    curve_key,
    group_table,
    number,
    pareto_front,
    reference_curve,
    reference_weights,
    run_label,
    varying_keys,
    weights_text,
)
from opgrpo.utils.runfiles import COMPLETED

__all__ = ["SCATTER_DIV", "plot_curves", "plot_pareto", "scatter_figure"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


FRONT_COLOUR = "#d62728"
NO_NLI_COLOUR = "#b0b0b0"
SCATTER_DIV = "pareto-scatter"


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


def _nli_title(g) -> str:
    backends = sorted({b for v in g.get("nli_backend", []) for b in str(v).split(" / ") if b})
    return "NLI overall accuracy" + (f" ({', '.join(backends)})" if backends else "")


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


def plot_pareto(records: Sequence[RunRecord], df, path: Path) -> Path:
    """Coverage rate vs uniqueness rate of the completed runs (``df`` = ``runs_table(records)``), one point per
    group of seed replicates (the mean, with 95% error bars where a group has several seeds), the Pareto front
    as a step line, each point labelled by the overrides that vary, coloured by NLI overall accuracy on 0..1
    (grey where a group has none)."""
    plt = _plt()
    g = group_table(records, df)
    pts = _points(g)
    acc = _accuracy(g)
    fig, ax = plt.subplots(figsize=(8, 5.8))
    x = lambda idx: [float(g.loc[i, COVERAGE_RATE]) for i in idx]
    y = lambda idx: [float(g.loc[i, UNIQUENESS_RATE]) for i in idx]
    replicated = [i for i in pts if int(g.loc[i, "n_seeds"]) > 1]
    if replicated:
        ax.errorbar(x(replicated), y(replicated), xerr=[_half(g, COVERAGE_RATE, i) for i in replicated],
                    yerr=[_half(g, UNIQUENESS_RATE, i) for i in replicated], fmt="none", ecolor="0.35",
                    elinewidth=1, capsize=3, zorder=2, label="95% interval over seeds")
    with_acc = [i for i in pts if not math.isnan(acc[i])]
    without = [i for i in pts if math.isnan(acc[i])]
    if with_acc:
        sc = ax.scatter(x(with_acc), y(with_acc), c=[acc[i] for i in with_acc], cmap="viridis", vmin=0.0, vmax=1.0,
                        s=60, edgecolors="black", linewidths=0.5, zorder=3)
        fig.colorbar(sc, ax=ax, label=_nli_title(g))
    if without:
        ax.scatter(x(without), y(without), c=NO_NLI_COLOUR, s=60, edgecolors="black", linewidths=0.5, zorder=3,
                   label="no NLI accuracy")
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
    if front or without or replicated:
        ax.legend(loc="best", fontsize=9, framealpha=0.9)
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


def _rate_range(g, col: str, pts: Sequence[int]) -> list[float]:
    """An axis range around the points and their error bars, at least 0.1 wide, not far outside 0..1."""
    lo = min(float(g.loc[i, col]) - _half(g, col, i) for i in pts)
    hi = max(float(g.loc[i, col]) + _half(g, col, i) for i in pts)
    mid, half = (lo + hi) / 2, max(hi - lo, 0.1) / 2 * 1.3
    return [max(mid - half, -0.03), min(mid + half, 1.03)]


def scatter_figure(g):
    """The interactive coverage-vs-uniqueness scatter of a group table (``table.group_table``): one point per
    group with 95% error bars over seeds, coloured by NLI overall accuracy on 0..1 (grey: none), the Pareto
    front of the means as a step line; the hover text names the group's runs, overrides and NLI numbers (all
    groups at that point when several coincide). A ``plotly.graph_objects.Figure``."""
    import plotly.graph_objects as go

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

    def add(idx: list[int], name: str, marker: dict) -> None:
        def bars(col: str) -> dict:
            return {"type": "data", "array": [_half(g, col, i) or None for i in idx], "visible": True,
                    "color": "rgba(60, 60, 60, 0.55)", "thickness": 1.2, "width": 4}

        fig.add_trace(go.Scatter(
            x=[g.loc[i, COVERAGE_RATE] for i in idx], y=[g.loc[i, UNIQUENESS_RATE] for i in idx],
            mode="markers+text" if len(pts) <= 12 else "markers", name=name, marker=marker,
            error_x=bars(COVERAGE_RATE), error_y=bars(UNIQUENESS_RATE), text=[text[i] for i in idx],
            textposition="top right", textfont={"size": 11}, hovertext=[hover[i] for i in idx], hoverinfo="text"))

    with_acc = [i for i in pts if not math.isnan(acc[i])]
    without = [i for i in pts if math.isnan(acc[i])]
    outline = {"width": 1, "color": "black"}
    if with_acc:
        add(with_acc, "runs (colour: NLI overall accuracy)",
            {"size": 14, "color": [acc[i] for i in with_acc], "colorscale": "Viridis", "cmin": 0.0, "cmax": 1.0,
             "line": outline, "colorbar": {"title": {"text": _nli_title(g).replace(" (", "<br>(")}}})
    if without:
        add(without, "runs without NLI accuracy", {"size": 14, "color": NO_NLI_COLOUR, "line": outline})
    if not pts:
        fig.add_annotation(text="no completed run with coverage and uniqueness rates", showarrow=False,
                           xref="paper", yref="paper", x=0.5, y=0.5)
    for axis, col in (("xaxis", COVERAGE_RATE), ("yaxis", UNIQUENESS_RATE)):
        if pts:
            fig.update_layout({axis: {"range": _rate_range(g, col, pts)}})
    head, *sub = _title(g, pts).split("\n")
    fig.update_layout(title={"text": head + (f"<br><sup>{'; '.join(sub)}</sup>" if sub else "")},
                      xaxis_title=f"coverage rate ({EVAL_STAGE})", yaxis_title=f"uniqueness rate ({EVAL_STAGE})",
                      template="plotly_white", height=560, margin={"l": 70, "r": 30, "t": 80, "b": 60},
                      legend={"orientation": "h", "x": 0, "y": -0.16}, hoverlabel={"align": "left"})
    return fig


def _curve_points(rec: RunRecord, comp: str, weights: dict[str, float]) -> list[tuple[float, float]]:
    if comp == REFERENCE_TOTAL:
        return reference_curve(rec.curves, weights)
    pts = [(number(row.get("step")), number(row.get(curve_key(comp)))) for row in rec.curves if curve_key(comp) in row]
    return [(s, v) for s, v in pts if not (math.isnan(s) or math.isnan(v))]


def _panels(records: Sequence[RunRecord], comps: Sequence[str], weights: dict[str, float]
            ) -> list[tuple[list[str], list[list[tuple[float, float]]]]]:
    """(components, one curve per record) per panel; a component whose curves equal an earlier panel's in every
    run joins that panel instead of repeating it."""
    panels: list[tuple[list[str], list[list[tuple[float, float]]]]] = []
    for comp in comps:
        data = [_curve_points(r, comp, weights) for r in records]
        if not any(data):
            continue
        same = next((p for p in panels if p[1] == data), None)
        if same is not None:
            same[0].append(comp)
        else:
            panels.append(([comp], data))
    return panels


def _panel_title(names: Sequence[str]) -> tuple[str, str]:
    """(title, y label) of a panel showing the components ``names`` (identical curves when several)."""
    comps = [n for n in names if n != REFERENCE_TOTAL]
    parts = [*comps, *(["total at reference weights"] if REFERENCE_TOTAL in names else [])]
    if comps and len(parts) == 1:
        title, ylabel = f"{comps[0]} (mean score)", "mean over the step's completions"
    elif not comps:
        title, ylabel = "total at reference weights", "sum of weight x mean score"
    else:
        title = " = ".join(parts) + (" (mean score, identical)" if len(comps) == len(parts) else " (identical)")
        ylabel = "mean over the step's completions" if len(comps) == len(parts) else "mean score / weighted sum"
    return title, ylabel


def plot_curves(records: Sequence[RunRecord], path: Path, reference: dict[str, float] | None = None) -> Path | None:
    """One subplot per reward component and one for the total at the reference weights (``reference``, None =
    the paper weights), one line per run; None (no file) when no run has GRPO metrics. A run's own total is
    not drawn: its weights differ between the runs of a weight sweep. A component whose curves are the same as
    an earlier panel's in every run is named in that panel's title, not drawn again."""
    with_curves = [r for r in records if curve_components(r.curves)]
    if not with_curves:
        return None
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    weights = reference_weights(reference)
    comps: list[str] = []
    for r in with_curves:
        comps += [c for c in curve_components(r.curves) if c not in comps]
    comps.append(REFERENCE_TOTAL)
    panels = _panels(with_curves, comps, weights)
    keys = varying_keys([r for r in records if r.status == COMPLETED] or records)
    labels = [run_label(r, keys) for r in with_curves]
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.8 * ncols, 3.5 * nrows + 0.6), squeeze=False)
    colours = plt.get_cmap("tab10" if len(with_curves) <= 10 else "tab20")
    n = len(with_curves)
    for ax, (names, data) in zip(axes.flat, panels):
        for k, pts in enumerate(data):
            if pts:  # earlier runs wider, each its own marker: runs with the same values stay visible under others
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="osD^vP*X"[k % 8], ms=6 - 3 * k / max(n - 1, 1),
                        lw=1 + 3 * (n - 1 - k) / max(n - 1, 1), alpha=0.85, label=labels[k],
                        color=colours(k % colours.N))
        title, ylabel = _panel_title(names)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.set_xlabel("GRPO step", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles, shown = [], []
    for ax in axes.flat:  # every run once, even when the first panel lacks some
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in shown:
                handles.append(h)
                shown.append(lab)
    ncol = max(1, min(4, len(shown)))
    if handles:
        fig.legend(handles, shown, loc="lower center", ncol=ncol, fontsize=9, frameon=False, title="run",
                   title_fontsize=9, bbox_to_anchor=(0.5, 0.0))
    title = "Reward components per GRPO step (each run's own total is not drawn: its weights differ)"
    if any(REFERENCE_TOTAL in names for names, _ in panels):
        title += f"\ntotal at reference weights: {weights_text(weights)}"
    fig.suptitle(title, fontsize=10)
    legend_h = (0.35 + 0.22 * math.ceil(len(shown) / ncol)) / fig.get_figheight() if handles else 0.0
    fig.tight_layout(rect=(0, legend_h, 1, 0.95 if "\n" in title else 0.97))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
