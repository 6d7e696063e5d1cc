"""Run-directory files and status strings (opgrpo/utils/runfiles.py): read_status, read_summary, write_status."""
from __future__ import annotations

import json
import re

import pytest

from opgrpo.utils.runfiles import (
    COMPLETED,
    FAILED,
    RUNNING,
    STATUS_JSON,
    SUMMARY_JSON,
    RunFileError,
    read_status,
    read_summary,
    write_status,
)


def test_status_strings_and_file_names():
    assert (RUNNING, COMPLETED, FAILED) == ("running", "completed", "failed")
    assert (STATUS_JSON, SUMMARY_JSON) == ("status.json", "summary.json")


def test_read_status_and_summary(tmp_path):
    assert read_status(tmp_path) is None and read_summary(tmp_path) is None  # nothing there yet
    (tmp_path / STATUS_JSON).write_text(json.dumps({"status": COMPLETED, "overrides": ["a=1"]}))
    (tmp_path / SUMMARY_JSON).write_text(json.dumps({"eval/overall/accuracy": 0.25, "grpo/global_step": 3}))
    assert read_status(tmp_path) == {"status": "completed", "overrides": ["a=1"]}
    assert read_summary(str(tmp_path)) == {"eval/overall/accuracy": 0.25, "grpo/global_step": 3}


def test_unusable_files_raise_naming_the_file(tmp_path):
    (tmp_path / STATUS_JSON).write_text("{not json")
    (tmp_path / SUMMARY_JSON).write_text("[0.25]")
    with pytest.raises(RunFileError, match=r"^corrupt status\.json: "):
        read_status(tmp_path)
    with pytest.raises(RunFileError, match=r"^summary\.json is not an object$"):
        read_summary(tmp_path)
    assert issubclass(RunFileError, ValueError)
    (tmp_path / SUMMARY_JSON).write_bytes(b'{"note": "caf\xff"}')  # not UTF-8: replaced, still read
    assert read_summary(tmp_path) == {"note": "caf\ufffd"}


def test_write_status(tmp_path):
    write_status(tmp_path, FAILED, error="ValueError: boom", overrides=["x=1"])
    text = (tmp_path / STATUS_JSON).read_text()
    data = json.loads(text)
    assert list(data) == ["status", "time", "error", "overrides"]
    assert (data["status"], data["error"], data["overrides"]) == ("failed", "ValueError: boom", ["x=1"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", data["time"])
    assert text.startswith('{\n  "status": "failed",')  # indented as RunDir always wrote it
    assert read_status(tmp_path) == data
