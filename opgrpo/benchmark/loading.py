"""Loading benchmark items (a situation plus its reference perspectives) from files, with row validation.

Sources, all with the same fields (a situation and its references):

- ValuePrism-style CSV (or TSV, tab-separated, ``.tsv``): columns ``prompt``, ``answer`` and optionally
  ``num_perspectives`` and ``id``; ``answer`` holds one "In the perspective of <Name>, <explanation>" line
  per perspective (an explanation may continue on further lines that do not start with the phrase).
- JSON Lines (or a ``.json`` array of objects): the same fields, or ``situation`` plus
  ``perspectives: [{"name", "text"}]``.
- Hugging Face ``datasets``: a directory written by ``save_to_disk`` or anything
  ``datasets.load_dataset(path)`` loads (a hub id needs the network), with the same columns.

Field aliases: ``prompt`` or ``situation``; ``perspectives`` (a list of ``{name, text}`` or of reference
lines) wins over ``answer`` when both are present. Files are UTF-8 (a byte-order mark is dropped; see
opgrpo.benchmark.filetext); an existing file with another suffix is an error naming the suffix unless
``format`` says how to read it.

Bad rows never crash the loader. With ``on_error="skip"`` each one is skipped, logged as a warning
and returned as a :class:`DataError` naming file, row (1-based data row; for JSON Lines the line
number) and field; ``on_error="fail"`` raises :class:`DataFormatError` at the first one. A row is bad
when the situation or the answer is missing or empty, an answer piece does not start with the
perspective phrase or has an empty name or explanation, a text field holds bytes that are not UTF-8,
its id repeats an earlier one, a text field is longer than ``MAX_FIELD_CHARS`` characters, a CSV row has
more fields than the header, or a quoted CSV field is never closed (the rest of the file is that row).
A huge field never stops the reader: the rows after it are read as usual. A ``num_perspectives``
that is not an integer or disagrees with the parsed count is bad too in "fail" mode; in "skip" mode
the row is *kept* with the parsed count and the DataError has ``kept=True``. Repeated perspective
names within an item are data and are kept.
"""
from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from opgrpo.benchmark.filetext import RowError as _RowError
from opgrpo.benchmark.filetext import json_records, read_table, read_text
from opgrpo.benchmark.items import DataError, DataFormatError, Item, Perspective
from opgrpo.text.perspectives import parse_reference, split_perspective_sentences

__all__ = ["FORMATS", "MAX_FIELD_CHARS", "SUFFIX_FORMATS", "load_items"]

logger = logging.getLogger(__name__)

FORMATS = ("auto", "csv", "tsv", "jsonl", "hf_disk", "hf")
ON_ERROR = ("skip", "fail")
SUFFIX_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
"""The format ``format="auto"`` reads a file with each suffix as."""
MAX_FIELD_CHARS = 100_000
"""Longest usable text field (situation, answer, perspective name or text, id), in characters; a row with a
longer one is bad. Real situations and answers are a few thousand characters at most."""
_HF_DISK_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
_STARTS_WITH_PHRASE = re.compile(r"\s*(?:From|In) the perspective of ", re.IGNORECASE)
_HUB_ID = re.compile(r"^[\w.-]+(?:/[\w.-]+)?$")


# --------------------------------------------------------------------------------------------- rows

def field_text(value: Any, field: str) -> str | None:
    """A field as stripped text, None when absent/empty (NaN counts as absent)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise _RowError(field, f"expected text, got {type(value).__name__}")
    text = value if isinstance(value, str) else str(value)
    return text.strip() or None


_NOT_UTF8 = re.compile("[\udc80-\udcff\ufffd]")


def check_utf8(field: str, text: str) -> None:
    """Raise for a huge text or one holding undecodable bytes (a lone surrogate from surrogateescape, or the
    U+FFFD of a lenient reader upstream)."""
    if len(text) > MAX_FIELD_CHARS:
        raise _RowError(field, f"{len(text):,} characters, over the limit of {MAX_FIELD_CHARS:,} for a text field")
    bad = _NOT_UTF8.search(text)
    if bad is None:
        return
    i, ch = bad.start(), bad.group()
    if ch == "\ufffd":
        raise _RowError(field, f"U+FFFD replacement character at character {i} (text was decoded from "
                               "non-UTF-8 bytes upstream)")
    raise _RowError(field, f"text is not valid UTF-8 (byte 0x{ord(ch) - 0xDC00:02x} at character {i}); "
                           "re-encode the file as UTF-8")


def _parse_answer(answer: str) -> list[Perspective]:
    pieces = split_perspective_sentences(answer.replace("\r\n", "\n").replace("\r", "\n"))
    out: list[Perspective] = []
    for k, piece in enumerate(pieces, 1):
        name, text = parse_reference(piece) if _STARTS_WITH_PHRASE.match(piece) else (None, piece)
        short = piece if len(piece) <= 60 else piece[:57] + "..."
        if name is None:
            raise _RowError("answer", f"line {k} of {len(pieces)} does not start with "
                                      f"'In the perspective of <Name>,': {short!r}")
        if not name:
            raise _RowError("answer", f"line {k} of {len(pieces)} has an empty perspective name: {short!r}")
        if not text:
            raise _RowError("answer", f"line {k} of {len(pieces)} ({name!r}) has no explanation")
        out.append(Perspective(name, text, raw=piece))
    if not out:
        raise _RowError("answer", "no perspective found")
    return out


def _parse_perspective_list(value: Any) -> list[Perspective]:
    if isinstance(value, str):  # reference lines in one string, as in ``answer``
        check_utf8("perspectives", value)
        try:
            return _parse_answer(value)
        except _RowError as e:
            raise _RowError("perspectives", e.message) from None
    if not isinstance(value, (list, tuple)):
        raise _RowError("perspectives", f"expected a list, got {type(value).__name__}")
    out: list[Perspective] = []
    for k, entry in enumerate(value, 1):
        if isinstance(entry, str):
            check_utf8(f"perspectives[{k}]", entry)
            try:
                out.extend(_parse_answer(entry))
            except _RowError as e:
                raise _RowError(f"perspectives[{k}]", e.message) from None
            continue
        if not isinstance(entry, Mapping):
            raise _RowError(f"perspectives[{k}]",
                            f"expected {{name, text}} or a reference line, got {type(entry).__name__}")
        name, text = (field_text(entry.get(key), f"perspectives[{k}].{key}") for key in ("name", "text"))
        for key, got in (("name", name), ("text", text)):
            if got is None:
                raise _RowError(f"perspectives[{k}].{key}", "missing or empty")
            check_utf8(f"perspectives[{k}].{key}", got)
        # the reference line must read back as this one perspective (a name may hold "." or "(e.g., ...)")
        perspective = Perspective(name, text.replace("\r\n", "\n"))
        if "\n" in name or parse_reference(perspective.line)[0] != name:
            raise _RowError(f"perspectives[{k}].name",
                            f"{name!r} contains a ',' outside parentheses or a line break")
        if len(split_perspective_sentences(perspective.line)) != 1:
            raise _RowError(f"perspectives[{k}].text", "contains a line starting with the perspective phrase")
        out.append(perspective)
    if not out:
        raise _RowError("perspectives", "empty list")
    return out


def _declared_count(value: Any) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, bool):
        raise _RowError("num_perspectives", f"not an integer: {value!r}")
    if isinstance(value, (int, np.integer)):
        return int(value)
    try:
        number = float(str(value).strip())
    except ValueError:
        number = math.nan
    if not number.is_integer():
        raise _RowError("num_perspectives", f"not an integer: {value!r}")
    return int(number)


def _row_to_item(row: Mapping[str, Any], source: str, rownum: int, stem: str,
                 strict: bool) -> tuple[Item, DataError | None]:
    """Build an Item from one row; raises _RowError when the row is unusable."""
    situation_key = "prompt" if "prompt" in row else "situation"
    situation = field_text(row.get(situation_key), situation_key)
    if situation is None:
        raise _RowError(situation_key, "missing or empty situation")
    check_utf8(situation_key, situation)

    listed = row.get("perspectives")
    if isinstance(listed, float) and math.isnan(listed):
        listed = None
    if listed is not None and listed != [] and listed != "":
        perspectives = _parse_perspective_list(listed)
    else:
        answer = field_text(row.get("answer"), "answer")
        if answer is None:
            field_name = "answer" if "answer" in row or "perspectives" not in row else "perspectives"
            raise _RowError(field_name, "missing or empty answer")
        check_utf8("answer", answer)
        perspectives = _parse_answer(answer)

    item_id = field_text(row.get("id"), "id")
    if item_id is not None:
        check_utf8("id", item_id)
    item = Item(item_id or f"{stem}:{rownum}", situation, perspectives, f"{source}:{rownum}")

    note = None
    try:
        declared = _declared_count(row.get("num_perspectives"))
    except _RowError as e:
        if strict:
            raise
        note = DataError(source, rownum, e.field, f"{e.message}; using the parsed count {len(perspectives)}", kept=True)
    else:
        if declared is not None and declared != len(perspectives):
            msg = f"says {declared} but the answer has {len(perspectives)} perspectives"
            if strict:
                raise _RowError("num_perspectives", msg)
            note = DataError(source, rownum, "num_perspectives", msg + "; using the parsed count", kept=True)
    return item, note


def _collect(rows: Iterable[tuple[int, Mapping[str, Any] | _RowError]], source: str, stem: str,
             on_error: str, limit: int | None, max_rows: int | None = None, positions: list[int] | None = None,
             convert: Callable[..., tuple[Any, DataError | None]] | None = None) -> tuple[list, list[DataError]]:
    """Rows -> records (``convert``, default ``_row_to_item``), bad rows reported; ``positions`` receives each
    record's 0-based row position; at most ``limit`` records from at most ``max_rows`` rows."""
    convert = convert or _row_to_item
    strict = on_error == "fail"
    items: list = []
    errors: list[DataError] = []
    seen: dict[str, int] = {}

    def report(error: DataError) -> None:
        if strict and not error.kept:
            raise DataFormatError(error)
        logger.warning("%s", error)
        errors.append(error)

    for index, (rownum, row) in enumerate(rows):
        if (limit is not None and len(items) >= limit) or (max_rows is not None and index >= max_rows):
            break
        try:
            if isinstance(row, _RowError):
                raise row
            item, note = convert(row, source, rownum, stem, strict)
            if item.id in seen:
                raise _RowError("id", f"duplicate id {item.id!r} (first at row {seen[item.id]})")
        except _RowError as e:
            report(DataError(source, rownum, e.field, e.message))
            continue
        if note is not None:
            report(note)
        seen[item.id] = rownum
        items.append(item)
        if positions is not None:
            positions.append(index)
    skipped = sum(not e.kept for e in errors)
    logger.info("loaded %d items from %s (%d rows skipped, %d kept with a warning)", len(items), source,
                skipped, len(errors) - skipped)
    return items, errors


# ------------------------------------------------------------------------------------------ formats

_ITEM_COLUMNS = (("prompt", "situation"), ("answer", "perspectives"))
"""Columns a table of items needs: one name of each group."""


def _csv_rows(path: Path, source: str, delimiter: str,
              required_columns: tuple[tuple[str, ...], ...] = _ITEM_COLUMNS,
              ) -> Iterator[tuple[int, Mapping[str, Any] | _RowError]]:
    table = read_table(read_text(path, source), source, delimiter)
    if table.header is None:
        return
    columns = [h.strip().lower() for h in table.header]
    for required in required_columns:
        if not any(c in columns for c in required):
            tabs = "; tab-separated? read it with format='tsv'" if delimiter == "," and "\t" in "".join(columns) else ""
            raise DataFormatError(DataError(source, None, required[0],
                                            f"no column {required[0]!r} in the header {table.header!r}{tabs}"))
    separator = "tab" if delimiter == "\t" else "comma"
    for rownum, values in table.rows:
        if isinstance(values, _RowError):
            yield rownum, values
        elif len(values) > len(columns):
            yield rownum, _RowError("row", f"{len(values)} fields but the header has {len(columns)} "
                                           f"(unquoted {separator}?)")
        else:
            yield rownum, dict(zip(columns, values))


def _hf_rows(dataset: Any, source: str, required_columns: tuple[tuple[str, ...], ...] = _ITEM_COLUMNS,
             ) -> Iterator[tuple[int, Mapping[str, Any] | _RowError]]:
    columns = set(dataset.column_names)
    for required in required_columns:
        if not columns.intersection(required):
            raise DataFormatError(DataError(source, None, required[0],
                                            f"no column {required[0]!r} in {sorted(columns)}"))
    yield from enumerate(dataset, 1)


def _pick_split(dataset: Any, split: str | None, source: str) -> Any:
    from datasets import DatasetDict

    if not isinstance(dataset, DatasetDict):
        return dataset
    if split is None:
        if len(dataset) != 1:
            raise DataFormatError(DataError(source, None, "split", f"several splits {sorted(dataset)}; pass split="))
        split = next(iter(dataset))
    if split not in dataset:
        raise DataFormatError(DataError(source, None, "split", f"no split {split!r}; available: {sorted(dataset)}"))
    return dataset[split]


def _guess_format(path: Path, source: str) -> str:
    if path.is_dir():
        return "hf_disk" if any((path / m).exists() for m in _HF_DISK_MARKERS) else "hf"
    suffix = path.suffix.lower()
    if path.exists() and suffix not in SUFFIX_FORMATS:
        raise DataFormatError(DataError(source, None, "format", (
            f"unknown data file type {suffix or '(no suffix)'!r}: expected {', '.join(SUFFIX_FORMATS)} or a "
            "dataset directory; pass format='csv', 'tsv' or 'jsonl' to read it as one of those")))
    return SUFFIX_FORMATS.get(suffix, "hf")


def load_items(path: str | Path, *, format: str = "auto", on_error: str = "skip", split: str | None = None,
               limit: int | None = None, max_rows: int | None = None,
               positions: list[int] | None = None) -> tuple[list[Item], list[DataError]]:
    """Load benchmark items from a CSV/TSV, JSON Lines file or Hugging Face dataset (see the module docstring).

    ``split`` selects a split of a Hugging Face dataset (needed when it has several; ignored for files).
    ``limit`` stops after that many good items, ``max_rows`` after that many data rows, good or bad (the authors'
    "first 12,000 rows"); ``positions``, a list, receives each item's 0-based position among the rows read (the
    rows read = the items plus the skipped rows, ``opgrpo.benchmark.splits.shuffled_split`` takes both). Returns
    the items and the row errors (skipped rows and rows kept with a warning).
    """
    return load_converted(path, format=format, on_error=on_error, split=split, limit=limit, max_rows=max_rows,
                          positions=positions)


def load_converted(path: str | Path, *, format: str, on_error: str, split: str | None, limit: int | None,
                   max_rows: int | None, positions: list[int] | None, convert: Callable | None = None,
                   columns: tuple[tuple[str, ...], ...] = ()) -> tuple[list, list[DataError]]:
    """``load_items`` with the row converter and the required CSV columns as arguments (the SFT file uses them)."""
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; expected one of {FORMATS}")
    if on_error not in ("skip", "fail"):
        raise ValueError(f"on_error must be 'skip' or 'fail', got {on_error!r}")
    for name, value in (("limit", limit), ("max_rows", max_rows)):
        if value is not None and value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    p = Path(path).expanduser()
    source = str(path)
    looks_like_hub_id = not p.exists() and p.suffix.lower() not in SUFFIX_FORMATS \
        and not p.is_absolute() and _HUB_ID.match(str(path)) is not None
    if not p.exists() and not (format == "hf" or (format == "auto" and looks_like_hub_id)):
        raise FileNotFoundError(f"data file not found: {source}")
    fmt = _guess_format(p, source) if format == "auto" else format
    if fmt == "hf" and p.is_dir() and _guess_format(p, source) == "hf_disk":  # "hf" covers save_to_disk output too
        fmt = "hf_disk"
    stem = p.stem if p.suffix.lower() in SUFFIX_FORMATS else p.name
    if split is not None and fmt in ("csv", "tsv", "jsonl"):
        logger.info("split=%r ignored for the %s file %s", split, fmt, source)

    if fmt in ("csv", "tsv"):
        rows: Iterable = _csv_rows(p, source, "\t" if fmt == "tsv" else ",", columns or _ITEM_COLUMNS)
    elif fmt == "jsonl":
        rows = json_records(read_text(p, source), allow_array=p.suffix.lower() == ".json")
    else:
        import datasets

        if fmt == "hf_disk":
            dataset = datasets.load_from_disk(str(p))
        else:
            try:
                dataset = datasets.load_dataset(str(path), split=split)
            except FileNotFoundError:
                raise
            except Exception as e:  # offline hub ids, unknown builders
                if not p.exists():
                    raise FileNotFoundError(
                        f"data not found: {source} is not a local file and could not be loaded as a "
                        f"Hugging Face dataset ({type(e).__name__}: {e})") from e
                raise
        rows = _hf_rows(_pick_split(dataset, split, source), source, columns or _ITEM_COLUMNS)
    return _collect(rows, source, stem, on_error, limit, max_rows, positions, convert)
