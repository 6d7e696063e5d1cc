"""The sweep report's curves over GRPO steps (PNG), one line per run coloured by its arm (``opgrpo.sweep.arms``):

- :func:`plot_curves` (``curves.png``): the reward components and the total at the reference weights (never a run's
  own total, whose weights differ between the runs of a weight sweep);
- :func:`plot_dynamics` (``dynamics.png``): what training did besides the reward, as TRL logs it in
  ``grpo/metrics.jsonl``: KL to the reference policy, entropy, completion length, the share of completions cut at
  the length limit, the share of tokens whose probability ratio was clipped, the gradient norm.

Inside an arm each seed has its own dash and marker, earlier runs are drawn wider and every run is shifted by a
few hundredths of a step, so runs with the same values stay visible beside each other. matplotlib runs on the Agg backend.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from opgrpo.sweep.arms import PALETTE, Arms
from opgrpo.sweep.records import RunRecord
from opgrpo.sweep.table import (
    REFERENCE_TOTAL,
    curve_components,
    curve_key,
    number,
    reference_curve,
    reference_weights,
    run_label,
    varying_keys,
    weights_text,
)
from opgrpo.utils.runfiles import COMPLETED

__all__ = ["DYNAMICS", "plot_curves", "plot_dynamics"]

DYNAMICS = (
    ("kl", "KL to the reference policy", "kl"),
    ("entropy", "entropy of the policy", "nats per token"),
    ("completions/mean_length", "completion length", "mean tokens per completion"),
    ("completions/clipped_ratio", "completions cut at max length", "share of the step's completions"),
    ("clip_ratio/region_mean", "clipped probability ratio", "share of tokens (PPO clip)"),
    ("grad_norm", "gradient norm", "norm before clipping"),
)
"""(``grpo/metrics.jsonl`` key as TRL logs it, panel title, y label) of :func:`plot_dynamics`."""


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


Curve = list[tuple[float, float]]


def _points(rec: RunRecord, key: str) -> Curve:
    pts = [(number(row.get("step")), number(row.get(key))) for row in rec.curves if key in row]
    return [(s, v) for s, v in pts if not (math.isnan(s) or math.isnan(v))]


def _curve_points(rec: RunRecord, comp: str, weights: dict[str, float]) -> Curve:
    if comp == REFERENCE_TOTAL:
        return reference_curve(rec.curves, weights)
    return _points(rec, curve_key(comp))


def _panels(records: Sequence[RunRecord], comps: Sequence[str], weights: dict[str, float]
            ) -> list[tuple[list[str], list[Curve]]]:
    """(components, one curve per record) per panel; a component whose curves equal an earlier panel's in every
    run joins that panel instead of repeating it."""
    panels: list[tuple[list[str], list[Curve]]] = []
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


def _grid(records: Sequence[RunRecord], runs: Sequence[RunRecord], panels: Sequence[tuple[str, str, list[Curve]]],
          arms: Arms, title: str, path: Path) -> Path:
    """One subplot per panel (title, y label, one curve per run of ``runs``), lines coloured by arm, a shared legend
    of every run below, saved to ``path``."""
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    keys = varying_keys([r for r in records if r.status == COMPLETED] or records)
    labels = [run_label(r, keys) for r in runs]
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.8 * ncols, 3.5 * nrows + 0.6), squeeze=False)
    n = len(runs)
    spread = min(0.06, 0.3 / max(n - 1, 1))  # runs shifted by a few hundredths of a step: equal lines side by side
    for ax, (panel_title, ylabel, data) in zip(axes.flat, panels):
        for k, (rec, pts) in enumerate(zip(runs, data)):
            if pts:  # earlier runs wider, each seed its own dash and marker: equal lines stay visible
                dx = (k - (n - 1) / 2) * spread
                ax.plot([p[0] + dx for p in pts], [p[1] for p in pts], color=arms.run_colour(rec.name),
                        linestyle=arms.run_dash(rec.name), marker=arms.run_marker(rec.name),
                        ms=6.5 - 3 * k / max(n - 1, 1), lw=1 + 2.5 * (n - 1 - k) / max(n - 1, 1), alpha=0.85,
                        label=labels[k])
        ax.set_title(panel_title, fontsize=10)
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
        fig.legend(handles, shown, loc="lower center", ncol=ncol, fontsize=9, frameon=False,
                   title="run (colour: arm; dash and marker: seed; runs shifted slightly along x)", title_fontsize=9, bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(title, fontsize=10)
    legend_h = (0.35 + 0.22 * math.ceil(len(shown) / ncol)) / fig.get_figheight() if handles else 0.0
    fig.tight_layout(rect=(0, legend_h, 1, 0.95 if "\n" in title else 0.97))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_curves(records: Sequence[RunRecord], path: Path, reference: dict[str, float] | None = None,
                arms: Arms | None = None) -> Path | None:
    """One subplot per reward component and one for the total at the reference weights (``reference``, None =
    the paper weights), one line per run coloured by its arm (``arms``; None: each run its own colour); None (no
    file) when no run has GRPO metrics. A run's own total is not drawn: its weights differ between the runs of a
    weight sweep. A component whose curves are the same as an earlier panel's in every run is named in that
    panel's title, not drawn again."""
    runs = [r for r in records if curve_components(r.curves)]
    if not runs:
        return None
    weights = reference_weights(reference)
    comps: list[str] = []
    for r in runs:
        comps += [c for c in curve_components(r.curves) if c not in comps]
    comps.append(REFERENCE_TOTAL)
    panels = [(*_panel_title(names), data) for names, data in _panels(runs, comps, weights)]
    title = "Reward components per GRPO step (each run's own total is not drawn: its weights differ)"
    if any(REFERENCE_TOTAL in names for names, _ in _panels(runs, comps, weights)):
        title += f"\ntotal at reference weights: {weights_text(weights)}"
    return _grid(records, runs, panels, arms or _own_colours(runs), title, path)


def plot_dynamics(records: Sequence[RunRecord], path: Path, arms: Arms | None = None) -> Path | None:
    """The training dynamics of :data:`DYNAMICS` over GRPO steps, one subplot per quantity some run logged, one
    line per run coloured by its arm; None (no file) when no run logged any of them."""
    runs = [r for r in records if any(_points(r, key) for key, _, _ in DYNAMICS)]
    if not runs:
        return None
    panels = []
    for key, title, ylabel in DYNAMICS:
        data = [_points(r, key) for r in runs]
        if any(data):
            panels.append((f"{title} ({key})", ylabel, data))
    title = "Training dynamics per GRPO step (grpo/metrics.jsonl, as TRL logs them)"
    return _grid(records, runs, panels, arms or _own_colours(runs), title, path)


def _own_colours(runs: Sequence[RunRecord]) -> Arms:
    """Each run its own arm (a caller without a group table)."""
    arms = Arms()
    for k, rec in enumerate(runs):
        arms.colour[rec.name] = PALETTE[k % len(PALETTE)]
        arms.arm_of[rec.name], arms.rank[rec.name] = rec.name, 0
    return arms
