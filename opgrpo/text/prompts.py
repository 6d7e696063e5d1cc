"""The prompts of OP-GRPO: the implicit prompt (SFT, RL, evaluation) and the explicit baseline prompt.

The implicit prompt never asks for perspectives; the model has to learn to give them. Both return chat
messages (a list of ``{"role", "content"}`` dicts) so that the policy's own chat template is applied by
the tokenizer or by TRL.
"""
from __future__ import annotations

from opgrpo.text.clean import clean_text

IMPLICIT_TEMPLATE = "Provide a structured comprehensive analysis and your opinions on this topic: {situation}\n\n"
"""The implicit prompt (SPEC.md "Prompts"): SFT, RL and evaluation; it never asks for perspectives."""

EXPLICIT_TEMPLATE = (
    "Provide a structured multi-perspectives analysis within 450 words on this topic: {situation}\n"
    "Make sure each sentence you write can represent one perspective from your analysis.\n"
    "   Output Format Example:\n"
    "   You may have many sentences for different perspectives. Make sure each of sentence follow this format: "
    "In the perspective of <Perspective name>, <your explanation to this aspect>\n"
)
"""The explicit baseline prompt, verbatim from the authors' ``data_preprocess/valueprism_ex.py`` (``wrap_prompt``;
their spelling and spacing kept): baseline numbers are only comparable with the same prompt."""

TEMPLATES = {"implicit": IMPLICIT_TEMPLATE, "explicit": EXPLICIT_TEMPLATE}
PROMPT_KINDS = tuple(TEMPLATES)


def prompt_text(situation: str, kind: str = "implicit") -> str:
    """The user message for ``situation`` (cleaned: opgrpo.text.clean); ``kind`` is ``implicit`` or ``explicit``.

    Every prompt of SFT, GRPO, evaluation and the judges is built here, so a lone surrogate or a control
    character in a situation never reaches a tokenizer."""
    try:
        template = TEMPLATES[kind]
    except KeyError:
        raise ValueError(f"unknown prompt kind {kind!r}; expected one of {sorted(TEMPLATES)}") from None
    return template.format(situation=clean_text(situation)[0].strip())


def chat_prompt(situation: str, kind: str = "implicit", system: str | None = None) -> list[dict[str, str]]:
    """Chat messages for ``situation`` (optionally with a system message)."""
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": prompt_text(situation, kind)})
    return messages
