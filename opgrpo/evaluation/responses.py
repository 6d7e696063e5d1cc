"""A policy's responses to the benchmark items: collecting them with the authors' resampling rule, the core and
summary blocks of a response, and reading them from a file instead of generating them (``eval.responses_file``),
aligned with the benchmark items.

Collecting (:func:`collect_responses`), as the authors' ``benchmark_new/extract/extract.py``: every item is sampled
once; the items whose response lacks a non-empty core and summary under their regex (``LAYOUT_RE``,
:func:`extract_blocks`) are sampled again, together in one batch, up to ``max_attempts`` samples in all. An item
keeps its first response that parses, else its last one; how many samples it took is kept with it
(:class:`Collected`).

Formats, by suffix: ``.csv``, ``.tsv`` (tab-separated), ``.jsonl``/``.ndjson`` (one object per line) or
``.json`` (an array of objects, or JSON Lines). Text is UTF-8 and a byte-order mark is dropped; column
names are matched ignoring case and surrounding spaces; a field of any size is read (see
opgrpo.benchmark.filetext). The text column is ``response`` (or ``completion``, ``output``,
``generation``).

Alignment: with an ``id`` column, rows are matched to the items by id; an item needs at most one row and no
other id may appear. Items the file does not name are left out (``Responses.missing``, ``None`` in their place)
and reported, so a file for some of the test items scores those (an empty file has no response column: an
error). Without one, rows are taken in order and their count must equal the number
of items; a file where another column holds exactly the item ids (a misspelt id header, say) is an
error, never matched by order.

A row whose problem cannot misalign anything is kept, flagged, counted and logged (``Responses.problems``
and ``Responses.counts``): a response that is not text (a JSON number, true/false, NaN, list or object)
scores as an empty response (``not_text``); a row without a response value (JSON null or no key, a CSV
row too short) is an empty response (``missing``); undecodable bytes become U+FFFD (``not_utf8``). An
empty string is an empty response and is not flagged. Everything else is a ``ValueError`` naming the
file (and row): unknown suffix, UTF-16, invalid JSON, a CSV row with more fields than the header or with
a quote never closed, missing/empty/repeated/unknown ids, a count mismatch, no response column.
"""
from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from opgrpo.benchmark.filetext import RowError, json_records, read_table, read_text
from opgrpo.benchmark.items import DataError

__all__ = ["FLAGS", "LAYOUT_RE", "RESPONSE_COLUMNS", "SUFFIXES", "Collected", "Responses", "collect_responses",
           "extract_blocks", "load_responses"]

logger = logging.getLogger(__name__)

RESPONSE_COLUMNS = ("response", "completion", "output", "generation")
"""Names of the text column, in order of preference."""
SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json")
FLAGS = ("not_text", "missing", "not_utf8")
"""Kinds of kept-but-flagged rows, the keys of ``Responses.counts``."""
_LOGGED = 10  # problems logged one by one; the rest only counted
_SURROGATE = re.compile("[\udc80-\udcff]")  # an undecodable byte, as read_text keeps it

LAYOUT_RE = re.compile(
    r"(?is)<core\s+perspectives>\s*(?P<core>.+?)\s*</core\s+perspectives>\s*<summary>\s*(?P<sum>.+?)\s*</summary>")
"""The authors' extraction regex (``benchmark_new/extract/extract.py``), searched anywhere in a response: a core
block directly followed by a summary block, any case, any whitespace inside the tags' names and around the blocks."""


def extract_blocks(response: object) -> tuple[str, str] | None:
    """(core, summary) of ``response``, both stripped, when ``LAYOUT_RE`` finds them and both are non-empty; else
    None (also for anything that is not a string). Only the first match counts, as in the authors' code."""
    if not isinstance(response, str):
        return None
    m = LAYOUT_RE.search(response)
    if m is None:
        return None
    core, summary = m.group("core").strip(), m.group("sum").strip()
    return (core, summary) if core and summary else None


class Collected(list):
    """The collected responses in item order (a ``list`` of ``str``: each item's first response that parses, else
    its last one) with ``attempts`` (samples drawn per item) and ``counts`` (``resampled``: items sampled more
    than once; ``never_parsed``: items whose every sample failed ``extract_blocks``)."""

    def __init__(self, texts: Sequence[str], attempts: Sequence[int]):
        super().__init__(texts)
        self.attempts = list(attempts)
        self.counts = {"resampled": sum(a > 1 for a in self.attempts),
                       "never_parsed": sum(extract_blocks(t) is None for t in texts)}


def collect_responses(prompts: Sequence[object], generate: Callable[[list, int], Sequence[str]], *,
                      max_attempts: int = 1, seed: int = 42) -> Collected:
    """One response per prompt, sampled again while it lacks a non-empty core and summary (the module docstring).

    ``generate(prompts, seed)`` returns one response per prompt; attempt ``k`` (1-based) calls it with the prompts
    still failing and ``seed + k - 1``, so that a sample is never drawn twice with the same seed. A ``None``
    response counts as an empty one.
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    texts = [""] * len(prompts)
    attempts = [0] * len(prompts)
    todo = list(range(len(prompts)))
    for attempt in range(1, max_attempts + 1):
        if not todo:
            break
        if attempt > 1:
            logger.info("attempt %d of %d: sampling again the %d response(s) without a core and a summary",
                        attempt, max_attempts, len(todo))
        outs = list(generate([prompts[i] for i in todo], seed + attempt - 1))
        if len(outs) != len(todo):
            raise RuntimeError(f"the generator returned {len(outs)} responses for {len(todo)} prompts")
        for i, text in zip(todo, outs):
            texts[i], attempts[i] = "" if text is None else str(text), attempt
        todo = [i for i in todo if extract_blocks(texts[i]) is None]
    out = Collected(texts, attempts)
    if max_attempts > 1:
        logger.info("responses: %d item(s) sampled more than once; %d without a core and a summary after %d "
                    "attempts", out.counts["resampled"], out.counts["never_parsed"], max_attempts)
    return out


class Responses(list):
    """The responses in item order (a ``list`` of ``str``), with what was flagged on the way.

    ``problems``: one DataError (``kept=True``) per flagged row, naming file, row and field;
    ``counts``: {flag: number of rows} for every flag in FLAGS; ``matched_by``: "id" or "order";
    ``missing``: ids of the items the file has no row for (their entries are ``None``); ``attempts``: the samples
    drawn per item when the file has an ``attempts`` column (as the eval stage's responses.jsonl and stage=generate
    write it; None per item where it is absent or not a positive integer), else None.
    """

    def __init__(self, texts: Sequence[str | None], problems: list[DataError], counts: dict[str, int],
                 matched_by: str, missing: Sequence[str] = ()):
        super().__init__(texts)
        self.problems, self.counts, self.matched_by = problems, counts, matched_by
        self.missing = list(missing)
        self.attempts: list[int | None] | None = None


def _attempts(value: Any) -> int | None:
    """A row's ``attempts`` as a positive int (JSON number or CSV text), else None."""
    if isinstance(value, bool):
        return None
    try:
        number = float(str(value).strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if math.isfinite(number) and number.is_integer() and number >= 1 else None


def _read_records(path: Path) -> list[tuple[int, Mapping[str, Any]]]:
    """(row number, record) pairs; keys stripped and lower-cased. ValueError for an unreadable file or row."""
    suffix, source = path.suffix.lower(), str(path)
    if suffix not in SUFFIXES:
        raise ValueError(f"{path}: unknown responses file type {suffix or '(no suffix)'!r}; expected "
                         f"{', '.join(SUFFIXES)} (.tsv is tab-separated)")
    text = read_text(path, source)
    if suffix in (".csv", ".tsv"):
        delimiter = "\t" if suffix == ".tsv" else ","
        table = read_table(text, source, delimiter)
        columns = [h.strip().lower() for h in table.header or []]
        for name in set(columns):
            if name in ("id", *RESPONSE_COLUMNS) and columns.count(name) > 1:
                raise ValueError(f"{path}: column {name!r} appears {columns.count(name)} times in the header")
        records = []
        for n, values in table.rows:
            if isinstance(values, RowError):
                raise ValueError(f"{path}: row {n}: {values.message}")  # noqa: TRY004 - a bad row, not a bad argument
            if len(values) > len(columns) and any(v.strip() for v in values[len(columns):]):
                raise ValueError(f"{path}: row {n} has {len(values)} fields but the header has {len(columns)} "
                                 f"(unquoted {'tab' if delimiter == chr(9) else 'comma'}?)")
            records.append((n, dict(zip(columns, values))))
        return records
    records = []
    for n, record in json_records(text, allow_array=suffix == ".json"):
        if isinstance(record, RowError):
            raise ValueError(f"{path}: line {n}: {record.message}")  # noqa: TRY004 - a bad line, not a bad argument
        records.append((n, record))
    return records


def _text(value: Any) -> tuple[str, str | None]:
    """The response text and its flag (None when fine)."""
    if value is None:
        return "", "missing"
    if not isinstance(value, str):
        return "", "not_text"
    if _SURROGATE.search(value):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace"), "not_utf8"
    return value, None


_MESSAGES = {"missing": "no response value; scored as an empty response",
             "not_text": "not text ({}); scored as an empty response",
             "not_utf8": "bytes that are not UTF-8, replaced by U+FFFD"}


def _response(record: Mapping[str, Any], column: str, n: int, source: str,
              problems: list[DataError], counts: dict[str, int]) -> str:
    value = record.get(column)
    text, flag = _text(value)
    if flag is not None:
        counts[flag] += 1
        kind = "NaN" if isinstance(value, float) and math.isnan(value) else type(value).__name__
        problems.append(DataError(source, n, column, _MESSAGES[flag].format(kind), kept=True))
    return text


def _id(value: Any) -> str:
    return "" if value is None else str(value).strip()


def load_responses(path: str | Path, items: Sequence[Any]) -> Responses:
    """The responses in ``path`` aligned with ``items`` (Items or plain ids); see the module docstring.

    Returns a ``Responses`` (a list of str, one per item in order) that also carries the flagged rows
    (``problems``), their ``counts`` and how rows were matched (``matched_by``); flagged rows are logged.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"responses file {path} does not exist")
    source = str(path)
    records = _read_records(path)
    columns = list(dict.fromkeys(k for _, r in records for k in r))
    column = next((c for c in RESPONSE_COLUMNS if c in columns), None)
    if column is None:
        raise ValueError(f"{path}: no response column; expected one of {RESPONSE_COLUMNS}, found {sorted(columns)}")
    ids = [str(getattr(it, "id", it)) for it in items]
    problems: list[DataError] = []
    counts = dict.fromkeys(FLAGS, 0)

    if "id" not in columns:
        wanted = set(ids)
        for other in columns:
            values = {_id(r.get(other)) for _, r in records}
            if other != column and wanted and values == wanted:
                raise ValueError(f"{path}: no 'id' column, but column {other!r} holds the item ids; name it 'id' "
                                 "so that rows are matched by id, not by order")
        if len(records) != len(items):
            raise ValueError(f"{path}: {len(records)} responses for {len(items)} items "
                             "(no 'id' column, so rows are matched by order)")
        texts = [_response(r, column, n, source, problems, counts) for n, r in records]
        out = Responses(texts, problems, counts, "order")
        if "attempts" in columns:
            out.attempts = [_attempts(r.get("attempts")) for _, r in records]
    else:
        by_id: dict[str, str] = {}
        row_of: dict[str, int] = {}
        tries: dict[str, int | None] = {}
        for n, r in records:
            rid = _id(r.get("id"))
            if not rid:
                raise ValueError(f"{path}: row {n} has an empty id")
            if rid in by_id:
                raise ValueError(f"{path}: id {rid!r} appears more than once (rows {row_of[rid]} and {n})")
            by_id[rid], row_of[rid] = _response(r, column, n, source, problems, counts), n
            tries[rid] = _attempts(r.get("attempts"))
        wanted = set(ids)
        unknown = [i for i in by_id if i not in wanted]
        if unknown:
            raise ValueError(f"{path}: {len(unknown)} unknown id(s) not among the {len(ids)} items, e.g. {unknown[:5]}")
        missing = [i for i in ids if i not in by_id]
        if missing:
            logger.warning("%s: responses for %d of %d items; the %d others are left out of the evaluation, e.g. %s",
                           path, len(by_id), len(ids), len(missing), missing[:5])
        out = Responses([by_id.get(i) for i in ids], problems, counts, "id", missing)
        if "attempts" in columns:
            out.attempts = [tries.get(i) for i in ids]
    for problem in problems[:_LOGGED]:
        logger.warning("%s", problem)
    if problems:
        logger.warning("%s: %d of %d responses flagged (%s)%s", path, len(problems), len(out),
                       ", ".join(f"{k}={v}" for k, v in counts.items() if v),
                       f"; only the first {_LOGGED} listed" if len(problems) > _LOGGED else "")
    return out
