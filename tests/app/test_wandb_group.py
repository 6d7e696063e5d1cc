"""The W&B group of a multirun (opgrpo.app.tracking.sweep_group, issue 30.5): one per sweep, readable, and two sweeps
outside the working directory that share their folder's name (``.../exp_a/w6`` and ``.../exp_b/w6``) no longer
share a group."""
from __future__ import annotations

import re

from opgrpo.app.tracking import sweep_group


def test_sweeps_outside_the_working_directory_with_one_name_get_two_groups(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    elsewhere = tmp_path.parent / f"{tmp_path.name}_elsewhere"  # not under the working directory
    a, b = elsewhere / "exp_a" / "w6", elsewhere / "exp_b" / "w6"
    ga, gb = sweep_group(a), sweep_group(b)
    assert ga != gb  # was "w6" for both
    assert re.fullmatch(r"w6-[0-9a-f]{8}", ga) and re.fullmatch(r"w6-[0-9a-f]{8}", gb)  # still readable
    # every job of one sweep derives the same group, however the path is spelt
    assert sweep_group(elsewhere / "exp_a" / ".." / "exp_a" / "w6") == ga == sweep_group(str(a))


def test_a_sweep_inside_the_working_directory_keeps_its_relative_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert sweep_group(tmp_path / "multirun" / "2026-05-01" / "12-00-00") == "multirun/2026-05-01/12-00-00"
    assert sweep_group("multirun/2026-05-01/12-00-00") == "multirun/2026-05-01/12-00-00"
    assert len(sweep_group(tmp_path.parent / ("x" * 300))) <= 128
