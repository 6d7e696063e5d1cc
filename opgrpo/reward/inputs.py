"""Reading reward inputs: the argument checks, completion text from TRL's forms, prompt text, reference sentences.

Two kinds of bad input, two answers:

- a whole argument of the wrong kind (``completions=None``, an int, a generator, one bare string, a dict; an
  ``encoder`` without ``encode``; a ``config`` that is not a ``RewardConfig``; a column whose length is not
  the number of completions) is a programming mistake: ``check_encoder``, ``check_config``,
  ``as_completions`` and ``as_column`` raise one ``TypeError``/``ValueError`` naming the argument;
- one bad value inside a batch (a completion that is not text, a reference that is neither text nor
  ``{name, text}``) never raises: ``completion_text`` returns None and ``reference_sentences`` counts it, and
  the scorer scores it 0 and counts it.

Text is cleaned with ``opgrpo.text.clean.clean_text`` (lone surrogates, control characters).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sized
from typing import Any

from opgrpo.reward.config import RewardConfig
from opgrpo.text.clean import clean_text
from opgrpo.text.perspectives import has_perspective_phrase, split_perspective_sentences

__all__ = ["as_column", "as_completions", "batch_key", "check_config", "check_encoder", "completion_text",
           "is_utf8", "keyword_source", "prompt_text", "reference_sentences"]


# ----------------------------------------------------------------------------- whole arguments
def check_encoder(encoder: Any) -> None:
    """Raise ``TypeError`` unless ``encoder`` has a callable ``encode`` (a str has one too: not accepted)."""
    if isinstance(encoder, (str, bytes)) or not callable(getattr(encoder, "encode", None)):
        hint = "; load the model first, e.g. SentenceTransformer(path)" if isinstance(encoder, (str, bytes)) else ""
        raise TypeError("encoder must have an encode(sentences, ...) method (a sentence-transformers model or an "
                        f"OPRewardScorer), got {type(encoder).__name__}{hint}")


def check_config(config: Any) -> RewardConfig:
    """``config`` itself, or the paper preset for None; ``TypeError`` for anything else (e.g. a dict)."""
    if config is None:
        return RewardConfig()
    if not isinstance(config, RewardConfig):
        raise TypeError(f"config must be a RewardConfig or None, got {type(config).__name__}; "
                        "build one with RewardConfig(masking=..., weights=RewardWeights(...))")
    return config


def _as_list(values: Any, name: str) -> list:
    what = f"{name} must be a list (or another sized sequence) with one entry per completion"
    if isinstance(values, (str, bytes, bytearray)):
        raise TypeError(f"{what}, not one {type(values).__name__}; wrap a single value in a list")
    if isinstance(values, Mapping):
        raise TypeError(f"{what}, got a {type(values).__name__}")
    if isinstance(values, Iterator) or not (isinstance(values, Iterable) and isinstance(values, Sized)):
        hint = "; pass list(...)" if isinstance(values, Iterator) else ""
        raise TypeError(f"{what}, got {type(values).__name__}{hint}")
    return list(values)


def as_completions(completions: Any) -> list:
    """The completions as a list; ``TypeError`` naming ``completions`` for None, a scalar, a str, an iterator."""
    return _as_list(completions, "completions")


def as_column(values: Any, n: int, name: str) -> list:
    """A per-completion column as a list (None: all missing); ``TypeError``/``ValueError`` naming ``name``."""
    if values is None:
        return [None] * n
    out = _as_list(values, name)
    if len(out) != n:
        raise ValueError(f"{name} must have one entry per completion ({n}), got {len(out)}")
    return out


def _freeze(x: Any) -> Any:
    if isinstance(x, Mapping):
        return ("dict", tuple(sorted(((str(k), _freeze(v)) for k, v in x.items()), key=lambda kv: kv[0])))
    if isinstance(x, (list, tuple)):
        return tuple(_freeze(v) for v in x)
    return x if isinstance(x, (str, bytes, int, float, bool, type(None))) else repr(x)


def batch_key(*columns: Any) -> tuple:
    """A hashable key of the given values (dicts, lists, other objects by repr): memo and cache keys."""
    return tuple(_freeze(c) for c in columns)


# ----------------------------------------------------------------------------- one value
def is_utf8(raw: bytes | bytearray) -> bool:
    try:
        bytes(raw).decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


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


def keyword_source(prompt: Any, to_text: Any = prompt_text) -> str:
    """The text keywords are masked from for ``masking="prompt"``: ``to_text(prompt)``, "" when there is none.

    A prompt the renderer cannot read (e.g. a chat template raising on a malformed conversation) gives "",
    which the scorer counts as a missing prompt rather than failing the batch.
    """
    if prompt is None:
        return ""
    try:
        text = to_text(prompt)
    except Exception:  # noqa: BLE001 (a bad item, not a failed training step)
        return ""
    return text if isinstance(text, str) else ""


def _reference_line(ref: Any) -> str | None:
    """One reference entry as text: a str, UTF-8 bytes, or a perspective ``{name, text}`` (dict or object)."""
    if isinstance(ref, str):
        return ref
    if isinstance(ref, (bytes, bytearray)):
        return bytes(ref).decode("utf-8", errors="replace")
    if isinstance(ref, Mapping):
        name, text = ref.get("name"), ref.get("text")
    elif isinstance(getattr(ref, "raw", None), str) and ref.raw.strip():
        return ref.raw  # opgrpo.benchmark.Perspective read from a reference line: the line as written
    elif isinstance(getattr(ref, "name", None), str) and isinstance(getattr(ref, "text", None), str):
        name, text = ref.name, ref.text  # e.g. opgrpo.benchmark.Perspective
    else:
        return None
    if not isinstance(text, str) or not text.strip():
        return None
    return f"In the perspective of {name.strip()}, {text}" if isinstance(name, str) and name.strip() else text


def _is_one_perspective(references: Any) -> bool:
    return isinstance(references, Mapping) or (isinstance(getattr(references, "name", None), str)
                                               and isinstance(getattr(references, "text", None), str))


def reference_sentences(references: Any) -> tuple[list[str], int, int]:
    """(reference perspective sentences, how many lack the perspective phrase, how many entries are invalid).

    Accepts one answer string, one perspective ``{name, text}`` (a dict, or an object with those attributes
    such as ``opgrpo.benchmark.Perspective``), or a list of lines and/or perspectives. A perspective becomes
    "In the perspective of {name}, {text}"; every entry is split like a response (a line holding two
    perspectives gives two references). Entries that are neither (numbers, None inside a list, a dict without
    ``text``) are skipped and counted as invalid; None for the whole value means no references (not invalid).
    """
    if references is None:
        return [], 0, 0
    if isinstance(references, (str, bytes, bytearray)) or _is_one_perspective(references):
        entries: list = [references]
    elif isinstance(references, Iterable) and isinstance(references, Sized):
        entries = list(references)
    else:
        return [], 0, 1
    out: list[str] = []
    invalid = 0
    for ref in entries:
        line = _reference_line(ref)
        if line is None:
            invalid += 1
            continue
        out.extend(split_perspective_sentences(clean_text(line)[0]))
    return out, sum(not has_perspective_phrase(s) for s in out), invalid
