"""Property test of the item loaders (CSV, TSV, JSON Lines): any mix of valid rows and malformed rows (huge
fields, byte-order marks, bytes that are not UTF-8, missing or extra fields, broken JSON) loads every valid
row, in order and unchanged, and reports every bad one by file, row and field; nothing valid is dropped."""
from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opgrpo.benchmark import DataFormatError, load_items
from opgrpo.benchmark.filetext import CSV_FIELD_LIMIT
from opgrpo.benchmark.loading import MAX_FIELD_CHARS

CSV_DEFAULT_LIMIT = 131_072  # the csv module's own limit, which used to stop the reader
assert CSV_FIELD_LIMIT > 10 * CSV_DEFAULT_LIMIT

# any text but lone surrogates and U+FFFD (which mean "not UTF-8"); includes quotes, commas, tabs, line breaks
# (also U+2028 and U+0085), NUL, non-Latin scripts and emoji
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\ufffd@"), min_size=1, max_size=25) \
    .filter(lambda t: bool(t.strip()))
NAME = st.text(st.sampled_from("abcXYZ éß漢-' 0"), min_size=1, max_size=10).filter(lambda t: bool(t.strip()))
EXPLANATION = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\ufffd@\n\r\x0b\x0c\x1c\x1d\x1e\x85"
                                                                                   "\u2028\u2029"),
                      min_size=1, max_size=25).filter(lambda t: bool(t.strip()))
PERSPECTIVES = st.lists(st.tuples(NAME, EXPLANATION), min_size=1, max_size=3)
HUGE = st.sampled_from([MAX_FIELD_CHARS + 1, CSV_DEFAULT_LIMIT + 1, 300_000])
BAD_BYTES = st.sampled_from([b"\xff", b"caf\xe9", b"\xc3\x28", b"\x80\x80"])

# kind of row -> the field a loader must name (None: valid)
CSV_KINDS = {"valid": None, "valid_huge_unused": None, "huge": "prompt", "bad_bytes": "prompt",
             "missing_answer": "answer", "empty_prompt": "prompt", "no_phrase": "answer", "extra_field": "row"}
JSONL_KINDS = {"valid": None, "valid_huge_unused": None, "valid_bom_line": None, "huge": "prompt",
               "bad_bytes": "prompt", "missing_answer": "answer", "empty_prompt": "prompt", "no_phrase": "answer",
               "bad_json": "json", "not_object": "json", "bad_name": "perspectives[1].name"}


def answer_of(perspectives):
    return "\n".join(f"In the perspective of {name}, {text}" for name, text in perspectives)


@st.composite
def rows(draw, kinds):
    n = draw(st.integers(1, 8))
    return [{"kind": draw(st.sampled_from(sorted(kinds))), "situation": draw(TEXT), "perspectives": draw(PERSPECTIVES),
             "huge": draw(HUGE), "bad": draw(BAD_BYTES), "listed": draw(st.booleans())} for _ in range(n)]


def expected(spec, kinds):
    good = [(f"r{i}", r["situation"].strip(), [(nm.strip(), tx.strip()) for nm, tx in r["perspectives"]])
            for i, r in enumerate(spec, 1) if kinds[r["kind"]] is None]
    bad = [(i, kinds[r["kind"]]) for i, r in enumerate(spec, 1) if kinds[r["kind"]] is not None]
    return good, bad


def check(path, spec, kinds):
    items, errors = load_items(path)
    good, bad = expected(spec, kinds)
    assert [(i.id, i.situation, [(p.name, p.text) for p in i.perspectives]) for i in items] == good
    assert [(e.row, e.field) for e in errors] == bad
    assert all(e.source == str(path) and not e.kept for e in errors)
    if bad:
        with pytest.raises(DataFormatError) as info:
            load_items(path, on_error="fail")
        assert (info.value.error.source, info.value.error.row, info.value.error.field) == (str(path), *bad[0])


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                           HealthCheck.too_slow])


@SETTINGS
@given(spec=rows(CSV_KINDS), bom=st.booleans(), tabs=st.booleans(), style=st.sampled_from(["minimal", "all"]))
def test_csv_and_tsv_load_every_valid_row_and_name_every_bad_one(tmp_path_factory, spec, bom, tabs, style):
    out = io.StringIO()
    # a lone \r is only safe quoted; the csv writer quotes it for the "\r\n" terminator (or with QUOTE_ALL)
    writer = csv.writer(out, delimiter="\t" if tabs else ",", lineterminator="\r\n" if style == "minimal" else "\n",
                        quoting=csv.QUOTE_MINIMAL if style == "minimal" else csv.QUOTE_ALL)
    writer.writerow(["id", "prompt", "answer", "notes"])
    for i, r in enumerate(spec, 1):
        kind, row = r["kind"], [f"r{i}", r["situation"], answer_of(r["perspectives"]), ""]
        if kind == "valid_huge_unused":
            row[3] = "n" * r["huge"]
        elif kind == "huge":
            row[1] = "h" * r["huge"]
        elif kind == "bad_bytes":
            row[1] = f"@@BAD{i}@@ {r['situation']}"
        elif kind == "missing_answer":
            row = row[:2]
        elif kind == "empty_prompt":
            row[1] = " "
        elif kind == "no_phrase":
            row[2] = "no phrase " + row[2]
        elif kind == "extra_field":
            row.append("surplus")
        writer.writerow(row)
    data = out.getvalue().encode("utf-8")
    for i, r in enumerate(spec, 1):
        data = data.replace(f"@@BAD{i}@@".encode(), r["bad"])
    path = tmp_path_factory.mktemp("csv") / ("bench.tsv" if tabs else "bench.csv")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    check(path, spec, CSV_KINDS)


@SETTINGS
@given(spec=rows(JSONL_KINDS), bom=st.booleans(), ascii_only=st.booleans(), crlf=st.booleans())
def test_jsonl_loads_every_valid_row_and_names_every_bad_one(tmp_path_factory, spec, bom, ascii_only, crlf):
    lines = []
    for i, r in enumerate(spec, 1):
        kind = r["kind"]
        record = {"id": f"r{i}", "prompt": r["situation"]}
        if r["listed"]:
            record["perspectives"] = [{"name": nm, "text": tx} for nm, tx in r["perspectives"]]
        else:
            record["answer"] = answer_of(r["perspectives"])
        if kind == "valid_huge_unused":
            record["notes"] = "n" * r["huge"]
        elif kind == "huge":
            record["prompt"] = "h" * r["huge"]
        elif kind == "bad_bytes":
            record["prompt"] = f"@@BAD{i}@@ {r['situation']}"
        elif kind == "missing_answer":
            record.pop("perspectives", None)
            record.pop("answer", None)
        elif kind == "empty_prompt":
            record["prompt"] = ""
        elif kind == "no_phrase":
            record.pop("perspectives", None)
            record["answer"] = "no phrase " + answer_of(r["perspectives"])
        elif kind == "bad_name":
            record.pop("answer", None)
            record["perspectives"] = [{"name": "A, B", "text": "t"}]
        line = json.dumps(record, ensure_ascii=ascii_only)
        if kind == "bad_json":
            line = line[:-1]
        elif kind == "not_object":
            line = json.dumps([record])
        elif kind == "valid_bom_line":
            line = "\ufeff" + line
        lines.append(line)
    data = ("\r\n" if crlf else "\n").join(lines).encode("utf-8")
    for i, r in enumerate(spec, 1):
        data = data.replace(f"@@BAD{i}@@".encode(), r["bad"])
    path = tmp_path_factory.mktemp("jsonl") / "bench.jsonl"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    check(path, spec, JSONL_KINDS)
