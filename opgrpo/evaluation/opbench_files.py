"""Reading OP-Bench's files (opgrpo.evaluation.opbench): the benchmark's user rows (one per user and question, with
the user's own view, opinion cluster, split and few-shot ratings) and the responses file (one response per
question). CSV/TSV/JSONL/JSON/parquet; column names are case-insensitive; a bad row raises ValueError naming the
file and row, an unusable user row is skipped and logged.
"""
from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opgrpo.benchmark.filetext import RowError, json_records, read_table, read_text

logger = logging.getLogger("opgrpo.evaluation.opbench")  # the logger of the module this part was split from

SOURCES = ("prism", "modelslant")
USER_COLUMNS = ("user", "question_id", "question", "freeresponse")
"""Columns the users file must have (plus the cluster column); as the authors' ``BASE_COLUMNS``, lower-cased."""
SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet", ".pq")


@dataclass
class UserRow:
    """One (user, question) row of the benchmark."""

    question_id: str
    user: str
    question: str
    freeresponse: str
    cluster: str
    source: str = ""
    """prism / modelslant from the users file ("" when it has no such column)."""
    selection_text: str = ""
    examples: list[tuple[str, int]] = field(default_factory=list)
    """(another response, the user's rating of it), for the few-shot ``original`` prompt."""


def _text(value: Any) -> str:
    """A cell as text, stripped: None/NaN -> ""."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def _id(value: Any) -> str:
    """An id, cluster label or rating cell as text: an integral number is written as an integer (``3.0`` -> ``3``,
    as pandas turns an integer column with gaps into floats)."""
    if isinstance(value, float) and not math.isnan(value) and value.is_integer():
        return str(int(value))
    text = _text(value)
    return text.split(".")[0] if re.fullmatch(r"[+-]?\d+\.0+", text) else text


def _records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(row number, record with lower-cased keys); ValueError naming the file and row."""
    suffix, source = path.suffix.lower(), str(path)
    if suffix not in SUFFIXES:
        raise ValueError(f"{path}: unknown file type {suffix or '(no suffix)'!r}; expected {', '.join(SUFFIXES)}")
    if suffix in (".parquet", ".pq"):
        import pandas as pd

        frame = pd.read_parquet(path)
        frame.columns = [str(c).strip().lower() for c in frame.columns]
        return [(i, rec) for i, rec in enumerate(frame.to_dict("records"), 1)]
    text = read_text(path, source)
    records = []
    if suffix in (".csv", ".tsv"):
        table = read_table(text, source, "\t" if suffix == ".tsv" else ",")
        columns = [h.strip().lower() for h in table.header or []]
        for n, values in table.rows:
            if isinstance(values, RowError):
                raise ValueError(f"{path}: row {n}: {values.message}")  # noqa: TRY004 - a bad row, not a bad argument
            records.append((n, dict(zip(columns, values))))
        return records
    for n, record in json_records(text, allow_array=suffix == ".json"):
        if isinstance(record, RowError):
            raise ValueError(f"{path}: line {n}: {record.message}")  # noqa: TRY004 - a bad line, not a bad argument
        records.append((n, record))
    return records


def _require(path: Path, records: list[tuple[int, dict]], columns: Sequence[str]) -> None:
    present = set().union(*(r.keys() for _, r in records)) if records else set()
    missing = [c for c in columns if c not in present]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(map(repr, missing))} (has: "
                         f"{', '.join(sorted(present)) or 'nothing'})")


def _source(value: Any) -> str:
    """prism / modelslant (case, spaces, '_' and '-' ignored), else the text as given (counted as unlabelled)."""
    text = re.sub(r"[\s_-]", "", _text(value).lower())
    return text if text in SOURCES else _text(value)


def load_users(path: str | Path, *, cluster_column: str = "cluster_kmeans",
               source_column: str = "source") -> tuple[list[UserRow], int]:
    """The (user, question) rows of the users file, first occurrence kept, and the number of rows skipped for
    an empty user, question_id or cluster (each logged with file, row and field). Few-shot examples are the
    rows' (``llm_response``, ``representation_rating``) pairs when the file has those columns."""
    path = Path(path).expanduser()
    cluster_column, source_column = cluster_column.strip().lower(), source_column.strip().lower()
    records = _records(path)
    _require(path, records, (*USER_COLUMNS, cluster_column))
    rows: dict[tuple[str, str], UserRow] = {}
    skipped = 0
    for n, rec in records:
        qid, user, cluster = _id(rec.get("question_id")), _id(rec.get("user")), _id(rec.get(cluster_column))
        empty = next((k for k, v in (("question_id", qid), ("user", user), (cluster_column, cluster)) if not v), "")
        if empty:
            skipped += 1
            logger.warning("%s: row %d: field %r is empty; row skipped", path, n, empty)
            continue
        row = rows.get((user, qid))
        if row is None:
            row = rows[(user, qid)] = UserRow(qid, user, _text(rec.get("question")), _text(rec.get("freeresponse")),
                                              cluster, _source(rec.get(source_column)),
                                              _text(rec.get("selection_text")))
        rating = _id(rec.get("representation_rating"))
        response = _text(rec.get("llm_response"))
        if response and re.fullmatch(r"[1-5]", rating):
            row.examples.append((response, int(rating)))
    if not rows:
        raise ValueError(f"{path}: no usable user rows")
    return list(rows.values()), skipped


def load_opbench_responses(path: str | Path, *, source_column: str = "source") -> dict[str, dict[str, str]]:
    """question_id -> {"response", "question", "source"} (first row of a repeated id kept, as the authors do)."""
    path = Path(path).expanduser()
    source_column = source_column.strip().lower()
    records = _records(path)
    _require(path, records, ("question_id", "response"))
    out: dict[str, dict[str, str]] = {}
    for n, rec in records:
        qid = _id(rec.get("question_id"))
        if not qid:
            raise ValueError(f"{path}: row {n}: field 'question_id' is empty")
        if qid in out:
            logger.warning("%s: row %d: question_id %s repeats; the first response is kept", path, n, qid)
            continue
        response = rec.get("response")
        out[qid] = {"response": response if isinstance(response, str) else _text(response),
                    "question": _text(rec.get("question")), "source": _source(rec.get(source_column))}
    return out
