"""The sweep report's figures (matplotlib, Agg backend): the coverage-vs-uniqueness Pareto plot and the
reward-component curves over GRPO steps, one line per run (the components and the total at the reference
weights; never a run's own total, whose weights differ between the runs of a weight sweep)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from opgrpo.sweep.records import EVAL_STAGE, RunRecord
from opgrpo.sweep.table import (
    COVERAGE_RATE,
    NLI_OVERALL,
    REFERENCE_TOTAL,
    UNIQUENESS_RATE,
    curve_components,
    curve_key,
    number,
    pareto_front,
    reference_curve,
    reference_weights,
    run_label,
    varying_keys,
    weights_text,
)
from opgrpo.utils.runfiles import COMPLETED

__all__ = ["plot_curves", "plot_pareto"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colour_by(records: Sequence[RunRecord], df, ok: Sequence[int]) -> tuple[list[float], str]:
    """The points' colour values and the colour bar's label: NLI overall accuracy when it differs between the
    runs, else the total at the reference weights (NaN = grey)."""
    acc = [float(df.loc[i, NLI_OVERALL]) for i in ok]
    finite = [a for a in acc if not math.isnan(a)]
    if len(set(finite)) > 1:
        backends = sorted({records[i].nli_backend for i in ok if records[i].nli_backend})
        return acc, "NLI overall accuracy" + (f" ({', '.join(backends)})" if backends else "")
    col = f"reward/{REFERENCE_TOTAL}"
    ref = [float(df.loc[i, col]) for i in ok] if col in df.columns else [math.nan] * len(ok)
    label = "reward total at reference weights"
    if finite:
        label += f"\n(NLI accuracy {finite[0]:.3g} in every run)"
    return ref, label


def plot_pareto(records: Sequence[RunRecord], df, path: Path) -> Path:
    """Coverage rate vs uniqueness rate of the completed runs (``df`` = ``runs_table(records)``), the Pareto
    front as a step line, each point labelled by the overrides that vary, coloured by NLI overall accuracy
    (by the total at the reference weights when the accuracy is the same in every run; grey where a run has
    no colour value)."""
    plt = _plt()
    ok = [i for i, r in enumerate(records) if r.status == COMPLETED]
    keys = varying_keys([records[i] for i in ok])
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    xs = [float(df.loc[i, COVERAGE_RATE]) for i in ok]
    ys = [float(df.loc[i, UNIQUENESS_RATE]) for i in ok]
    colour, colour_label = _colour_by(records, df, ok)
    plotted = [j for j in range(len(ok)) if not (math.isnan(xs[j]) or math.isnan(ys[j]))]
    with_colour = [j for j in plotted if not math.isnan(colour[j])]
    without = [j for j in plotted if math.isnan(colour[j])]
    if with_colour:
        sc = ax.scatter([xs[j] for j in with_colour], [ys[j] for j in with_colour],
                        c=[colour[j] for j in with_colour], cmap="viridis", s=60, edgecolors="black",
                        linewidths=0.5, zorder=3)
        fig.colorbar(sc, ax=ax, label=colour_label)
    if without:
        ax.scatter([xs[j] for j in without], [ys[j] for j in without], c="lightgrey", s=60, edgecolors="black",
                   linewidths=0.5, zorder=3, label="no " + colour_label.split("\n")[0])
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


def plot_curves(records: Sequence[RunRecord], path: Path, reference: dict[str, float] | None = None) -> Path | None:
    """One subplot per reward component and one for the total at the reference weights (``reference``, None =
    the paper weights), one line per run; None (no file) when no run has GRPO metrics. A run's own total is
    not drawn: its weights differ between the runs of a weight sweep."""
    with_curves = [r for r in records if curve_components(r.curves)]
    if not with_curves:
        return None
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    weights = reference_weights(reference)
    comps: list[str] = []
    for r in with_curves:
        comps += [c for c in curve_components(r.curves) if c not in comps]
    if any(reference_curve(r.curves, weights) for r in with_curves):
        comps.append(REFERENCE_TOTAL)
    keys = varying_keys([r for r in records if r.status == COMPLETED] or records)
    ncols = min(3, len(comps))
    nrows = math.ceil(len(comps) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.5 * ncols, 3.4 * nrows), squeeze=False)
    for ax, comp in zip(axes.flat, comps):
        for r in with_curves:
            if comp == REFERENCE_TOTAL:
                pts = reference_curve(r.curves, weights)
            else:
                pts = [(number(row.get("step")), number(row.get(curve_key(comp)))) for row in r.curves
                       if curve_key(comp) in row]
                pts = [(s, v) for s, v in pts if not (math.isnan(s) or math.isnan(v))]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, lw=1.2, label=run_label(r, keys))
        if comp == REFERENCE_TOTAL:
            ax.set_title("total at reference weights", fontsize=10)
            ax.set_ylabel("sum of weight x mean score")
        else:
            ax.set_title(f"{comp} (mean score)", fontsize=10)
            ax.set_ylabel("mean over the step's completions")
        ax.set_xlabel("GRPO step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(comps):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=7, frameon=False,
                   bbox_to_anchor=(0.5, 0.0))
    title = "Reward components per GRPO step (each run's own total is not drawn: its weights differ)"
    if REFERENCE_TOTAL in comps:
        title += f"\ntotal at reference weights: {weights_text(weights)}"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.04 + 0.03 * math.ceil(len(labels) / 4), 1, 0.95 if "\n" in title else 0.97))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
