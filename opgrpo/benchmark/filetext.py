"""Reading data files as text, and CSV/TSV tables and JSON records from that text: the layer shared by the
item loader (opgrpo.benchmark.loading) and the responses loader (opgrpo.evaluation.responses).

- Text is UTF-8. A leading byte-order mark is dropped (for JSON Lines also at the start of any line, as
  left by concatenating files), so a header reads ``id``, never ``\\ufeffid``. Undecodable bytes are kept
  as lone surrogates (``surrogateescape``) so that the caller can name the row and field that hold them.
  A UTF-16 file (UTF-16 byte-order mark) is an error that says so.
- CSV/TSV: Python's csv module caps a field at 131,072 characters and stops the reader at a longer one,
  which would lose every later row. Tables are read with the cap raised to ``CSV_FIELD_LIMIT`` (the
  process-wide setting is restored afterwards), so a huge field reaches the caller, which decides whether
  it is usable. A quoted field left open at the end of the file, which swallows every later row into one
  record, is reported as a bad record instead of being read as text.
- JSON: a ``.json`` file starting with ``[`` is one array of objects (unless more follows it); otherwise (and
  always for ``.jsonl``/``.ndjson``) one object per line, where only
  ``\\n``, ``\\r\\n`` and ``\\r`` end a line (U+2028 and other Unicode line breaks may sit inside a
  string). Object keys are stripped and lower-cased.

Row numbers are 1-based: CSV/TSV data records after the header (blank records count but are not
returned), JSON lines by line number, array elements by position.
"""
from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opgrpo.benchmark.items import DataError, DataFormatError

__all__ = ["CSV_FIELD_LIMIT", "RowError", "Table", "json_records", "raised_csv_field_limit", "read_table",
           "read_text"]

CSV_FIELD_LIMIT = 2**31 - 1
"""The csv module's field-size limit while a table is read (the largest value every platform accepts)."""

_LINE_END = re.compile(r"\r\n|\r|\n")


class RowError(Exception):
    """What is wrong with one row: the ``field`` and a ``message``; ``kept`` if the row is still used."""

    def __init__(self, field: str, message: str, kept: bool = False):
        super().__init__(message)
        self.field, self.message, self.kept = field, message, kept


def read_text(path: Path, source: str) -> str:
    """The file as text: UTF-8, bad bytes kept as lone surrogates, a leading byte-order mark dropped."""
    data = path.read_bytes()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DataFormatError(DataError(source, None, "encoding", "the file is UTF-16 (it starts with a UTF-16 "
                                                                  "byte-order mark); re-encode it as UTF-8"))
    return data.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")


@contextmanager
def raised_csv_field_limit() -> Iterator[None]:
    """Raise the csv module's process-wide field-size limit to ``CSV_FIELD_LIMIT`` for the block."""
    old = csv.field_size_limit(CSV_FIELD_LIMIT)
    try:
        yield
    finally:
        csv.field_size_limit(old)


@dataclass
class Table:
    """A CSV/TSV file's header (None for an empty file) and its non-blank records, numbered."""

    header: list[str] | None
    rows: list[tuple[int, list[str] | RowError]] = field(default_factory=list)


def _open_quote(lines: list[str], start: int, delimiter: str) -> bool:
    """True if the record starting on line ``start`` (1-based) ends the file inside a quoted field."""
    try:
        list(csv.reader(io.StringIO("".join(lines[start - 1:]), newline=""), delimiter=delimiter, strict=True))
    except csv.Error as e:
        return "unexpected end of data" in str(e)
    return False


def read_table(text: str, source: str, delimiter: str = ",") -> Table:
    """Parse CSV (or, with ``delimiter="\\t"``, TSV) text into its header and numbered records.

    A record the reader cannot get past ends the table with a RowError("row") saying the rest of the file
    was not read; a quoted field left open at the end of the file makes its record a RowError("row").
    """
    with raised_csv_field_limit():
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            return Table(None)
        except csv.Error as e:
            raise DataFormatError(DataError(source, None, "header", f"unreadable header: {e}")) from None
        table = Table(header)
        rownum, start = 0, reader.line_num + 1
        while True:
            try:
                values = next(reader)
            except StopIteration:
                break
            except csv.Error as e:  # cannot resynchronise after a broken record
                table.rows.append((rownum + 1, RowError("row", f"unreadable record near line {reader.line_num}: "
                                                               f"{e}; rest of file not read")))
                return table
            rownum += 1
            if any(v.strip() for v in values):
                table.rows.append((rownum, values))
            last_start, start = start, reader.line_num + 1
        if rownum and reader.line_num > last_start and table.rows and table.rows[-1][0] == rownum:
            lines = io.StringIO(text, newline="").readlines()
            if _open_quote(lines, last_start, delimiter):
                table.rows[-1] = (rownum, RowError(
                    "row", f"a quoted field opened in the record starting on line {last_start} is never closed, so "
                           f"lines {last_start}-{reader.line_num} (the rest of the file) were read as one record; "
                           "close the quote"))
    return table


def json_records(text: str, *, allow_array: bool = False) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """The objects of a JSON Lines text, numbered; a bad line is a RowError("json"). With ``allow_array`` (a
    ``.json`` file) a text that is one JSON array gives its elements instead; in a ``.jsonl``/``.ndjson`` file
    every line is a record, so a line holding an array is a bad row even when it is the only line."""
    numbered: Iterator[tuple[int, Any]] = _parsed_lines(text)
    if allow_array and text.lstrip().startswith("["):
        try:
            numbered = enumerate(json.loads(text), 1)
        except json.JSONDecodeError as e:
            if e.msg != "Extra data":  # "Extra data": JSON Lines whose first line is an array
                yield 1, RowError("json", f"invalid JSON array: {e}")
                return
    for rownum, raw in numbered:
        if isinstance(raw, RowError):
            yield rownum, raw
        elif not isinstance(raw, dict):
            yield rownum, RowError("json", f"expected an object, got {type(raw).__name__}")
        else:
            yield rownum, {str(k).strip().lower(): v for k, v in raw.items()}


def _parsed_lines(text: str) -> Iterator[tuple[int, Any]]:
    for rownum, line in enumerate(_LINE_END.split(text), 1):
        line = line.removeprefix("\ufeff")
        if not line.strip():
            continue
        try:
            yield rownum, json.loads(line)
        except json.JSONDecodeError as e:
            yield rownum, RowError("json", f"invalid JSON: {e}")
