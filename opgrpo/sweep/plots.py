"""The sweep report's figures (matplotlib, Agg backend): the coverage-vs-uniqueness Pareto plot and the
reward-component curves over GRPO steps, one line per run."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from opgrpo.sweep.records import EVAL_STAGE, RunRecord
from opgrpo.sweep.table import (
    COVERAGE_RATE,
    NLI_OVERALL,
    UNIQUENESS_RATE,
    curve_components,
    curve_key,
    number,
    pareto_front,
    run_label,
    varying_keys,
)
from opgrpo.utils.runfiles import COMPLETED

__all__ = ["plot_curves", "plot_pareto"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_pareto(records: Sequence[RunRecord], df, path: Path) -> Path:
    """Coverage rate vs uniqueness rate of the completed runs (``df`` = ``runs_table(records)``), the Pareto
    front as a step line, each point labelled by the overrides that vary, coloured by NLI overall accuracy
    (grey where a run has none)."""
    plt = _plt()
    ok = [i for i, r in enumerate(records) if r.status == COMPLETED]
    keys = varying_keys([records[i] for i in ok])
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
        at.setdefault((xs[j], ys[j]), []).append(run_label(records[ok[j]], keys))
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
    with_curves = [r for r in records if curve_components(r.curves)]
    if not with_curves:
        return None
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    comps: list[str] = []
    for r in with_curves:
        comps += [c for c in curve_components(r.curves) if c not in comps]
    keys = varying_keys([r for r in records if r.status == COMPLETED] or records)
    ncols = min(3, len(comps))
    nrows = math.ceil(len(comps) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.5 * ncols, 3.3 * nrows), squeeze=False)
    for ax, comp in zip(axes.flat, comps):
        for r in with_curves:
            pts = [(number(row.get("step")), number(row.get(curve_key(comp)))) for row in r.curves
                   if curve_key(comp) in row]
            pts = [(s, v) for s, v in pts if not (math.isnan(s) or math.isnan(v))]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, lw=1.2, label=run_label(r, keys))
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
