"""Human same/different labels for pairs of reference perspectives: a judge for mining and held-out triplets.

A labels file names, per benchmark item, which pairs of its reference perspectives express the *same*
perspective (a value and its matching duty or right, as ValuePrism items often list) and, optionally,
pairs that are explicitly *different*. CSV or JSON Lines with the fields

    id        the item id (as in the benchmark file; a file without ids numbers its items
              "<file stem>:<data row>", e.g. "train:3")
    name_a    a perspective name of that item          (case and surrounding spaces are ignored)
    name_b    another perspective name of that item
    label     same | different   (also yes/no, true/false, 1/0; missing = same)

Two uses:

- ``opgrpo.judges.LabelJudge`` over a ``PairLabels`` answers the estimator's triplet mining from the
  labels instead of an LLM (``estimator.judge.kind=labels``): labelled pairs get P(same) 1.0 or 0.0; a
  pair the file does not mention is "different" (``unlabelled="different"``, the reading of a file that
  lists all same pairs) or unanswered (``unlabelled="skip"``).
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

from opgrpo.benchmark.filetext import raised_csv_field_limit
from opgrpo.estimator.triplets import Triplet, masked_explanations
from opgrpo.utils.checks import Choice

logger = logging.getLogger(__name__)

_SAME = {"same", "yes", "true", "1", ""}
_DIFFERENT = {"different", "no", "false", "0"}


def _norm(name: Any) -> str:
    return " ".join(str(name).replace("\u2019", "'").replace("\u2018", "'").split()).lower()


def _label_text(value: Any) -> str:
    """A label cell as text: JSON booleans and numbers too (false and 0 are "different", not missing)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return "1" if value == 1 else "0" if value == 0 else str(value)
    return _norm(value)


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
        self._rows: dict[tuple[str, frozenset[str]], int] = {}
        self._groups: dict[tuple[str, str], tuple[str, str]] | None = None

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
                with raised_csv_field_limit():  # a huge field is read, not a raw _csv.Error
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
        label = _label_text(row.get("label"))
        if label not in _SAME | _DIFFERENT:
            self._error(n, "label", f"expected same or different, got {row.get('label')!r}")
            return
        key = (str(row["id"]).strip(), frozenset((a, b)))
        if key in self.labels and self.labels[key] != (label in _SAME):
            self._error(n, "label", f"contradicts row {self._rows[key]} for the same pair (the first is kept)")
            return
        self.labels.setdefault(key, label in _SAME)
        self._rows.setdefault(key, n)
        self._groups = None

    def __len__(self) -> int:
        return len(self.labels)

    def _root(self, node: tuple[str, str]) -> tuple[str, str]:
        if self._groups is None:  # union-find over the "same" pairs of each item
            self._groups = {}
            for (iid, pair), same in self.labels.items():
                if same and len(pair) == 2:
                    x, y = (self._root((iid, n)) for n in sorted(pair))
                    if x != y:
                        self._groups[y] = x
        while node in self._groups:
            node = self._groups[node]
        return node

    def get(self, item_id: str, name_a: str | None, name_b: str | None) -> bool | None:
        """True (same), False (different) or None (not labelled).

        "Same" is transitive: with a~b and b~c labelled, a~c is "same" too (unless labelled otherwise).
        """
        if name_a is None or name_b is None:
            return None
        iid, a, b = str(item_id), _norm(name_a), _norm(name_b)
        label = self.labels.get((iid, frozenset((a, b))))
        if label is None and self._root((iid, a)) == self._root((iid, b)) and a != b:
            return True
        return label

    def same_pairs(self, item_id: str) -> list[tuple[str, str]]:
        """The item's same-labelled name pairs (normalised, sorted for a stable order)."""
        return sorted(tuple(sorted(k[1])) for k, v in self.labels.items() if k[0] == str(item_id) and v)

    def check_against(self, items: Iterable[Any]) -> list[str]:
        """Labels whose item is present but lacks one of the named perspectives (typos in the file)."""
        names = {str(it.id): {_norm(n) for n in masked_explanations(it, "none")[0] if n is not None}
                 for it in items}
        problems = []
        for iid, pair in self.labels:
            if iid in names and not pair <= names[iid]:
                missing = ", ".join(sorted(pair - names[iid]))
                problems.append(f"{self.source}: item {iid}: no perspective named {missing}")
        return problems




class LabelledText(Choice):
    """Text forms of label-defined triplets: all masked, all as written, or the reward's comparison (masked anchor,
    unmasked positive and negative)."""

    masked = "masked"
    raw = "raw"
    reward = "reward"


LABELLED_TEXTS = tuple(t.value for t in LabelledText)


def labelled_triplets(items: Iterable[Any], labels: PairLabels, masking: str = "situation",
                      unlabelled: str = "different", text: str = "masked") -> list[Triplet]:
    """Every (anchor, positive, negative) the labels define on ``items``.

    For each same-labelled pair (a, b) of an item, both directions (a->b and b->a); the negatives are the
    item's other perspectives that are labelled the same as neither a nor b (``unlabelled="skip"``: only
    those labelled *different* from both). ``text``: "masked" (every text keyword-masked as mining masks
    them), "raw" (the prefix-stripped explanations as written: the paper's training text) or "reward" (a
    masked anchor against unmasked positive and negative, as the reward compares a masked generated sentence
    with reference perspectives).
    """
    if text not in LABELLED_TEXTS:
        raise ValueError(f"text must be one of {LABELLED_TEXTS}; got {text!r}")
    out: list[Triplet] = []
    for item in items:
        names, raw, masked = masked_explanations(item, masking)
        normed = [None if n is None else _norm(n) for n in names]
        # a name used twice in one item is ambiguous: its pairs are left out
        index = {n: k for k, n in enumerate(normed) if n is not None and normed.count(n) == 1}
        for na, nb in labels.same_pairs(str(item.id)):
            if na not in index or nb not in index:
                continue
            i, j = index[na], index[nb]
            for anchor, pos in ((i, j), (j, i)):
                for neg in range(len(raw)):
                    verdicts = [labels.get(str(item.id), names[neg], names[x]) for x in (i, j)]
                    if neg in (i, j) or any(verdicts) or (unlabelled == "skip" and None in verdicts):
                        continue
                    first, rest = {"raw": (raw, raw), "reward": (masked, raw)}.get(text, (masked, masked))
                    out.append(Triplet(item_id=str(item.id), anchor=first[anchor], positive=rest[pos],
                                       negative=rest[neg], raw_anchor=raw[anchor], raw_positive=raw[pos],
                                       raw_negative=raw[neg], text=text))
    return out
