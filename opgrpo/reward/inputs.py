"""Reading reward inputs: completion text from TRL's forms, prompt text, reference sentences, sanitising.

Everything that turns what a trainer or a data set hands over into clean ``str`` for the OP reward;
nothing here raises on malformed input.
"""
from __future__ import annotations

import re
from typing import Any

from opgrpo.text.perspectives import has_perspective_phrase, split_perspective_sentences

__all__ = ["completion_text", "prompt_text", "reference_sentences", "sanitize_text"]

_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def completion_text(completion: Any) -> str | None:
    """Text of a completion: a str, bytes (UTF-8), a message dict, or a conversation (last assistant turn).

    None when there is no text to read (None, an empty conversation, another type).
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, (bytes, bytearray)):
        return bytes(completion).decode("utf-8", errors="replace")
    if isinstance(completion, dict):
        content = completion.get("content")
        return _content_text(content)
    if isinstance(completion, (list, tuple)):
        msgs = [m for m in completion if isinstance(m, dict)]
        assistant = [m for m in msgs if m.get("role") == "assistant"]
        pick = assistant[-1] if assistant else (msgs[-1] if msgs else None)
        return _content_text(pick.get("content")) if pick is not None else None
    return None


def _content_text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal-style content parts
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return "\n".join(parts) if parts else None
    return None


def prompt_text(prompt: Any) -> str:
    """A prompt as text: the string itself, or the message contents joined by newlines."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, (list, tuple)):
        return "\n".join(t for t in (_content_text(m.get("content")) for m in prompt if isinstance(m, dict)) if t)
    return ""


def reference_sentences(references: Any) -> tuple[list[str], int]:
    """(reference perspective sentences, how many lack the perspective phrase).

    Accepts a list of lines, one raw answer string, or a list of ``{name, text}`` dicts. Every
    element is split like a response (a line holding two perspectives gives two references).
    """
    if references is None:
        return [], 0
    if isinstance(references, str):
        references = [references]
    out: list[str] = []
    for ref in references:
        if isinstance(ref, dict):
            name, text = ref.get("name"), ref.get("text")
            ref = f"In the perspective of {name}, {text}" if name and text else (text or "")
        if not isinstance(ref, str):
            continue
        out.extend(split_perspective_sentences(sanitize_text(ref)[0]))
    return out, sum(not has_perspective_phrase(s) for s in out)


def sanitize_text(text: str) -> tuple[str, bool]:
    """Replace lone surrogates and control characters (keeps \\t, \\n, \\r); True if anything changed."""
    try:
        text.encode("utf-8")
        bad = False
    except UnicodeEncodeError:
        text = text.encode("utf-8", errors="replace").decode("utf-8")
        bad = True
    cleaned = _CONTROL_RE.sub(" ", text)
    return cleaned, bad or cleaned != text
