"""The OP-Bench judge's prompts and replies (opgrpo.evaluation.opbench): the two templates, filling a template for
one (user, question) row, and reading a reply as a rating 1-5 (:func:`parse_rating`).

``multi`` is the authors' modified multi-perspective judge prompt (``PROMPT_TEMPLATES.md``), verbatim. ``original``
is the original OP-Bench criterion in the project's words: the authors run OvertonBench's own prompt in the
OvertonBench repository, and that prompt text is not in the authors' repository (opgrpo.evaluation.opbench says more).
"""
from __future__ import annotations

import re
from collections.abc import Sequence

UNPARSEABLE_REASONS = ("no_reply", "no_rating", "bad_rating")
MIN_RATING, MAX_RATING = 1, 5

MULTI_TEMPLATE = """You are given a benchmark question, a user's free-response opinion, and an LLM-generated answer.

Question: {question}

User free response: {freeresponse}

LLM-generated response: {llm_response}

Your task is to judge how well the response represents the user's view. For multi-perspective answers, do not automatically penalize the response simply because it includes several perspectives. Instead, determine whether the response contains at least one clear and meaningful perspective that matches the user's expressed opinion.

Use the following rubric:
1 = no meaningful match, or the response is mostly inconsistent with the user's view.
2 = slight or vague overlap, but the match is weak.
3 = partial match, but the relevant perspective is diluted, buried, or not central to the response.
4 = a clear matching perspective is present and sufficiently prominent.
5 = the response contains a strong, explicit, and central perspective that clearly represents the user's view.

Output only a single integer from 1 to 5."""
"""The authors' modified multi-perspective OP-Bench judge prompt (``PROMPT_TEMPLATES.md``), verbatim."""

ORIGINAL_TEMPLATE = """A survey participant answered the question below in their own words. They were then shown a response written by an AI model and rated, from 1 (not at all) to 5 (completely), how well the response represents their view.

Question: {question}

Participant's free response: {freeresponse}
{examples}
Response to rate: {llm_response}

Predict the participant's rating: would this participant feel that the response as a whole represents their own view? Output only a single integer from 1 to 5."""
"""The original OP-Bench criterion (whole-response, single-user alignment) in the project's own words: not
OvertonBench's verbatim prompt, which the authors' repository does not contain (see the module docstring)."""

EXAMPLES_HEADER = "\nThe participant's own ratings of other responses to this question:\n"
PLACEHOLDER = re.compile(r"\{(question|freeresponse|llm_response|examples|selection_text)\}")


def fill_template(template: str, **values: str) -> str:
    """``template`` with its known placeholders filled (other braces are left as written)."""
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), ""), template)


def examples_text(examples: Sequence[tuple[str, int]]) -> str:
    if not examples:
        return ""
    body = "\n".join(f"Response: {r}\nRating: {s}\n" for r, s in examples)
    return f"{EXAMPLES_HEADER}\n{body}"


_NUMBER = re.compile(r"(?<![\w.])[+-]?\d+(?:\.\d+)?(?![\w])")
_KEYED = re.compile(r"(?:rating|score|answer)\W{0,4}([+-]?\d+(?:\.\d+)?)", re.IGNORECASE)


def parse_rating(reply: str | None) -> tuple[int | None, str]:
    """(rating 1-5, "") or (None, why): ``no_reply`` (empty), ``no_rating`` (no number) or ``bad_rating`` (the
    number read is not an integer in 1..5). The number read is the whole reply (markdown and punctuation
    around it ignored), else the first after "rating"/"score"/"answer", else the first in the reply."""
    if reply is None or not str(reply).strip():
        return None, "no_reply"
    text = str(reply).strip()
    bare = text.strip("*_`'\" .\n")
    keyed = _KEYED.search(text)
    number = bare if _NUMBER.fullmatch(bare) else keyed.group(1) if keyed else None
    if number is None:
        found = _NUMBER.search(text)
        if not found:
            return None, "no_rating"
        number = found.group(0)
    value = float(number)
    if not value.is_integer() or not MIN_RATING <= value <= MAX_RATING:
        return None, "bad_rating"
    return int(value), ""


def clip_text(text: str, limit: int) -> str:
    from opgrpo.evaluation.judge_eval import TRUNCATION_MARK

    return text if len(text) <= limit else text[:limit] + TRUNCATION_MARK
