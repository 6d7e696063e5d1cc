"""The SFT file: full target responses to train the response layout on (``benchmark.sft_file``).

The authors' SFT data (``train_summary_sft_full_cleaned.csv``, made by their ``data_preprocess/save_sft_dataset.py``)
is a table with columns ``prompt`` (the situation) and ``answer`` (the whole target response: the reference lines
inside ``<core perspectives>``, an LLM-written summary of the situation inside ``<summary>``). The same table is read
here from CSV, TSV, JSON Lines or a Hugging Face dataset directory, with the aliases ``situation`` for ``prompt`` and
``response``, ``completion`` or ``target`` for ``answer``.

A row is bad (skipped and counted, or an error with ``on_error="fail"``, naming file, row and field, as for the
items: opgrpo.benchmark.loading) when the situation or the response is missing or empty, holds bytes that are not
UTF-8 or is longer than ``MAX_FIELD_CHARS``, or when the response is not the target layout: the whole text must be
one ``<core perspectives>`` block and one ``<summary>`` block, both non-empty (the reward's strict layout,
opgrpo.text.perspectives.parse_strict_layout), because that is what SFT teaches. Repeated situations are data
and kept (the authors' file was made by a merge on the situation).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opgrpo.benchmark.filetext import RowError
from opgrpo.benchmark.items import DataError
from opgrpo.benchmark.loading import check_utf8, field_text, load_converted
from opgrpo.text.perspectives import parse_strict_layout

__all__ = ["SITUATION_COLUMNS", "TARGET_COLUMNS", "SFTExample", "load_sft_examples"]

SITUATION_COLUMNS = ("prompt", "situation")
"""Names of the situation column, in order of preference."""
TARGET_COLUMNS = ("answer", "response", "completion", "target")
"""Names of the full target response column, in order of preference (the authors' file: ``answer``)."""


@dataclass
class SFTExample:
    """One SFT example from the SFT file: a situation and the whole assistant response to teach."""

    id: str
    """``<file stem>:<row>`` (these files carry no ids)."""
    situation: str
    target: str
    """The full target response (``<core perspectives>...</core perspectives>`` then ``<summary>...</summary>``)."""
    source: str
    """"file:row" of where it was read."""


def _row_to_example(row: Mapping[str, Any], source: str, rownum: int, stem: str,
                    strict: bool) -> tuple[SFTExample, DataError | None]:
    situation_key = next((c for c in SITUATION_COLUMNS if c in row), SITUATION_COLUMNS[0])
    situation = field_text(row.get(situation_key), situation_key)
    if situation is None:
        raise RowError(situation_key, "missing or empty situation")
    check_utf8(situation_key, situation)
    target_key = next((c for c in TARGET_COLUMNS if c in row), TARGET_COLUMNS[0])
    target = field_text(row.get(target_key), target_key)
    if target is None:
        raise RowError(target_key, "missing or empty target response")
    check_utf8(target_key, target)
    target = target.replace("\r\n", "\n").replace("\r", "\n")
    if not parse_strict_layout(target).strict:
        raise RowError(target_key, "not the target layout: one non-empty <core perspectives> block followed by one "
                                   "non-empty <summary> block, nothing around them")
    return SFTExample(f"{stem}:{rownum}", situation, target, f"{source}:{rownum}"), None


def load_sft_examples(path: str | Path, *, format: str = "auto", on_error: str = "skip", split: str | None = None,
                      positions: list[int] | None = None) -> tuple[list[SFTExample], list[DataError]]:
    """The examples of an SFT file (see the module docstring) and its row errors.

    ``positions``, a list, receives each example's 0-based row position among the rows read (for
    opgrpo.benchmark.splits.shuffled_split, the authors' 95/5 split of this file).
    """
    return load_converted(path, format=format, on_error=on_error, split=split, limit=None, max_rows=None,
                          positions=positions, convert=_row_to_example, columns=(SITUATION_COLUMNS, TARGET_COLUMNS))
