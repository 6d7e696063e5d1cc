"""Triplets of the similarity estimator: the record, the texts they are made of, the file, the split.

``Triplet`` is one (anchor, positive, negative) of reference explanations (as written, or keyword-masked:
``text`` says which) with its raw texts and scores. ``masked_explanations`` gives an item's reference perspectives as mining and the pair
labels see them (names, raw explanations, masked explanations). Mining writes one JSON record per item
(``status`` "ok" with the triplet, or a skip reason); ``read_mining_records`` reads them back for a
resumed run and ``load_triplets`` the triplets. ``split_triplets`` is the deterministic train/validation
split that training and evaluation share.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opgrpo.text.perspectives import (
    MASKINGS,
    mask_keywords,
    parse_reference,
    situation_keywords,
)

logger = logging.getLogger(__name__)


@dataclass
class Triplet:
    """One mined triplet; ``anchor``/``positive``/``negative`` are the training texts (see ``text``)."""

    item_id: str
    anchor: str
    positive: str
    negative: str
    raw_anchor: str = ""
    raw_positive: str = ""
    raw_negative: str = ""
    sim_pos: float = 0.0
    sim_neg: float = 0.0
    judge_pos: float | None = None
    """Judge P(same) for anchor/positive (None without a judge)."""
    judge_neg: float | None = None
    """Judge P(same) for anchor/negative (None without a judge)."""
    text: str = "masked"
    """What anchor/positive/negative hold: "raw" (the prefix-stripped explanations, = raw_*), "masked" (their
    keyword-masked form; also what records written before this field existed hold) or, for label-defined
    evaluation triplets, "reward" (masked anchor, raw positive and negative)."""


# ------------------------------------------------------------------------------------- item texts

def _named_explanations(item: Any) -> tuple[list[str | None], list[str]]:
    names: list[str | None] = []
    out: list[str] = []
    for p in item.perspectives:
        get = p.get if isinstance(p, dict) else (lambda k, p=p: getattr(p, k, None))
        text, pname = get("text"), get("name")
        if not isinstance(text, str):
            continue
        name, expl = parse_reference(text)  # tolerate a full reference line stored as text
        text = (expl if name is not None else text).strip()
        if text and text not in out:
            out.append(text)
            pname = pname if isinstance(pname, str) and pname.strip() else name
            names.append(pname.strip() if isinstance(pname, str) else None)
    return names, out


def masked_explanations(item: Any, masking: str = "situation") -> tuple[list[str | None], list[str], list[str]]:
    """(names, explanations, keyword-masked explanations) of an item's references, repeated texts dropped."""
    names, raw = _named_explanations(item)
    kw = _keywords(item.situation, masking)
    return names, raw, [mask_keywords(s, kw) for s in raw]


def _keywords(situation: str, masking: str) -> set[str]:
    if masking == "none":
        return set()
    if masking == "prompt":
        from opgrpo.text.prompts import prompt_text

        return situation_keywords(prompt_text(situation, "implicit"))
    if masking == "situation":
        return situation_keywords(situation)
    raise ValueError(f"mining.masking must be {', '.join(MASKINGS[:-1])} or {MASKINGS[-1]}; got {masking!r}")


# ------------------------------------------------------------------------------------ triplet file

def load_triplets(path: str | Path) -> list[Triplet]:
    """The "ok" records of a mining JSONL file as Triplets (unreadable lines are skipped and logged)."""
    return [t for _, rec in read_mining_records(Path(path)) if (t := record_triplet(rec)) is not None]


def record_triplet(rec: dict) -> Triplet | None:
    """The Triplet of an "ok" mining record, else None."""
    if rec.get("status") != "ok":
        return None
    names = Triplet.__dataclass_fields__
    return Triplet(**{k: v for k, v in rec.items() if k in names})


def read_mining_records(path: Path) -> list[tuple[int, dict]]:
    """``(line number, record)`` of every readable mining record in ``path`` ([] when it does not exist)."""
    records = []
    if not path.exists():
        return records
    with open(path, encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict) or "item_id" not in rec or "status" not in rec:
                    raise ValueError("not a mining record")
                if rec["status"] == "ok" and not all(isinstance(rec.get(k), str)
                                                     for k in ("anchor", "positive", "negative")):
                    raise ValueError("triplet record without anchor/positive/negative")
            except ValueError as exc:
                logger.warning("%s: line %d unreadable (%s); that item will be mined again", path, n, exc)
                continue
            records.append((n, rec))
    return records


# ------------------------------------------------------------------------------ texts and the split

def triplet_texts(triplets: list[Any]) -> tuple[list[str], list[str], list[str]]:
    """(anchors, positives, negatives) of Triplets or of dicts with those keys."""
    def get(t, k):
        return t[k] if isinstance(t, dict) else getattr(t, k)

    return ([get(t, "anchor") for t in triplets], [get(t, "positive") for t in triplets],
            [get(t, "negative") for t in triplets])


def split_triplets(triplets: list[Any], val_fraction: float = 0.1, seed: int = 42) -> tuple[list, list]:
    """Deterministic (train, validation) split, the same rule as the items' split (opgrpo.benchmark.train_val_split)."""
    from opgrpo.benchmark.splits import train_val_split

    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"train.val_fraction must be in [0, 1), got {val_fraction}")
    return train_val_split(triplets, val_fraction, seed)
