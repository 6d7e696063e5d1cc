"""Text layer of the OP reward: perspective sentences, names, tags and keyword masking.

Everything the reward, the data loader, the NLI benchmark and estimator mining need to read a
response or a reference answer lives here, with the exact rules of SPEC.md ("Reward"):

- ``split_perspective_sentences``: split before every line starting "In/From the perspective of ".
- ``perspective_name`` / ``has_perspective_phrase``: the perspective phrase and its lower-cased name.
- ``parse_reference``: (name as written, explanation) of one reference line.
- ``parse_strict_layout`` / ``lenient_blocks``: the strict tag layout and the lenient format reading.
- ``situation_keywords`` / ``mask_keywords``: keyword masking in the form the estimator saw.

Pure functions on ``str``; no model, no torch.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from opgrpo.utils.checks import choice_enum

__all__ = [
    "KW_TOKEN",
    "PHRASE_RE",
    "SPLIT_RE",
    "STOPWORDS",
    "STRICT_RE",
    "Layout",
    "Masking",
    "has_perspective_phrase",
    "lenient_blocks",
    "mask_keywords",
    "parse_reference",
    "parse_strict_layout",
    "perspective_name",
    "situation_keywords",
    "split_perspective_sentences",
    "tokenize",
]

SPLIT_RE = re.compile(r"(?:^|\n)(?=(?:From|In) the perspective of )", re.IGNORECASE)
PHRASE_RE = re.compile(r"(?:^|\s)(?:From|In) the perspective of ([^,.\n]+)", re.IGNORECASE)
STRICT_RE = re.compile(
    r"\s*<core\s+perspectives>(?P<core>.*?)</core\s+perspectives>\s*"
    r"<summary>(?P<summary>.*?)</summary>\s*",
    re.IGNORECASE | re.DOTALL,
)
_CORE_BLOCK_RE = re.compile(r"<core\s+perspectives>(.*?)</core\s+perspectives>", re.IGNORECASE | re.DOTALL)
_SUMMARY_BLOCK_RE = re.compile(r"<summary>(.*?)</summary>", re.IGNORECASE | re.DOTALL)
_TOKEN_RE = re.compile(r"\b\w+\b")
KW_TOKEN = "[KW]"
MASKINGS = ("situation", "none", "prompt")
"""Keyword sources for masking: the situation (paper), the whole decoded prompt (authors' code), or none."""
Masking = choice_enum("Masking", MASKINGS, __name__)
"""``MASKINGS`` as the Enum type of the config fields that choose one (reward.masking, estimator.mining.masking)."""


def _load_stopwords() -> frozenset[str]:
    text = resources.files("opgrpo.text").joinpath("stopwords_en.txt").read_text(encoding="utf-8")
    return frozenset(w.strip() for w in text.splitlines() if w.strip())


STOPWORDS: frozenset[str] = _load_stopwords()
"""NLTK's classic 179-word English stopword list (``stopwords.words('english')``), vendored."""


def split_perspective_sentences(text: str) -> list[str]:
    """Split ``text`` before every line that starts with "In/From the perspective of " (any case).

    Pieces are stripped and empty ones dropped; a text without the phrase gives one piece.
    """
    return [p.strip() for p in SPLIT_RE.split(text + "\n") if p.strip()]


def has_perspective_phrase(sentence: str) -> bool:
    """True if ``sentence`` carries "In/From the perspective of <name>" (start or after whitespace)."""
    return PHRASE_RE.search(sentence) is not None


def perspective_name(sentence: str) -> str | None:
    """The first perspective name in ``sentence``, stripped and lower-cased; None without a phrase."""
    m = PHRASE_RE.search(sentence)
    return m.group(1).strip().lower() if m else None


_PHRASE_START_RE = re.compile(r"(?:^|\s)(?:From|In) the perspective of ", re.IGNORECASE)


def _name_comma(line: str, start: int) -> int:
    """Index of the comma ending the name that starts at ``start``: the first comma on that line outside
    parentheses (a name may read "Duty to protect the vulnerable (e.g., the child)"); -1 if there is none."""
    depth = 0
    for i in range(start, len(line)):
        ch = line[i]
        if ch == "\n":
            return -1
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            return i
    return -1


def parse_reference(line: str) -> tuple[str | None, str]:
    """Split a reference line "In the perspective of <Name>, <explanation>" into (Name, explanation).

    The name is everything from the phrase to the first comma on that line outside parentheses, kept as
    written (stripped): "Good vs. Evil" and "Duty to protect the vulnerable (e.g., the child)" are whole
    names. The explanation is the text after that comma, stripped. Without such a comma the name ends at
    the first ",", "." or line break (the reward's phrase rule) and the explanation is the rest minus
    leading punctuation. A line without the phrase gives ``(None, line.strip())``. The reference line
    itself is never rewritten from these parts (:class:`opgrpo.benchmark.items.Perspective` keeps it raw).
    """
    start = _PHRASE_START_RE.search(line)
    if start is None:
        return None, line.strip()
    comma = _name_comma(line, start.end())
    if comma >= 0 and line[start.end():comma].strip():
        return line[start.end():comma].strip(), line[comma + 1:].strip()
    m = PHRASE_RE.search(line)
    if m is None:  # phrase with an empty name ("In the perspective of , x")
        return "", line[start.end():].lstrip(" ,.:;-").strip()
    name = m.group(1).strip()
    comma = line.find(",", m.end(1))
    rest = line[comma + 1:] if comma >= 0 else line[m.end(1):].lstrip(" .:;-")
    return name, rest.strip()


@dataclass(frozen=True)
class Layout:
    """Result of the strict tag check of a response."""

    strict: bool
    """True if the whole response is <core perspectives>...</core perspectives> <summary>...</summary>."""
    core: str
    """Core text (stripped) when strict, else the whole response stripped."""
    summary: str | None
    """Summary text (stripped) when strict, else None."""


def parse_strict_layout(response: str) -> Layout:
    """Check the strict layout (case-insensitive, whole response, both parts non-empty)."""
    m = STRICT_RE.fullmatch(response)
    if m is not None:
        core, summary = m.group("core").strip(), m.group("summary").strip()
        if core and summary:
            return Layout(True, core, summary)
    return Layout(False, response.strip(), None)


def lenient_blocks(response: str) -> tuple[str, str]:
    """(format-core, format-summary): the first block of each tag, else the whole response; stripped."""
    core = _CORE_BLOCK_RE.search(response)
    summary = _SUMMARY_BLOCK_RE.search(response)
    whole = response.strip()
    return (core.group(1).strip() if core else whole, summary.group(1).strip() if summary else whole)


def tokenize(text: str) -> list[str]:
    """The ``\\b\\w+\\b`` tokens of ``text`` (case kept, punctuation dropped)."""
    return _TOKEN_RE.findall(text)


def situation_keywords(text: str) -> set[str]:
    """Lower-cased alphanumeric tokens of ``text`` that are not NLTK English stopwords."""
    return {t for t in _TOKEN_RE.findall(text.lower()) if t.isalnum() and t not in STOPWORDS}


def mask_keywords(sentence: str, keywords: set[str] | frozenset[str]) -> str:
    """Replace keyword tokens by ``[KW]`` and join all tokens by single spaces.

    Punctuation is dropped (the form the estimator was trained on). With no keywords the sentence
    is returned unchanged.
    """
    if not keywords:
        return sentence
    return " ".join(KW_TOKEN if t.lower() in keywords else t for t in _TOKEN_RE.findall(sentence))
