"""Reading a policy's responses from a file (CSV, JSON Lines or a JSON array) instead of generating them,
aligned with the benchmark items by id or by row order (``eval.responses_file``)."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["RESPONSE_COLUMNS", "load_responses"]

RESPONSE_COLUMNS = ("response", "completion", "output", "generation")
"""Names of the text column, in order of preference."""


def _read_records(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8", errors="replace")
    if suffix == ".csv":
        return list(csv.DictReader(io.StringIO(text, newline="")))
    if suffix in (".jsonl", ".ndjson", ".json"):
        stripped = text.lstrip()
        if suffix == ".json" and stripped.startswith("["):
            records = json.loads(stripped)
        else:
            records = []
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise ValueError(f"{path}: line {n} is not valid JSON ({e.msg})") from None
        bad = [i for i, r in enumerate(records, 1) if not isinstance(r, dict)]
        if bad:
            raise ValueError(f"{path}: record {bad[0]} is not a JSON object")
        return records
    raise ValueError(f"{path}: unknown responses file type {suffix!r}; expected .csv, .jsonl or .json")


def load_responses(path: str | Path, items: Sequence[Any]) -> list[str]:
    """The responses in ``path`` (CSV, JSON Lines or a JSON array) aligned with ``items``.

    The text column is ``response`` (or ``completion``, ``output``, ``generation``). With an ``id``
    column, rows are matched to ``items`` by id (``items`` are Items or plain ids); otherwise they are
    taken in row order and their count must equal ``len(items)``. Missing or unknown ids, repeated ids
    and count mismatches raise ``ValueError`` naming the file; an empty cell is an empty response.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"responses file {path} does not exist")
    records = _read_records(path)
    columns = set().union(*(r.keys() for r in records)) if records else set()
    column = next((c for c in RESPONSE_COLUMNS if c in columns), None)
    if column is None:
        raise ValueError(f"{path}: no response column; expected one of {RESPONSE_COLUMNS}, found {sorted(columns)}")
    ids = [str(getattr(it, "id", it)) for it in items]

    def text(record: Mapping[str, Any]) -> str:
        value = record.get(column)
        return "" if value is None else str(value)

    if "id" not in columns:
        if len(records) != len(items):
            raise ValueError(f"{path}: {len(records)} responses for {len(items)} items "
                             "(no 'id' column, so rows are matched by order)")
        return [text(r) for r in records]
    by_id: dict[str, str] = {}
    for n, r in enumerate(records, 1):
        rid = str(r.get("id", "")).strip()
        if not rid:
            raise ValueError(f"{path}: row {n} has an empty id")
        if rid in by_id:
            raise ValueError(f"{path}: id {rid!r} appears more than once (row {n})")
        by_id[rid] = text(r)
    wanted = set(ids)
    unknown = [i for i in by_id if i not in wanted]
    if unknown:
        raise ValueError(f"{path}: {len(unknown)} unknown id(s) not among the {len(ids)} items, e.g. {unknown[:5]}")
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise ValueError(f"{path}: {len(by_id)} responses for {len(ids)} items; missing ids, e.g. {missing[:5]}")
    return [by_id[i] for i in ids]
