"""Every knob of the OP reward (weights, thresholds, buckets, masking, aggregation), paper preset by default.

The component names (``COMPONENTS``) and the allowed values of the string settings (the enums ``RewardMode``,
``Aggregation``; ``Masking`` comes from ``opgrpo.text.perspectives``, shared with the estimator) are defined once; the
Hydra schema types the fields with them, so OmegaConf rejects a wrong value when the config is composed.
``RewardConfig.problems()`` lists every invalid setting (keys relative to the ``reward`` section).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from opgrpo.text.perspectives import Masking
from opgrpo.utils.checks import Choice, Problems

COMPONENTS = ("coverage", "uniqueness", "format", "tag")
"""The four reward components, in the order of weights, TRL reward functions and tables."""
RATES = ("coverage_rate", "uniqueness_rate")
"""The unbucketed rates behind coverage and uniqueness."""
SUMMARY_KEYS = ("total", *COMPONENTS, *RATES)
"""The per-completion numbers that evaluation tables and reports average."""


class RewardMode(Choice):
    """``RewardConfig.mode``: the paper's buckets, or the rates themselves."""

    bucketed = "bucketed"
    continuous = "continuous"


class Aggregation(Choice):
    """``RewardConfig.aggregation``: how GRPO turns the components into one advantage."""

    total = "total"
    components = "components"
    gdpo = "gdpo"


MODES = tuple(m.value for m in RewardMode)
AGGREGATIONS = tuple(a.value for a in Aggregation)


@dataclass
class RewardWeights:
    """Weights of the reward components in the total (paper preset)."""

    coverage: float = 0.3
    """Weight of the coverage score (0-5 bucketed)."""
    uniqueness: float = 0.3
    """Weight of the uniqueness score (0-1)."""
    format: float = 0.1
    """Weight of the format score (0-2)."""
    tag: float = 1.0
    """Weight of the tag score (0 or tag_penalty)."""

    def as_list(self) -> list[float]:
        """Weights in component order (``COMPONENTS``)."""
        return [getattr(self, c) for c in COMPONENTS]


@dataclass
class RewardConfig:
    """Every knob of the OP reward; the defaults are the paper preset (SPEC.md "Reward")."""

    weights: RewardWeights = field(default_factory=RewardWeights)
    """Component weights of the total."""
    tau_cov: float = 0.7
    """Cosine threshold for a candidate/reference match (coverage)."""
    tau_uniq: float = 0.78
    """Cosine threshold above which a candidate repeats an earlier one (uniqueness)."""
    mode: RewardMode = RewardMode.bucketed
    """"bucketed" (paper) or "continuous" (coverage = 5 * rate, uniqueness = rate)."""
    coverage_edges: list[float] = field(default_factory=lambda: [0.2, 0.4, 0.6, 0.8])
    """Coverage buckets: 0 if rate == 0, else 1 + number of edges <= rate."""
    uniqueness_edges: list[float] = field(default_factory=lambda: [0.8, 0.6])
    """Uniqueness buckets (descending): values[i + 1] for the first edge with rate > edge."""
    uniqueness_values: list[float] = field(default_factory=lambda: [1.0, 0.75, 0.4, 0.0])
    """Uniqueness scores: [rate == 1, > edge 0, > edge 1, ..., otherwise]."""
    format_thresholds: list[float] = field(default_factory=lambda: [0.7, 0.3])
    """Format base score = number of thresholds (descending) that the phrase share reaches (>=)."""
    repeat_penalty: float = 0.5
    """Format penalty per repeated sentence and per repeated perspective name."""
    summary_edges: list[float] = field(default_factory=lambda: [0.75, 0.5, 0.25])
    """Summary name-share edges (descending, >=)."""
    summary_penalties: list[float] = field(default_factory=lambda: [0.0, -0.5, -0.75, -1.0])
    """Summary penalty for the first edge reached, last value below all edges."""
    tag_penalty: float = -0.2
    """Tag score when the strict layout does not hold (0 when it does)."""
    masking: Masking = Masking.situation
    """Keyword source: "situation" (paper), "prompt" (the authors' code: whole decoded prompt) or "none"."""
    clip_min: float = 0.0
    """Lower clip of the total."""
    aggregation: Aggregation = Aggregation.total
    """How GRPO turns the components into one advantage: "total" (paper: the clipped weighted total is the
    trained reward; the components are logged at weight 0), "components" (TRL weights the four components
    itself; the sum is not clipped) or "gdpo" (each component normalised within its group before the
    weighted sum, TRL ``normalize_then_sum``). The scored ``total`` is the clipped weighted sum either way."""
    max_completion_chars: int = 20000
    """Longer completions are truncated to this many characters before scoring (and counted)."""
    gdpo_weights: Optional[RewardWeights] = None
    """Weights of the group-normalised components under ``aggregation="gdpo"`` (None: ``weights``). The paper's
    weights were set for raw component ranges (coverage spans 5, the tag 0.2); on z-scores they make the tag
    penalty the main objective, so ``reward=gdpo`` sets these to paper weight x raw span (1.5/0.3/0.2/0.2) and
    leaves ``weights`` (and so the scored total) as the paper's."""

    @classmethod
    def paper(cls) -> RewardConfig:
        """The published preset."""
        return cls()

    @classmethod
    def continuous(cls) -> RewardConfig:
        """Paper preset with unbucketed coverage (5 * rate) and uniqueness (rate)."""
        return cls(mode="continuous")

    def trained_weights(self) -> list[float]:
        """The weights GRPO's advantage uses: ``gdpo_weights`` under gdpo when set, else ``weights``."""
        if self.aggregation == "gdpo" and self.gdpo_weights is not None:
            return self.gdpo_weights.as_list()
        return self.weights.as_list()

    def warnings(self) -> list[str]:
        """Settings that are valid but probably not meant, as ``key: message`` (logged at start-up)."""
        if self.aggregation != "gdpo":
            return []
        w = dict(zip(COMPONENTS, self.trained_weights()))
        if w["tag"] <= max(w["coverage"], w["uniqueness"]):
            return []
        key = "gdpo_weights" if self.gdpo_weights is not None else "weights"
        return [f"{key}: aggregation=gdpo with weights {'/'.join(f'{v:g}' for v in w.values())} (coverage/uniqueness/"
                f"format/tag): GDPO z-scores each component before weighting, so the tag penalty (weight "
                f"{w['tag']:g}, raw span {abs(self.tag_penalty):g}) outweighs coverage (weight {w['coverage']:g}, raw "
                "span 5) and dominates the advantage; a broken tag can outrank far better coverage, reversing the "
                "order the total gives. Use reward=gdpo (gdpo_weights 1.5/0.3/0.2/0.2 = paper weight x raw span)"]

    def problems(self) -> list[str]:
        """Every invalid setting, as ``key: message`` with keys relative to the reward section."""
        p = Problems()
        for key, weights, what in (("weights", self.weights, "reward"),
                                   ("gdpo_weights", self.gdpo_weights, "advantage")):
            if weights is None:
                continue
            w = weights.as_list()
            for name, value in zip(COMPONENTS, w):
                if p.finite(f"{key}.{name}", value) and value < 0:
                    p.add(f"{key}.{name}", f"must be a finite number >= 0 (got {value})")
            if all(v == 0 for v in w):
                p.add(key, f"all weights are zero, the {what} would be constant")
        p.unit("tau_cov", self.tau_cov)
        p.unit("tau_uniq", self.tau_uniq)
        p.enum("mode", self.mode, RewardMode)
        p.enum("masking", self.masking, Masking)
        p.enum("aggregation", self.aggregation, Aggregation)
        _edges(p, "coverage_edges", self.coverage_edges, ascending=True)
        _edges(p, "uniqueness_edges", self.uniqueness_edges, ascending=False)
        _edges(p, "format_thresholds", self.format_thresholds, ascending=False)
        _edges(p, "summary_edges", self.summary_edges, ascending=False)
        if len(self.uniqueness_values) != len(self.uniqueness_edges) + 2:
            p.add("uniqueness_values", f"needs len(uniqueness_edges) + 2 values ({len(self.uniqueness_edges) + 2}), "
                                       f"got {len(self.uniqueness_values)}")
        if len(self.summary_penalties) != len(self.summary_edges) + 1:
            p.add("summary_penalties", f"needs len(summary_edges) + 1 values ({len(self.summary_edges) + 1}), "
                                       f"got {len(self.summary_penalties)}")
        for name in ("repeat_penalty", "tag_penalty", "clip_min"):
            p.finite(name, getattr(self, name))
        if self.repeat_penalty < 0:
            p.add("repeat_penalty", f"must be >= 0 (got {self.repeat_penalty})")
        if self.max_completion_chars < 1:
            p.add("max_completion_chars", f"must be >= 1 (got {self.max_completion_chars})")
        return list(p)

    def validate(self) -> RewardConfig:
        """Raise ``ConfigProblemsError`` (a ValueError) listing every invalid field; return self when valid."""
        p = Problems("reward.")
        p.extend_from("", self.problems())
        p.raise_if_any()
        return self


def _edges(p: Problems, name: str, values: list[float], ascending: bool) -> None:
    if any(not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0 for v in values):
        p.add(name, f"values must lie in [0, 1], got {list(values)}")
        return
    ordered = sorted(values, reverse=not ascending)
    if list(values) != ordered or len(set(values)) != len(values):
        p.add(name, f"must be strictly {'ascending' if ascending else 'descending'}, got {list(values)}")
