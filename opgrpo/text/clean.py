"""Sanitising text before it reaches a model: lone surrogates and control characters.

A Python ``str`` may hold code points that no tokenizer accepts: a lone surrogate such as ``"\\ud800"``
(``json.loads`` returns one for the escape ``"\\ud800"``; ``surrogateescape`` decoding makes them from bad
bytes) fails in the Rust tokenizers with an opaque ``TypeError`` and cannot be written as UTF-8; control
characters (NUL, ESC, ...) are noise to every model. Every text that enters a model in this package goes
through :func:`clean_text`: the reward's completions and references (``opgrpo.reward``), the NLI pairs
(``opgrpo.evaluation.nli``), judge prompts (``opgrpo.judges``), chat prompts before generation
(``opgrpo.models.generation``) and sentences before the estimator encodes them (``opgrpo.estimator``).

The rules: a surrogate pair written as two code points is joined into the character it encodes; any other
surrogate becomes U+FFFD (the replacement character); C0/C1 control characters other than tab, newline
and carriage return become a space. Everything else (accents, emoji, bidi marks) is kept. Cleaning is
idempotent. Callers count what changed and log it once per call (:func:`clean_texts` does both).

Pure ``str``; no torch.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["clean_messages", "clean_text", "clean_texts"]

logger = logging.getLogger(__name__)

_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def clean_text(text: str) -> tuple[str, bool]:
    """``(cleaned text, whether anything changed)``: surrogates joined or replaced, control characters spaced."""
    if not isinstance(text, str):
        raise TypeError(f"clean_text needs a str, got {type(text).__name__}")
    out = text
    if _SURROGATE_RE.search(out):
        out = out.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if _CONTROL_RE.search(out):
        out = _CONTROL_RE.sub(" ", out)
    return out, out != text


def clean_texts(texts: Iterable[str], *, where: str = "", log: logging.Logger | None = None,
                what: str = "text") -> tuple[list[str], int]:
    """``(cleaned texts, how many changed)``; with ``where``, one WARNING with the count when any changed.

    ``what`` names the texts in that message (``"prompt"`` gives "3 prompt(s) ...").
    """
    out: list[str] = []
    changed = 0
    for t in texts:
        c, ch = clean_text(t)
        out.append(c)
        changed += ch
    if changed and where:
        (log or logger).warning("%s: %d %s(s) held lone surrogates or control characters; replaced before the "
                                "model (U+FFFD / space)", where, changed, what)
    return out, changed


def clean_messages(conversations: Sequence[Sequence[dict[str, Any]]]) -> tuple[list[list[dict[str, Any]]], int]:
    """Chat conversations (lists of ``{"role", "content"}``) with every text content cleaned; ``(copies, changed)``.

    ``changed`` counts the contents (strings or ``{"type": "text", "text"}`` parts) that changed; the input is
    not modified.
    """
    out: list[list[dict[str, Any]]] = []
    changed = 0
    for conv in conversations:
        msgs = []
        for msg in conv:
            msg = dict(msg)
            content = msg.get("content")
            if isinstance(content, str):
                msg["content"], ch = clean_text(content)
                changed += ch
            elif isinstance(content, list):
                parts = []
                for part in content:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        part = dict(part)
                        part["text"], ch = clean_text(part["text"])
                        changed += ch
                    parts.append(part)
                msg["content"] = parts
            msgs.append(msg)
        out.append(msgs)
    return out, changed
