"""JSON helpers for a run's files: JSON-safe values, JSON Lines read and append, nested mappings flattened.

- :func:`jsonable`: NaN/inf -> null, tensors and numpy scalars -> Python numbers.
- :func:`read_jsonl` / :func:`append_jsonl`: the JSON Lines files a run appends to (``metrics.jsonl``,
  ``completions.jsonl``). Reading is tolerant, because such a file may end in a line torn by a killed run.
- :func:`flatten`: ``{"a": {"b": 1}}`` -> ``{"a/b": 1}``, for flat summaries and W&B configs.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["append_jsonl", "flatten", "jsonable", "read_jsonl"]


def jsonable(value: Any) -> Any:
    """Floats that JSON cannot hold (NaN, inf) become null; tensors and numpy scalars become Python numbers."""
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (ValueError, RuntimeError):
            value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def read_jsonl(path: str | Path) -> list[dict]:
    """The JSON objects of a JSON Lines file, in file order.

    Tolerant, for files that a run appends to and may be killed while writing: a missing or unreadable file
    reads as ``[]``, bytes that are not UTF-8 are replaced, and a line that is not a JSON object is skipped
    (a blank line, a torn last line, a bare value such as ``3`` or ``[1]``).
    """
    p = Path(path)
    if not p.is_file():
        return []
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    rows: list[dict] = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def append_jsonl(path: str | Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Append each record as one JSON line (values JSON cannot hold are written as ``str``), creating the
    file's folder if needed."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("a", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, default=str) + "\n")


def flatten(mapping: Mapping[str, Any], prefix: str = "", sep: str = "/") -> dict[str, Any]:
    """Nested mappings as one flat dict whose keys join the path with ``sep``.

    ``flatten({"a": {"b": 1, "c": [2]}, "d": None})`` -> ``{"a/b": 1, "a/c": [2], "d": None}``; with
    ``prefix="x"`` the keys are ``x/a/b``, ... Leaves (anything that is not a mapping) are kept as they are,
    depth first in insertion order; an empty nested mapping leaves no key.
    """
    out: dict[str, Any] = {}
    for k, v in mapping.items():
        key = f"{prefix}{sep}{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            out.update(flatten(v, key, sep))
        else:
            out[key] = v
    return out
