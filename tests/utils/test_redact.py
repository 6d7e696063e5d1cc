"""Issue 27.2: credentials in a URL and a key typed where a ``*_env`` setting wants a variable's name never reach
what the project writes (opgrpo.utils.redact), and every ``*_api_key_env`` setting refuses a value that is not a
variable name without repeating it."""
from __future__ import annotations

import logging

import pytest

from opgrpo.utils.redact import RedactingFilter, redact, redact_obj

KEY = "sk-proj-AbCdEf0123456789"


@pytest.mark.parametrize("text, expected", [
    ("http://user:s3cr3tpw@127.0.0.1:9/v1", "http://***@127.0.0.1:9/v1"),
    ("base_url: https://u:p@ss@host/v1 (x)", "base_url: https://***@host/v1 (x)"),  # a raw @ in the password
    ("git+https://ghp_token@github.com/o/r", "git+https://***@github.com/o/r"),
    ("http://host:8000/v1/a@b and mail a@b.c", "http://host:8000/v1/a@b and mail a@b.c"),  # no user info
    (f"api_key_env: {KEY}", "api_key_env: ***"),
    (f"- estimator.judge.api_key_env={KEY}", "- estimator.judge.api_key_env=***"),
    (f"override_dirname: eval.judge.api_key_env={KEY},stage=eval",
     "override_dirname: eval.judge.api_key_env=***,stage=eval"),
    ("api_key_env: OPENAI_API_KEY", "api_key_env: OPENAI_API_KEY"),  # a name stays
    ("token_env: ${oc.env:TOKEN_NAME}", "token_env: ${oc.env:TOKEN_NAME}"),  # an interpolation stays
    ("estimator.judge.api_key_env: must be the NAME of ...", "estimator.judge.api_key_env: must be the NAME of ..."),
])
def test_redact_hides_url_credentials_and_keys_in_env_settings(text, expected):
    assert redact(text) == expected


def test_redact_obj_walks_containers_and_masks_env_keys():
    obj = {"judge": {"api_key_env": KEY, "base_url": "http://a:b@h/v1", "token_env": "HF_TOKEN"},
           "overrides": ["x=http://a:b@h", 3], "n": 1.5}
    assert redact_obj(obj) == {"judge": {"api_key_env": "***", "base_url": "http://***@h/v1", "token_env": "HF_TOKEN"},
                               "overrides": ["x=http://***@h", 3], "n": 1.5}


def test_redacting_filter_cleans_message_and_traceback():
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "judge %s failed", ("http://u:pw@h/v1",), None)
    try:
        raise ValueError("unreachable http://u:pw@h/v1")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    assert RedactingFilter().filter(record)
    assert record.getMessage() == "judge http://***@h/v1 failed"
    assert "pw@" not in record.exc_text and "http://***@h/v1" in record.exc_text


@pytest.mark.parametrize("make, key", [
    ("opgrpo.estimator.config:JudgeConfig", "api_key_env"),
    ("opgrpo.evaluation.judge_eval:JudgeEvalConfig", "api_key_env"),
    ("opgrpo.evaluation.modular:CommunityModel", "api_key_env"),
    ("opgrpo.models.hub:HubSettings", "token_env"),
])
def test_env_settings_refuse_a_key_without_echoing_it(make, key):
    from opgrpo.utils.imports import import_object

    cls = import_object(make)
    problems = cls(**{key: KEY}).problems()
    assert any(p.startswith(f"{key}: must be the NAME of an environment variable") for p in problems), problems
    assert not any(KEY in p or "AbCdEf" in p for p in problems)
    assert not any(p.startswith(f"{key}:") for p in cls(**{key: "MY_KEY_1"}).problems())
