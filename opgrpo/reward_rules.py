"""Configuration and the pure scoring rules of the OP reward (SPEC.md "Reward", items 2-6).

Nothing here touches a model: the rules take rates, similarity matrices and text, so each one can
be checked by hand. ``rewards.py`` feeds them with estimator embeddings in batches.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .perspectives import (
    has_perspective_phrase,
    lenient_blocks,
    perspective_name,
    split_perspective_sentences,
)

__all__ = [
    "FormatDetails",
    "RewardConfig",
    "RewardWeights",
    "coverage_score",
    "format_score",
    "greedy_match_count",
    "uniqueness_rate",
    "uniqueness_score",
]

MODES = ("bucketed", "continuous")
MASKINGS = ("situation", "none", "prompt")
AGGREGATIONS = ("sum", "gdpo")


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
        """Weights in component order (coverage, uniqueness, format, tag)."""
        return [self.coverage, self.uniqueness, self.format, self.tag]


@dataclass
class RewardConfig:
    """Every knob of the OP reward; the defaults are the paper preset (SPEC.md "Reward")."""

    weights: RewardWeights = field(default_factory=RewardWeights)
    """Component weights of the total."""
    tau_cov: float = 0.7
    """Cosine threshold for a candidate/reference match (coverage)."""
    tau_uniq: float = 0.78
    """Cosine threshold above which a candidate repeats an earlier one (uniqueness)."""
    mode: str = "bucketed"
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
    masking: str = "situation"
    """Keyword source: "situation" (paper), "prompt" (the authors' code: whole decoded prompt) or "none"."""
    clip_min: float = 0.0
    """Lower clip of the total."""
    aggregation: str = "sum"
    """"sum" (weighted sum, then group-normalised by GRPO) or "gdpo" (each component normalised within its group
    before the weighted sum; done by the trainer, see opgrpo.gdpo). The scored ``total`` is the weighted sum either way."""
    max_completion_chars: int = 20000
    """Longer completions are truncated to this many characters before scoring (and counted)."""

    @classmethod
    def paper(cls) -> RewardConfig:
        """The published preset."""
        return cls()

    @classmethod
    def continuous(cls) -> RewardConfig:
        """Paper preset with unbucketed coverage (5 * rate) and uniqueness (rate)."""
        return cls(mode="continuous")

    def validate(self) -> RewardConfig:
        """Raise ValueError naming the offending field; return self when valid."""
        w = self.weights.as_list()
        for name, value in zip(("coverage", "uniqueness", "format", "tag"), w):
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"reward.weights.{name} must be a finite number >= 0, got {value}")
        if all(v == 0 for v in w):
            raise ValueError("reward.weights: all weights are zero, the reward would be constant")
        for name in ("tau_cov", "tau_uniq"):
            _check_unit(name, [getattr(self, name)])
        if self.mode not in MODES:
            raise ValueError(f"reward.mode must be one of {MODES}, got {self.mode!r}")
        if self.masking not in MASKINGS:
            raise ValueError(f"reward.masking must be one of {MASKINGS}, got {self.masking!r}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"reward.aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}")
        _check_unit("coverage_edges", self.coverage_edges, ascending=True)
        _check_unit("uniqueness_edges", self.uniqueness_edges, ascending=False)
        _check_unit("format_thresholds", self.format_thresholds, ascending=False)
        _check_unit("summary_edges", self.summary_edges, ascending=False)
        if len(self.uniqueness_values) != len(self.uniqueness_edges) + 2:
            raise ValueError(
                "reward.uniqueness_values needs len(uniqueness_edges) + 2 values "
                f"({len(self.uniqueness_edges) + 2}), got {len(self.uniqueness_values)}"
            )
        if len(self.summary_penalties) != len(self.summary_edges) + 1:
            raise ValueError(
                "reward.summary_penalties needs len(summary_edges) + 1 values "
                f"({len(self.summary_edges) + 1}), got {len(self.summary_penalties)}"
            )
        for name in ("repeat_penalty", "tag_penalty", "clip_min"):
            if not np.isfinite(getattr(self, name)):
                raise ValueError(f"reward.{name} must be finite, got {getattr(self, name)}")
        if self.repeat_penalty < 0:
            raise ValueError(f"reward.repeat_penalty must be >= 0, got {self.repeat_penalty}")
        if self.max_completion_chars < 1:
            raise ValueError(f"reward.max_completion_chars must be >= 1, got {self.max_completion_chars}")
        return self


def _check_unit(name: str, values: list[float], ascending: bool | None = None) -> None:
    for v in values:
        if not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
            raise ValueError(f"reward.{name} values must lie in [0, 1], got {list(values)}")
    if ascending is not None:
        ordered = sorted(values, reverse=not ascending)
        if list(values) != ordered or len(set(values)) != len(values):
            order = "ascending" if ascending else "descending"
            raise ValueError(f"reward.{name} must be strictly {order}, got {list(values)}")


def coverage_score(rate: float, config: RewardConfig) -> float:
    """Coverage component from the matched-reference rate."""
    if config.mode == "continuous":
        return 5.0 * rate
    if rate <= 0:
        return 0.0
    return float(1 + sum(rate >= e for e in config.coverage_edges))


def uniqueness_score(rate: float, config: RewardConfig) -> float:
    """Uniqueness component from the non-redundant rate."""
    if config.mode == "continuous":
        return float(rate)
    values = config.uniqueness_values
    if rate >= 1.0:
        return float(values[0])
    for i, edge in enumerate(config.uniqueness_edges):
        if rate > edge:
            return float(values[i + 1])
    return float(values[-1])


def greedy_match_count(sim: np.ndarray, tau: float) -> int:
    """Greedy one-to-one matching: take the largest remaining similarity >= tau, drop its row and column.

    Ties go to the first pair in row-major order (what an argmax over the matrix does).
    """
    if sim.size == 0:
        return 0
    rows, cols = np.nonzero(sim >= tau)
    if rows.size == 0:
        return 0
    order = np.argsort(-sim[rows, cols], kind="stable")
    used_r: set[int] = set()
    used_c: set[int] = set()
    limit = min(sim.shape)
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        if r in used_r or c in used_c:
            continue
        used_r.add(r)
        used_c.add(c)
        if len(used_r) == limit:
            break
    return len(used_r)


def uniqueness_rate(sim: np.ndarray, tau: float) -> float:
    """Share of non-redundant sentences given their (n, n) similarity matrix, in order.

    Sentence j is redundant if its similarity to an earlier non-redundant sentence is >= tau.
    1.0 for 0 or 1 sentences.
    """
    n = sim.shape[0]
    if n <= 1:
        return 1.0
    keep: list[int] = [0]
    for j in range(1, n):
        if not (sim[j, keep] >= tau).any():
            keep.append(j)
    return len(keep) / n


@dataclass(frozen=True)
class FormatDetails:
    """Parts of the format score, for logging."""

    score: float
    base: float
    phrase_share: float
    n_sentences: int
    n_repeats: int
    summary_penalty: float


def format_score(response: str, config: RewardConfig) -> FormatDetails:
    """Format score on the lenient reading of ``response`` (SPEC.md item 4), clipped at 0."""
    core, summary = lenient_blocks(response)
    sentences = split_perspective_sentences(core)
    if not sentences:
        return FormatDetails(0.0, 0.0, 0.0, 0, 0, 0.0)
    share = sum(has_perspective_phrase(s) for s in sentences) / len(sentences)
    base = float(sum(share >= t for t in config.format_thresholds))
    names = [n for n in (perspective_name(s) for s in sentences) if n is not None]
    repeats = _repeats(s.lower() for s in sentences) + _repeats(names)
    penalty = 0.0
    if names:
        low = summary.lower()
        name_share = sum(n in low for n in names) / len(names)
        penalty = float(config.summary_penalties[-1])
        for edge, value in zip(config.summary_edges, config.summary_penalties):
            if name_share >= edge:
                penalty = float(value)
                break
    score = max(0.0, base - config.repeat_penalty * repeats + penalty)
    return FormatDetails(score, base, share, len(sentences), repeats, penalty)


def _repeats(items: Any) -> int:
    return sum(c - 1 for c in Counter(items).values())
