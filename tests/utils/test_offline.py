"""Messages about offline mode name the variable the user set: huggingface_hub is offline with HF_HUB_OFFLINE or,
when that is unset, TRANSFORMERS_OFFLINE (#27.8: a run with only TRANSFORMERS_OFFLINE=1 was told HF_HUB_OFFLINE=1)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from opgrpo.utils.offline import offline_setting, offline_switch

CASES = [  # (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE) -> the switch in force
    ((None, None), ""),
    (("1", None), "HF_HUB_OFFLINE"),
    ((None, "1"), "TRANSFORMERS_OFFLINE"),
    (("", "true"), "TRANSFORMERS_OFFLINE"),  # empty counts as unset
    (("0", "1"), ""),  # a set HF_HUB_OFFLINE decides alone
    (("yes", "1"), "HF_HUB_OFFLINE"),
    (("ON", None), "HF_HUB_OFFLINE"),
    (("2", None), ""),
    ((None, "false"), ""),
]


def _set(monkeypatch, hub, transformers):
    for name, value in (("HF_HUB_OFFLINE", hub), ("TRANSFORMERS_OFFLINE", transformers)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


@pytest.mark.parametrize(("env", "expected"), CASES)
def test_offline_switch_names_the_variable_in_force(monkeypatch, env, expected):
    _set(monkeypatch, *env)
    assert offline_switch() == expected
    assert offline_setting() == (f"{expected}={os.environ[expected]}" if expected else "")


def test_offline_switch_agrees_with_huggingface_hub():
    """huggingface_hub reads the variables once, at import: ask a fresh interpreter for each case."""
    code = "from huggingface_hub import constants; print(constants.HF_HUB_OFFLINE)"
    for (hub, transformers), expected in CASES:
        env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
        env.update({k: v for k, v in (("HF_HUB_OFFLINE", hub), ("TRANSFORMERS_OFFLINE", transformers)) if v is not None})
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == str(bool(expected)), (hub, transformers)


def test_prefetch_failure_names_transformers_offline_when_that_is_the_switch(monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants

    from opgrpo.models.prefetch import ModelRef, prefetch

    def not_cached(repo_id, **kwargs):
        raise FileNotFoundError("not cached")

    _set(monkeypatch, None, "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", not_cached)
    [entry] = prefetch([ModelRef("model.name_or_path", "org/model")])
    assert entry.status == "failed"
    assert "TRANSFORMERS_OFFLINE=1 forbids downloading it" in entry.detail and "HF_HUB_OFFLINE" not in entry.detail
