"""Human same/different labels for pairs of reference perspectives: a judge for mining and held-out triplets.

A labels file names, per benchmark item, which pairs of its reference perspectives express the *same*
perspective (a value and its matching duty or right, as ValuePrism items often list) and, optionally,
pairs that are explicitly *different*. CSV or JSON Lines with the fields

    id        the item id (as in the benchmark file)
    name_a    a perspective name of that item          (case and surrounding spaces are ignored)
    name_b    another perspective name of that item
    label     same | different   (also yes/no, true/false, 1/0; missing = same)

Two uses:

- ``LabelJudge`` answers the estimator's triplet mining from the labels instead of an LLM
  (``estimator.judge.kind=labels``): labelled pairs get P(same) 1.0 or 0.0; a pair the file does not
  mention is "different" (``unlabelled="different"``, the reading of a file that lists all same pairs)
  or unanswered (``unlabelled="skip"``).
- ``labelled_triplets`` builds every held-out triplet the labels define on test items, independent of
  any model: each same pair in both directions, with every other perspective of the item that is not
  labelled the same as either sentence as negative. Base vs fine-tuned accuracy on these shows
  whether fine-tuning taught the estimator the labelled notion of "same perspective".

Bad rows (no id, a missing name, an unknown label) are skipped, counted and logged with file, row and
field; labels naming perspectives an item does not have are reported by ``check_against``.
"""
from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_SAME = {"same", "yes", "true", "1", ""}
_DIFFERENT = {"different", "no", "false", "0"}


def _norm(name: Any) -> str:
    return " ".join(str(name).split()).lower()


@dataclass(frozen=True)
class PairQuery:
    """One question for a pair-aware judge: are sentences a and b of this item the same perspective?"""

    item_id: str
    situation: str
    name_a: str | None
    a: str
    name_b: str | None
    b: str


@dataclass
class LabelError:
    source: str
    row: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: row {self.row}: field {self.field!r}: {self.message}"


class PairLabels:
    """Same/different labels keyed by (item id, unordered pair of normalised names)."""

    def __init__(self, labels: dict[tuple[str, frozenset[str]], bool] | None = None, source: str = "<memory>"):
        self.labels: dict[tuple[str, frozenset[str]], bool] = dict(labels or {})
        self.source = source
        self.errors: list[LabelError] = []

    @classmethod
    def load(cls, path: str | Path) -> PairLabels:
        """Read a CSV (header row) or JSON Lines labels file; bad rows are skipped and kept in ``errors``."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"pair labels file not found: {path}")
        out = cls(source=str(path))
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:  # -sig: drop a BOM
            if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
                rows = []
                for n, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                        if not isinstance(rec, dict):
                            raise ValueError("not an object")
                    except ValueError as exc:
                        out._error(n, "line", f"not a JSON object ({exc})")
                        continue
                    rows.append((n, rec))
            else:
                rows = list(enumerate(csv.DictReader(fh), 1))
        for n, row in rows:
            out._add_row(n, row)
        if out.errors:
            logger.warning("%s: %d bad label rows skipped (first: %s)", path, len(out.errors), out.errors[0])
        if not out.labels:
            logger.warning("%s: no usable pair labels: every pair counts as unlabelled", path)
        return out

    def _error(self, row: int, field: str, message: str) -> None:
        self.errors.append(LabelError(self.source, row, field, message))

    def _add_row(self, n: int, row: dict) -> None:
        for key in ("id", "name_a", "name_b"):
            value = row.get(key)
            if value is None or not str(value).strip():
                self._error(n, key, "missing or empty")
                return
        a, b = _norm(row["name_a"]), _norm(row["name_b"])
        if a == b:
            self._error(n, "name_b", f"same name as name_a ({row['name_a']!r})")
            return
        label = _norm(row.get("label") or "")
        if label not in _SAME | _DIFFERENT:
            self._error(n, "label", f"expected same or different, got {row.get('label')!r}")
            return
        self.labels[(str(row["id"]).strip(), frozenset((a, b)))] = label in _SAME

    def __len__(self) -> int:
        return len(self.labels)

    def get(self, item_id: str, name_a: str | None, name_b: str | None) -> bool | None:
        """True (same), False (different) or None (not labelled)."""
        if name_a is None or name_b is None:
            return None
        return self.labels.get((str(item_id), frozenset((_norm(name_a), _norm(name_b)))))

    def same_pairs(self, item_id: str) -> list[tuple[str, str]]:
        """The item's same-labelled name pairs (normalised, sorted for a stable order)."""
        return sorted(tuple(sorted(k[1])) for k, v in self.labels.items() if k[0] == str(item_id) and v)

    def check_against(self, items: Iterable[Any]) -> list[str]:
        """Labels whose item is present but lacks one of the named perspectives (typos in the file)."""
        names = {str(it.id): {_norm(p.name) for p in it.perspectives} for it in items}
        problems = []
        for iid, pair in self.labels:
            if iid in names and not pair <= names[iid]:
                missing = ", ".join(sorted(pair - names[iid]))
                problems.append(f"{self.source}: item {iid}: no perspective named {missing}")
        return problems


class LabelJudge:
    """A judge that answers from ``PairLabels`` (``prob_same`` on PairQuery objects, no prompts)."""

    def __init__(self, labels: PairLabels, unlabelled: str = "different"):
        if unlabelled not in ("different", "skip"):
            raise ValueError(f"unlabelled must be 'different' or 'skip', got {unlabelled!r}")
        self.labels, self.unlabelled = labels, unlabelled
        self.answered = self.unlabelled_pairs = 0

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


def labelled_triplets(items: Iterable[Any], labels: PairLabels, masking: str = "situation") -> list[Any]:
    """Every (anchor, positive, negative) the labels define on ``items``, texts masked as mining masks them.

    For each same-labelled pair (a, b) of an item, both directions (a->b and b->a); the negatives are the
    item's other perspectives that are labelled the same as neither a nor b.
    """
    from opgrpo.mining import Triplet, masked_explanations

    out: list[Triplet] = []
    for item in items:
        names, raw, masked = masked_explanations(item, masking)
        index = {_norm(n): k for k, n in enumerate(names) if n is not None}
        for na, nb in labels.same_pairs(str(item.id)):
            if na not in index or nb not in index:
                continue
            i, j = index[na], index[nb]
            for anchor, pos in ((i, j), (j, i)):
                for neg in range(len(raw)):
                    if neg in (i, j) or any(labels.get(str(item.id), names[neg], names[x]) for x in (i, j)):
                        continue
                    out.append(Triplet(item_id=str(item.id), anchor=masked[anchor], positive=masked[pos],
                                       negative=masked[neg], raw_anchor=raw[anchor], raw_positive=raw[pos],
                                       raw_negative=raw[neg]))
    return out
