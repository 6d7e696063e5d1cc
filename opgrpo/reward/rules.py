"""The pure scoring rules of the OP reward (SPEC.md "Reward", items 2-6).

Nothing here touches a model: the rules take rates, similarity matrices and text, so each one can
be checked by hand. ``opgrpo.reward.scorer`` feeds them with estimator embeddings in batches; the knobs
are in ``opgrpo.reward.config``.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from opgrpo.reward.config import RewardConfig
from opgrpo.text.perspectives import (
    has_perspective_phrase,
    lenient_blocks,
    perspective_name,
    split_perspective_sentences,
)

__all__ = [
    "FormatDetails",
    "coverage_score",
    "format_score",
    "greedy_match_count",
    "uniqueness_rate",
    "uniqueness_score",
]

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
