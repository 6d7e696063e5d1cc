"""Responses files (opgrpo.evaluation.responses): formats, alignment by id or order, and bad input (BOM, huge
fields, TSV, non-text values, broken rows), each with hand-written files and expected results."""
from __future__ import annotations

import json
import logging

import pytest

from opgrpo.benchmark import Item, Perspective
from opgrpo.evaluation.responses import load_responses


def items():
    return [Item(i, "s", [Perspective("A", "a.")], "f") for i in ("x1", "x2", "x3")]


def test_load_responses_csv_by_id_and_by_order(tmp_path):
    by_id = tmp_path / "r.csv"
    by_id.write_text('id,response\nx3,"third, with comma\nand newline"\nx1,first\nx2,\n')
    got = load_responses(by_id, items())
    assert got == ["first", "", "third, with comma\nand newline"]
    assert got.matched_by == "id" and got.problems == [] and got.counts == {"not_text": 0, "missing": 0, "not_utf8": 0}
    by_order = tmp_path / "o.csv"
    by_order.write_text("completion\none\ntwo\nthree\n")
    got = load_responses(by_order, items())
    assert got == ["one", "two", "three"] and got.matched_by == "order"


def test_load_responses_jsonl_by_id_and_by_order(tmp_path):
    by_id = tmp_path / "r.jsonl"
    by_id.write_text('{"id": "x2", "response": "b"}\n\n{"id": "x1", "response": "a"}\n{"id": "x3", "response": null}\n')
    assert load_responses(by_id, items()) == ["a", "b", ""]
    by_order = tmp_path / "o.jsonl"
    by_order.write_text('{"response": "a"}\n{"response": "b"}\n{"response": "c"}\n')
    assert load_responses(by_order, ["x1", "x2", "x3"]) == ["a", "b", "c"]


def test_load_responses_errors_name_the_file(tmp_path):
    short = tmp_path / "short.csv"
    short.write_text("response\none\ntwo\n")
    with pytest.raises(ValueError, match=r"short\.csv: 2 responses for 3 items"):
        load_responses(short, items())
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text('{"id": "x1", "response": "a"}\n{"id": "zz", "response": "b"}\n')
    with pytest.raises(ValueError, match=r"unknown\.jsonl: 1 unknown id.*zz"):
        load_responses(unknown, items())
    empty = tmp_path / "empty.csv"
    empty.write_text("id,response\n")
    with pytest.raises(ValueError, match=r"empty\.csv: no response column"):
        load_responses(empty, items())
    dup = tmp_path / "dup.csv"
    dup.write_text("id,response\nx1,a\nx1,b\nx2,c\n")
    with pytest.raises(ValueError, match=r"dup\.csv: id 'x1' appears more than once \(rows 1 and 2\)"):
        load_responses(dup, items())
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("id,text\nx1,a\n")
    with pytest.raises(ValueError, match=r"nocol\.csv: no response column"):
        load_responses(nocol, items())
    with pytest.raises(FileNotFoundError, match="nothere"):
        load_responses(tmp_path / "nothere.csv", items())


# ------------------------------------------------------------------------------ issue 16, item 1: BOM

DEMO_IDS = [f"sample-test-{n:02d}" for n in (1, 3, 5, 7, 9, 11, 13)]


def test_bom_csv_responses_are_matched_by_id_not_by_order(tmp_path):
    # the repro: a BOM-prefixed id,response CSV for the 7 demo test ids, in reverse order
    path = tmp_path / "bom.csv"
    rows = "".join(f"{i},response to {i}\r\n" for i in reversed(DEMO_IDS))
    path.write_bytes(("\ufeffid,response\r\n" + rows).encode("utf-8"))
    got = load_responses(path, DEMO_IDS)
    assert got[0] == "response to sample-test-01" and got[-1] == "response to sample-test-13"
    assert got == [f"response to {i}" for i in DEMO_IDS] and got.matched_by == "id"
    # TSV and JSONL with a BOM too; header case and spaces do not matter
    tsv = tmp_path / "bom.tsv"
    tsv.write_bytes(("\ufeff ID \tResponse\n" + "".join(f"{i}\tr {i}\n" for i in reversed(DEMO_IDS))).encode())
    assert load_responses(tsv, DEMO_IDS) == [f"r {i}" for i in DEMO_IDS]
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes(b"\xef\xbb\xbf" + "".join(
        json.dumps({"id": i, "response": f"j {i}"}) + "\n" for i in reversed(DEMO_IDS)).encode())
    assert load_responses(jsonl, DEMO_IDS) == [f"j {i}" for i in DEMO_IDS]


def test_an_unrecognised_id_column_is_an_error_not_order_matching(tmp_path):
    # a BOM decoded as Latin-1 upstream ("ï»¿id"): the ids are there under another name
    path = tmp_path / "mojibake.csv"
    path.write_text("ï»¿id,response\n" + "".join(f"{i},r {i}\n" for i in reversed(DEMO_IDS)), encoding="utf-8")
    with pytest.raises(ValueError, match=r"mojibake\.csv: no 'id' column, but column 'ï»¿id' holds the item ids"):
        load_responses(path, DEMO_IDS)


def test_utf16_file_is_named_as_such(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_bytes("id,response\nx1,a\nx2,b\nx3,c\n".encode("utf-16"))
    with pytest.raises(ValueError, match=r"wide\.csv: field 'encoding': the file is UTF-16"):
        load_responses(path, items())


# ------------------------------------------------------------------------- item 2: huge CSV fields

def test_megabyte_response_loads_and_rows_after_it_too(tmp_path):
    big = "word " * 200_000  # 1,000,000 characters, over the csv module's 131,072 default
    path = tmp_path / "big.csv"
    path.write_text(f'id,response\nx1,"{big}"\nx2,after\nx3,last\n')
    got = load_responses(path, items())
    assert got == [big, "after", "last"] and got.problems == []
    tsv = tmp_path / "big.tsv"
    tsv.write_text(f"response\n{big}\nafter\nlast\n")
    assert load_responses(tsv, items()) == [big, "after", "last"]


def test_csv_field_limit_is_restored(tmp_path):
    import csv

    before = csv.field_size_limit()
    path = tmp_path / "r.csv"
    path.write_text("id,response\nx1,a\nx2,b\nx3,c\n")
    load_responses(path, items())
    assert csv.field_size_limit() == before


# --------------------------------------------------------------------------------- item 11: .tsv

def test_tsv_responses_and_unknown_suffix(tmp_path):
    path = tmp_path / "r.tsv"
    path.write_text('id\tresponse\nx2\tb, with a comma\nx1\t"quoted\ttab"\nx3\tc\n')
    assert load_responses(path, items()) == ["quoted\ttab", "b, with a comma", "c"]
    txt = tmp_path / "r.txt"
    txt.write_text("id,response\nx1,a\n")
    with pytest.raises(ValueError, match=r"r\.txt: unknown responses file type '\.txt'; expected .*\.tsv"):
        load_responses(txt, items())


# ------------------------------------------------------------------- item 11: non-text responses

def test_non_text_responses_are_scored_empty_flagged_and_counted(tmp_path, caplog):
    lines = ['{"id": "a", "response": 42}', '{"id": "b", "response": ["x", "y"]}', '{"id": "c", "response": NaN}',
             '{"id": "d", "response": true}', '{"id": "e", "response": {"text": "t"}}', '{"id": "f", "response": null}',
             '{"id": "g"}', '{"id": "h", "response": ""}', '{"id": "i", "response": "fine"}']
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    ids = list("abcdefghi")
    with caplog.at_level(logging.WARNING, logger="opgrpo.evaluation.responses"):
        got = load_responses(path, ids)
    assert got == ["", "", "", "", "", "", "", "", "fine"]
    assert got.counts == {"not_text": 5, "missing": 2, "not_utf8": 0}
    assert [(p.row, p.field, p.kept) for p in got.problems] == [(n, "response", True) for n in range(1, 8)]
    assert [p.message for p in got.problems[:3]] == [
        "not text (int); scored as an empty response", "not text (list); scored as an empty response",
        "not text (NaN); scored as an empty response"]
    assert all(p.source == str(path) for p in got.problems)
    warned = [r.getMessage() for r in caplog.records]
    assert warned[0] == f"{path}: row 1: field 'response': not text (int); scored as an empty response (row kept)"
    assert warned[-1] == f"{path}: 7 of 9 responses flagged (not_text=5, missing=2)"


def test_bad_bytes_and_short_rows_are_flagged(tmp_path):
    path = tmp_path / "enc.csv"
    path.write_bytes(b"id,response\nx1,caf\xe9 noir\nx2\nx3,ok\n")
    got = load_responses(path, items())
    assert got == ["caf\ufffd noir", "", "ok"]
    assert got.counts == {"not_text": 0, "missing": 1, "not_utf8": 1}
    assert [(p.row, p.field) for p in got.problems] == [(1, "response"), (2, "response")]


# ------------------------------------------------------------------- rows that would misalign or truncate

def test_broken_csv_rows_are_errors_naming_file_and_row(tmp_path):
    comma = tmp_path / "comma.csv"
    comma.write_text("id,response\nx1,hello, world\nx2,b\nx3,c\n")  # the response would be cut at the comma
    with pytest.raises(ValueError, match=r"comma\.csv: row 1 has 3 fields but the header has 2 \(unquoted comma\?\)"):
        load_responses(comma, items())
    trailing = tmp_path / "trailing.csv"  # an empty trailing field is harmless
    trailing.write_text("id,response\nx1,a,\nx2,b,\nx3,c,\n")
    assert load_responses(trailing, items()) == ["a", "b", "c"]
    quote = tmp_path / "quote.csv"  # x2's quote is never closed: x3 would become part of x2's response
    quote.write_text('id,response\nx1,a\nx2,"b\nx3,c\n')
    with pytest.raises(ValueError, match=r"quote\.csv: row 2: a quoted field .* never closed, so lines 3-4"):
        load_responses(quote, items())
    twice = tmp_path / "twice.csv"
    twice.write_text("id,response,Response\nx1,a,b\n")
    with pytest.raises(ValueError, match=r"twice\.csv: column 'response' appears 2 times"):
        load_responses(twice, items())


def test_responses_for_some_items_leave_the_others_out(tmp_path, caplog):
    """Issue 20.5: a responses file for fewer items than the test file used to end in a traceback."""
    path = tmp_path / "some.jsonl"
    path.write_text('{"id": "x3", "response": "c"}\n{"id": "x1", "response": "a"}\n')
    out = load_responses(path, items())
    assert list(out) == ["a", None, "c"] and out.missing == ["x2"] and out.matched_by == "id"
    assert "responses for 2 of 3 items" in caplog.text and "x2" in caplog.text


def test_attempts_column_is_read_when_present(tmp_path):
    """Issue 17.1: the samples drawn per item travel from a responses file (the eval stage's responses.jsonl,
    stage=generate's file) into nli_items.jsonl."""
    by_id = tmp_path / "responses.jsonl"
    by_id.write_text('{"id": "x2", "response": "b", "attempts": 3}\n{"id": "x1", "response": "a", "attempts": 1}\n'
                     '{"id": "x3", "response": "c", "attempts": null}\n')
    got = load_responses(by_id, items())
    assert got == ["a", "b", "c"] and got.attempts == [1, 3, None]
    by_order = tmp_path / "o.csv"
    by_order.write_text("response,attempts\none,2\ntwo,two\nthree,4.0\n")
    assert load_responses(by_order, items()).attempts == [2, None, 4]
    plain = tmp_path / "p.csv"
    plain.write_text("response\none\ntwo\nthree\n")
    assert load_responses(plain, items()).attempts is None
