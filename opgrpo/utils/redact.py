"""Secrets kept out of everything the project writes: ``redact(text)`` and ``redact_obj(value)``.

Two kinds of secret reach a config by mistake: credentials inside a URL (``http://user:password@host/v1`` as a judge's
``base_url``) and an API key typed where the *name* of its environment variable belongs
(``estimator.judge.api_key_env=sk-...``). The config checks refuse the second at start-up (``env_name_problem``,
used by every ``*_api_key_env`` / ``token_env`` setting's ``problems()``); ``redact`` hides both in any text before it
is written: config files (``config.yaml``, Hydra's ``.hydra/`` copy), ``status.json``, metrics, errors, log lines
(``RedactingFilter``), the W&B config and model cards. Only stdlib here.
"""
from __future__ import annotations

import logging
import re
from typing import Any

__all__ = ["ENV_NAME", "MASK", "RedactingFilter", "env_name_problem", "redact", "redact_obj"]

MASK = "***"
"""What a hidden secret is replaced by."""

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
"""The form of an environment variable's name (what every ``*_env`` setting holds)."""

_URL_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s\"'<>@]+(?:@[^/?#\s\"'<>@]+)*@")
"""``scheme://`` followed by a URL's user info (``user:password@``, a token, a password with a raw ``@`` in it)."""

_ENV_SETTING = re.compile(r"\b([A-Za-z0-9_.\[\]]*_env)(\s*[:=]\s*)(['\"]?)([^\s'\",}\]]+)\3")
"""A ``*_env`` setting and its value, as YAML (``api_key_env: VALUE``) or an override (``api_key_env=VALUE``)."""


def env_name_problem(value: str) -> str:
    """Why ``value`` is not the name of an environment variable ("" when it is one, or empty). The value itself is
    never part of the message: a key typed here by mistake must not reach the logs."""
    if not value or ENV_NAME.fullmatch(value):
        return ""
    return (f"must be the NAME of an environment variable (letters, digits and _, e.g. OPENAI_API_KEY), not its "
            f"value; the {len(value)} characters given are not shown. Put the key in a variable "
            "(export OPENAI_API_KEY=...) and give its name here")


def _mask_env_value(match: re.Match) -> str:
    key, sep, quote, value = match.groups()
    if ENV_NAME.fullmatch(value) or value.startswith("$"):  # a name, or an interpolation (${oc.env:...})
        return match.group(0)
    return f"{key}{sep}{quote}{MASK}{quote}"


def redact(text: str) -> str:
    """``text`` with the user info of every URL replaced (``scheme://user:pass@host`` -> ``scheme://***@host``) and the
    value of every ``*_env`` setting that is not a variable name (a key typed in its place) masked."""
    if not isinstance(text, str) or ("://" not in text and "_env" not in text):
        return text
    text = _URL_USERINFO.sub(lambda m: f"{m.group(1)}{MASK}@", text)
    return _ENV_SETTING.sub(_mask_env_value, text)


def redact_obj(value: Any) -> Any:
    """``value`` with ``redact`` applied to every string inside it (dicts, lists, tuples; a ``*_env`` key whose value
    is not a variable name gets ``MASK``); other values unchanged."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: MASK if isinstance(k, str) and k.endswith("_env") and isinstance(v, str) and env_name_problem(v)
                else redact_obj(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_obj(v) for v in value)
    return value


class RedactingFilter(logging.Filter):
    """A handler filter that passes every record through ``redact`` (message and formatted traceback), so no log file
    or console line shows a URL's credentials; install it on the handlers of the root logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
