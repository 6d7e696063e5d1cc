"""A pair-aware judge that answers from human same/different labels instead of a model.

The estimator's triplet mining asks a pair-aware judge ``prob_same(queries)`` on ``PairQuery`` objects
(the item and the two perspectives' names and texts) rather than ``prob_yes`` on prompts. ``LabelJudge``
looks the pair up in a label table, anything with ``get(item_id, name_a, name_b) -> bool | None`` (the
estimator's ``opgrpo.estimator.pair_labels.PairLabels``, read from a CSV/JSONL file).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

UNLABELLED_MODES = ("different", "skip")


@dataclass(frozen=True)
class PairQuery:
    """One question for a pair-aware judge: are sentences a and b of this item the same perspective?"""

    item_id: str
    situation: str
    name_a: str | None
    a: str
    name_b: str | None
    b: str


class LabelJudge:
    """A judge that answers from pair labels (``prob_same`` on PairQuery objects, no prompts).

    Labelled pairs get P(same) 1.0 or 0.0; a pair the labels do not mention is "different" (0.0,
    ``unlabelled="different"``, the reading of a file that lists all same pairs) or unanswered (None,
    ``unlabelled="skip"``).
    """

    def __init__(self, labels: Any, unlabelled: str = "different"):
        if unlabelled not in UNLABELLED_MODES:
            raise ValueError(f"unlabelled must be 'different' or 'skip', got {unlabelled!r}")
        self.labels, self.unlabelled = labels, unlabelled
        self.answered = self.unlabelled_pairs = 0
        self.abstains = unlabelled == "skip"
        """A None answer means "not labelled", not a failure: mining must not retry it as a judge error."""

    def prob_same(self, queries: list[PairQuery]) -> list[float | None]:
        out: list[float | None] = []
        for q in queries:
            label = self.labels.get(q.item_id, q.name_a, q.name_b)
            if label is None:
                self.unlabelled_pairs += 1
                out.append(0.0 if self.unlabelled == "different" else None)
            else:
                self.answered += 1
                out.append(1.0 if label else 0.0)
        return out
