"""Which environment variable put the Hugging Face Hub offline, so a message can name the one the user set.

huggingface_hub (and through it transformers, datasets and sentence-transformers, which ask
``huggingface_hub.constants.is_offline_mode``) is offline when ``HF_HUB_OFFLINE`` is true, or, when
``HF_HUB_OFFLINE`` is unset or empty, when ``TRANSFORMERS_OFFLINE`` is: ``_is_true(HF_HUB_OFFLINE or
TRANSFORMERS_OFFLINE)``, true meaning 1/ON/YES/TRUE in any case. ``offline_switch`` applies the same rule to the
environment as it is now (huggingface_hub reads it once, when it is imported).
"""
from __future__ import annotations

import os

__all__ = ["offline_setting", "offline_switch"]

_TRUE = {"1", "ON", "YES", "TRUE"}  # huggingface_hub.constants.ENV_VARS_TRUE_VALUES


def offline_switch() -> str:
    """``"HF_HUB_OFFLINE"`` or ``"TRANSFORMERS_OFFLINE"``: the variable that makes the Hub offline ("" = online).

    A non-empty ``HF_HUB_OFFLINE`` decides alone (``HF_HUB_OFFLINE=0 TRANSFORMERS_OFFLINE=1`` is online), as in
    huggingface_hub."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        value = os.environ.get(name)
        if value:
            return name if value.upper() in _TRUE else ""
    return ""


def offline_setting() -> str:
    """The offline switch as the user wrote it (``"TRANSFORMERS_OFFLINE=1"``), "" when online: for messages."""
    name = offline_switch()
    return f"{name}={os.environ[name]}" if name else ""
