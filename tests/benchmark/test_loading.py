"""Tests of opgrpo.benchmark.items and .loading: the item model, the loaders (CSV, JSONL, HF datasets) and row errors."""
from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest

from opgrpo.benchmark import (
    DataError,
    DataFormatError,
    Item,
    Perspective,
    load_items,
    sample_data_path,
)

HEADER = ["id", "prompt", "answer", "num_perspectives"]


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return path


def errs(errors: list[DataError]) -> list[tuple]:
    return [(e.row, e.field, e.kept) for e in errors]


# ------------------------------------------------------------------------------------------- model

def test_perspective_line_and_item_properties():
    item = Item("a", "sit", [Perspective("Honesty", "do not lie."), Perspective("Duty to self", "rest.")], "f:1")
    assert item.references == ["In the perspective of Honesty, do not lie.", "In the perspective of Duty to self, rest."]
    assert item.num_perspectives == 2


# --------------------------------------------------------------------------------------------- CSV

def test_csv_multiline_explanations_and_ids(tmp_path):
    answer = ("In the perspective of Honesty, lying is wrong.\nIt erodes trust over time.\n"
              "from the perspective of Compassion, spare their feelings.\n\n")
    p = write_csv(tmp_path / "bench.csv", [["q1", " Lying to a friend ", answer, "2"]])
    items, errors = load_items(p)
    assert errors == []
    (item,) = items
    assert item.id == "q1" and item.situation == "Lying to a friend" and item.source == f"{p}:1"
    assert item.perspectives == [Perspective("Honesty", "lying is wrong.\nIt erodes trust over time."),
                                 Perspective("Compassion", "spare their feelings.")]


def test_csv_crlf_line_endings(tmp_path):
    p = tmp_path / "win.csv"
    p.write_bytes(b'prompt,answer\r\nS,"In the perspective of A, a.\r\nstill A.\r\nIn the perspective of B, b."\r\n')
    items, errors = load_items(p)
    assert errors == [] and items[0].perspectives == [Perspective("A", "a.\nstill A."), Perspective("B", "b.")]


def test_csv_without_id_uses_stem_and_row(tmp_path):
    p = write_csv(tmp_path / "vp.csv", [["S1", "In the perspective of A, x."], ["S2", "In the perspective of B, y."]],
                  header=["Prompt", "Answer"])
    items, errors = load_items(p)
    assert errors == [] and [i.id for i in items] == ["vp:1", "vp:2"]


def test_csv_bad_rows_are_skipped_counted_and_logged(tmp_path, caplog):
    ok = "In the perspective of A, a.\nIn the perspective of B, b."
    rows = [
        ["r1", "", ok, "2"],                                        # 1 empty prompt
        ["r2", "S", "", "2"],                                       # 2 empty answer
        ["r3", "S", "Some preamble with no phrase", ""],            # 3 no perspective
        ["r4", "S", "Intro.\nIn the perspective of A, a.", ""],     # 4 stray first line
        ["r5", "S", "In the perspective of A,", ""],                # 5 empty explanation
        ["r6", "S", ok, "3"],                                       # 6 count disagrees: kept
        ["r7", "S", ok, "two"],                                     # 7 count not an int: kept
        ["r8", "S", ok + "\nIn the perspective of A, again.", "3.0"],  # 8 good, repeated name kept
        ["r6", "S", ok, "2"],                                       # 9 duplicate id
        ["r10", "S", ok, "2", "surplus"],                           # 10 extra field
    ]
    p = write_csv(tmp_path / "bad.csv", rows)
    with caplog.at_level(logging.WARNING, logger="opgrpo.benchmark.loading"):
        items, errors = load_items(p)
    assert [i.id for i in items] == ["r6", "r7", "r8"]
    assert errs(errors) == [(1, "prompt", False), (2, "answer", False), (3, "answer", False), (4, "answer", False),
                            (5, "answer", False), (6, "num_perspectives", True), (7, "num_perspectives", True),
                            (9, "id", False), (10, "row", False)]
    assert all(e.source == str(p) for e in errors)
    assert [i.num_perspectives for i in items] == [2, 2, 3]
    assert [x.name for x in items[2].perspectives] == ["A", "B", "A"]
    assert "line 1 of 2 does not start with" in errors[3].message
    assert "says 3 but the answer has 2" in errors[5].message
    assert "duplicate id 'r6' (first at row 6)" in errors[7].message
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 9
    assert warned[0] == f"{p}: row 1: field 'prompt': missing or empty situation"


@pytest.mark.parametrize(("row", "expected"), [
    (["a", "", "In the perspective of A, a.", ""], "row 1: field 'prompt'"),
    (["a", "S", "In the perspective of A, a.", "2"], "row 1: field 'num_perspectives': says 2 but the answer has 1"),
    (["a", "S", "In the perspective of A, a.", "x"], "row 1: field 'num_perspectives': not an integer"),
])
def test_csv_fail_mode_raises_naming_file_row_field(tmp_path, row, expected):
    p = write_csv(tmp_path / "f.csv", [row])
    with pytest.raises(DataFormatError, match=expected) as info:
        load_items(p, on_error="fail")
    assert str(info.value).startswith(str(p))
    assert info.value.error.row == 1


def test_csv_non_utf8_bytes_are_reported_not_fatal(tmp_path):
    p = write_csv(tmp_path / "enc.csv", [["a", "PLACEHOLDER", "In the perspective of A, a.", "1"],
                                         ["b", "Fine", "In the perspective of B, b.", "1"]])
    p.write_bytes(p.read_bytes().replace(b"PLACEHOLDER", b"caf\xe9 au lait"))
    items, errors = load_items(p)
    assert [i.id for i in items] == ["b"]
    assert errs(errors) == [(1, "prompt", False)]
    assert "0xe9" in errors[0].message
    with pytest.raises(DataFormatError, match=r"row 1: field 'prompt': text is not valid UTF-8"):
        load_items(p, on_error="fail")


def test_csv_missing_column_and_missing_file(tmp_path):
    p = write_csv(tmp_path / "nocol.csv", [["S", "x"]], header=["prompt", "reply"])
    with pytest.raises(DataFormatError, match="field 'answer': no column 'answer'"):
        load_items(p)
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        load_items(tmp_path / "nowhere.csv")


def test_limit_counts_good_items(tmp_path):
    ok = "In the perspective of A, a."
    p = write_csv(tmp_path / "lim.csv", [["a", "", ok, ""], ["b", "S", ok, ""], ["c", "S", ok, ""], ["d", "S", ok, ""]])
    items, errors = load_items(p, limit=2)
    assert [i.id for i in items] == ["b", "c"] and errs(errors) == [(1, "prompt", False)]


def test_csv_huge_field_is_reported_and_later_rows_load(tmp_path):
    # issue 16 item 2: one prompt of 10 million characters used to stop the reader (9 of 36 items loaded)
    with open(sample_data_path("train"), encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    rows[10][1] = "x" * 10_000_000  # data row 10
    p = write_csv(tmp_path / "copy.csv", rows[1:], header=rows[0])
    items, errors = load_items(p)
    assert len(items) == 35 and [i.id for i in items][8:10] == ["sample-train-09", "sample-train-11"]
    assert errs(errors) == [(10, "prompt", False)]
    assert errors[0].message == "10,000,000 characters, over the limit of 100,000 for a text field"
    with pytest.raises(DataFormatError, match=r"copy\.csv: row 10: field 'prompt': 10,000,000 characters"):
        load_items(p, on_error="fail")


def test_csv_huge_unused_field_is_read_and_the_row_kept(tmp_path):
    ok = "In the perspective of A, a."
    p = write_csv(tmp_path / "notes.csv", [["a", "S", ok, "y" * 200_000], ["b", "T", ok, ""]],
                  header=["id", "prompt", "answer", "notes"])
    items, errors = load_items(p)
    assert [i.id for i in items] == ["a", "b"] and errors == []


def test_csv_unclosed_quote_is_reported_not_swallowed(tmp_path):
    # tab-separated, so that no later quote closes it: b's answer would swallow row c
    p = tmp_path / "quote.tsv"
    p.write_text('id\tprompt\tanswer\na\tS\tIn the perspective of A, a.\nb\tS\t"In the perspective of B, b.\n'
                 'c\tS\tIn the perspective of C, c.\n')
    items, errors = load_items(p)
    assert [i.id for i in items] == ["a"]
    assert errs(errors) == [(2, "row", False)]
    assert "never closed, so lines 3-4 (the rest of the file)" in errors[0].message


def test_csv_bom_header_and_utf16_file(tmp_path):
    p = tmp_path / "bom.csv"
    p.write_bytes('\ufeffid,prompt,answer\nq1,S,"In the perspective of A, a."\n'.encode())
    items, errors = load_items(p)
    assert [i.id for i in items] == ["q1"] and errors == []
    wide = tmp_path / "wide.csv"
    wide.write_bytes('id,prompt,answer\nq1,S,"In the perspective of A, a."\n'.encode("utf-16"))
    with pytest.raises(DataFormatError, match=r"wide\.csv: field 'encoding': the file is UTF-16"):
        load_items(wide)


def test_tsv_file_and_unknown_suffix(tmp_path):
    # issue 16 item 11: a .tsv file used to give a misleading "not found" error
    p = tmp_path / "bench.tsv"
    p.write_text('id\tprompt\tanswer\na\tS, with a comma\t"In the perspective of A, a.\nIn the perspective of B, b."\n'
                 "b\tT\tIn the perspective of C, c.\textra\n")
    items, errors = load_items(p)
    assert [(i.id, i.situation, i.num_perspectives) for i in items] == [("a", "S, with a comma", 2)]
    assert errs(errors) == [(2, "row", False)] and "(unquoted tab?)" in errors[0].message
    with pytest.raises(DataFormatError, match=r"no column 'prompt' in the header \['id\\tprompt\\tanswer'\]; "
                                              r"tab-separated\? read it with format='tsv'"):
        load_items(p, format="csv")
    txt = tmp_path / "bench.txt"
    txt.write_text(p.read_text())
    with pytest.raises(DataFormatError, match=r"bench\.txt: field 'format': unknown data file type '\.txt': "
                                              r"expected \.csv, \.tsv, .*format="):
        load_items(txt)
    assert [i.id for i in load_items(txt, format="tsv")[0]] == ["a"]


# ------------------------------------------------------------------------------------------- JSONL

def test_jsonl_both_shapes_and_bad_lines(tmp_path):
    records = [
        {"id": "a", "prompt": "S1", "answer": "In the perspective of A, a.\nmore.\nIn the perspective of B, b.",
         "num_perspectives": 2},
        "",                                                                              # blank line 2
        {"situation": "S2", "perspectives": [{"name": "Loyalty", "text": "stay."}, {"name": "Fairness", "text": "go."}]},
        "{not json",                                                                     # line 4
        {"situation": "S3", "perspectives": [{"name": "A", "text": " "}]},               # line 5
        {"situation": "S4", "perspectives": "In the perspective of C, c."},              # line 6: string form
        ["a", "list"],                                                                   # line 7
        {"prompt": "S5"},                                                                # line 8
        {"prompt": [{"role": "user", "content": "S6"}], "answer": "In the perspective of A, a."},  # line 9
        {"situation": "S7", "perspectives": [{"name": "St. Paul, apostle", "text": "t."}]},  # 10: bare ',
        {"situation": "S8", "perspectives": [{"name": "A", "text": "a.\nIn the perspective of B, b."}]},  # 11
    ]
    p = write_jsonl(tmp_path / "bench.jsonl", records)
    items, errors = load_items(p)
    assert [(i.id, i.situation, i.references) for i in items] == [
        ("a", "S1", ["In the perspective of A, a.\nmore.", "In the perspective of B, b."]),
        ("bench:3", "S2", ["In the perspective of Loyalty, stay.", "In the perspective of Fairness, go."]),
        ("bench:6", "S4", ["In the perspective of C, c."]),
    ]
    assert errs(errors) == [(4, "json", False), (5, "perspectives[1].text", False), (7, "json", False),
                            (8, "answer", False), (9, "prompt", False), (10, "perspectives[1].name", False),
                            (11, "perspectives[1].text", False)]
    assert errors[4].message == "expected text, got list"
    with pytest.raises(DataFormatError, match=r"bench.jsonl: row 4: field 'json': invalid JSON"):
        load_items(p, on_error="fail")


def test_json_array_file(tmp_path):
    p = tmp_path / "arr.json"
    p.write_text(json.dumps([{"prompt": "S", "answer": "In the perspective of A, a."}, {"prompt": "", "answer": "x"}]))
    items, errors = load_items(p)
    assert [i.id for i in items] == ["arr:1"] and errs(errors) == [(2, "prompt", False)]


def test_jsonl_unicode_line_breaks_inside_strings_and_bom_lines(tmp_path):
    # U+2028 / U+0085 are legal inside a JSON string (json.dumps(ensure_ascii=False) writes them raw); a line
    # may start with a BOM where files were concatenated
    first = {"id": "a", "prompt": "S\u2028more\x85end", "answer": "In the perspective of A, a."}
    second = {"id": "b", "prompt": "T", "answer": "In the perspective of B, b."}
    p = tmp_path / "u.jsonl"
    p.write_bytes(("\ufeff" + json.dumps(first, ensure_ascii=False) + "\r\n\ufeff" + json.dumps(second) + "\n").encode())
    items, errors = load_items(p)
    assert errors == [] and [(i.id, i.situation) for i in items] == [("a", "S\u2028more\x85end"), ("b", "T")]


def test_jsonl_first_line_an_array_is_one_bad_line(tmp_path):
    p = write_jsonl(tmp_path / "arr.jsonl", [["not", "an", "object"], {"prompt": "S", "answer": "In the perspective of A, a."}])
    items, errors = load_items(p)
    assert [i.id for i in items] == ["arr:2"] and errs(errors) == [(1, "json", False)]


# ---------------------------------------------------------------------------------------- datasets

def test_hf_save_to_disk_dataset_and_dict(tmp_path):
    from datasets import Dataset, DatasetDict

    ds = Dataset.from_dict({
        "prompt": ["S1", "S2", None],
        "answer": ["In the perspective of A, a.\nIn the perspective of B, b.", "no phrase here", "In the perspective of C, c."],
        "num_perspectives": [2, 1, 1],
    })
    ds.save_to_disk(str(tmp_path / "one"))
    items, errors = load_items(tmp_path / "one")
    assert [(i.id, i.num_perspectives, i.source) for i in items] == [("one:1", 2, f"{tmp_path / 'one'}:1")]
    assert errs(errors) == [(2, "answer", False), (3, "prompt", False)]
    with pytest.raises(DataFormatError, match=r"one: row 2: field 'answer'"):
        load_items(tmp_path / "one", on_error="fail")

    assert [i.id for i in load_items(tmp_path / "one", format="hf")[0]] == ["one:1"]

    DatasetDict({"train": ds, "test": ds.select([0])}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DataFormatError, match="several splits"):
        load_items(tmp_path / "dd")
    items, errors = load_items(tmp_path / "dd", split="test")
    assert [i.situation for i in items] == ["S1"] and errors == []


def items_to_records(items: list[Item]) -> list[dict]:
    """Plain dicts for ``datasets.Dataset.from_list``; ``load_items`` reads them back (as JSONL or saved to disk).

    There is no ``prompt`` column on purpose: the trainer builds the chat prompt from ``situation``.
    """
    return [
        {
            "id": item.id,
            "situation": item.situation,
            "perspectives": [{"name": p.name, "text": p.text} for p in item.perspectives],
            "references": item.references,
            "num_perspectives": item.num_perspectives,
            "source": item.source,
        }
        for item in items
    ]


def test_records_round_trip_through_datasets(tmp_path):
    from datasets import Dataset

    original, _ = load_items(sample_data_path("test"), limit=3)
    records = items_to_records(original)
    assert records[0]["references"] == original[0].references
    assert "prompt" not in records[0]
    Dataset.from_list(records).save_to_disk(str(tmp_path / "rt"))
    back, errors = load_items(tmp_path / "rt")
    assert errors == []
    assert [(i.id, i.situation, i.perspectives) for i in back] == [(i.id, i.situation, i.perspectives) for i in original]


def test_unknown_hub_id_offline_is_file_not_found(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="no-such-owner/no-such-data"):
        load_items("no-such-owner/no-such-data")


def test_jsonl_reference_line_lists_are_checked_like_answers(tmp_path):
    line = "In the perspective of A, a."
    huge = "In the perspective of B, " + "b" * 100_000
    p = write_jsonl(tmp_path / "lines.jsonl", [{"situation": "S", "perspectives": [line, huge]},
                                               {"situation": "T", "perspectives": [line]}])
    p.write_bytes(p.read_bytes() + b'{"situation": "U", "perspectives": ["In the perspective of C, caf\xe9"]}\n')
    items, errors = load_items(p)
    assert [i.situation for i in items] == ["T"]
    assert errs(errors) == [(1, "perspectives[2]", False), (3, "perspectives[1]", False)]
    assert "over the limit of 100,000" in errors[0].message and "0xe9" in errors[1].message


def test_a_jsonl_line_holding_an_array_is_a_bad_row_even_alone(tmp_path):
    """Found by the property test: a one-line .jsonl file `[{...}]` was read as a JSON array file and loaded."""
    p = tmp_path / "one.jsonl"
    p.write_text(json.dumps([{"prompt": "S", "answer": "In the perspective of A, a."}]) + "\n")
    items, errors = load_items(p)
    assert items == [] and errs(errors) == [(1, "json", False)]
    p = tmp_path / "one.json"  # the same text as a .json file is an array of records
    p.write_text(json.dumps([{"prompt": "S", "answer": "In the perspective of A, a."}]))
    items, errors = load_items(p)
    assert [i.id for i in items] == ["one:1"] and errors == []
