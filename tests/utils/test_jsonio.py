"""JSON helpers of the run files (opgrpo/utils/jsonio.py): flatten, read_jsonl (tolerant), append_jsonl."""
from __future__ import annotations

import json

from opgrpo.utils.jsonio import append_jsonl, flatten, read_jsonl


def test_flatten_hand_computed():
    nested = {"a": {"b": 1, "c": {"d": "x"}, "e": [1, 2]}, "f": None, "g": {}}
    assert flatten(nested) == {"a/b": 1, "a/c/d": "x", "a/e": [1, 2], "f": None}  # leaves kept, empty dict gone
    assert list(flatten(nested)) == ["a/b", "a/c/d", "a/e", "f"]  # depth first, insertion order
    assert flatten({"reward": {"weights": {"coverage": 0.2}}, "lr": 1e-6}, sep=".") == {
        "reward.weights.coverage": 0.2, "lr": 1e-6}
    assert flatten({"a": {"b": 1}}, prefix="eval") == {"eval/a/b": 1}
    assert flatten({1: {2: 3}}) == {"1/2": 3}  # keys become strings
    assert flatten({}) == {}


def test_read_jsonl_skips_torn_and_non_object_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 1, "loss": 0.5}\n'
                     b"\n"                            # blank line
                     b"  3  \n"                       # a bare value, not an object
                     b'{"step": 2, "s": "caf\xff"}\n'  # not UTF-8: replaced, the row kept
                     b'[1, 2]\n'
                     b'{"step": 3, "loss": nul')      # torn last line of a killed run
    assert read_jsonl(path) == [{"step": 1, "loss": 0.5}, {"step": 2, "s": "caf\ufffd"}]
    assert read_jsonl(tmp_path / "missing.jsonl") == []
    assert read_jsonl(tmp_path) == []  # a folder is not a file


def test_append_jsonl_round_trip(tmp_path):
    path = tmp_path / "new" / "dir" / "rows.jsonl"  # folders are created
    append_jsonl(path, [{"a": 1}])
    append_jsonl(path, [{"b": "é"}, {"c": tmp_path}])  # a Path is not JSON: written as its str
    assert path.read_text(encoding="utf-8") == '{"a": 1}\n{"b": "\\u00e9"}\n' + json.dumps({"c": str(tmp_path)}) + "\n"
    assert read_jsonl(path) == [{"a": 1}, {"b": "é"}, {"c": str(tmp_path)}]
    append_jsonl(path, [])
    assert len(read_jsonl(path)) == 3
