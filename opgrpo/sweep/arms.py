"""The arms of a sweep report and how each is drawn: one colour per arm (a group of seed replicates,
``table.group_table``), the same in every figure and in the tables of the page; inside an arm each run (seed) its own
dash and marker, so that replicates with identical numbers stay visible and the legend tells them apart.

Runs that belong to no arm (failed or unfinished runs that left GRPO curves) get colours after the arms'. The
palette leaves out the red of the Pareto front (``plots.FRONT_COLOUR``). Plain Python, no plotting library.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from opgrpo.sweep.records import RunRecord

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f",
           "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5", "#c49c94", "#f7b6d2", "#9edae5", "#dbdb8d", "#393b79")
"""Matplotlib's tab10 then tab20's light shades, red left out; more arms than colours reuse them in order."""
DASHES = ("-", "--", ":", "-.")
MARKERS = "osD^vP*X"


@dataclass
class Arms:
    """``colour``: arm -> hex colour, in the groups' order; ``arm_of``: run name -> its arm; ``rank``: run name ->
    its place inside its arm (0 for the first seed)."""

    colour: dict[str, str] = field(default_factory=dict)
    arm_of: dict[str, str] = field(default_factory=dict)
    rank: dict[str, int] = field(default_factory=dict)

    def run_colour(self, run: str) -> str:
        return self.colour.get(self.arm_of.get(run, ""), PALETTE[-1])

    def run_dash(self, run: str) -> str:
        return DASHES[self.rank.get(run, 0) % len(DASHES)]

    def run_marker(self, run: str) -> str:
        return MARKERS[self.rank.get(run, 0) % len(MARKERS)]


def arms_of(g, records: Sequence[RunRecord] = ()) -> Arms:
    """The arms of a group table ``g`` (``table.group_table``: columns ``group`` and ``runs``), and of ``records``
    that are in no group (each its own arm, named ``<run> (<status>)``)."""
    arms = Arms()
    groups = [str(x) for x in g["group"]] if len(g) else []
    members = [str(x).split(", ") for x in g["runs"]] if len(g) else []
    for arm, runs in zip(groups, members):
        arms.colour[arm] = PALETTE[len(arms.colour) % len(PALETTE)]
        for k, run in enumerate(runs):
            arms.arm_of[run], arms.rank[run] = arm, k
    for rec in records:
        if rec.name not in arms.arm_of:
            arm = f"{rec.name} ({rec.status})"
            arms.colour[arm] = PALETTE[len(arms.colour) % len(PALETTE)]
            arms.arm_of[rec.name], arms.rank[rec.name] = arm, 0
    return arms
