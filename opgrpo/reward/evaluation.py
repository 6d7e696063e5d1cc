"""The OP reward of evaluation responses, with the keywords each masking mode needs.

``score_responses`` is ``score_completions`` for responses to benchmark items. Under ``masking="prompt"`` (the
authors' keyword source, ``reward=authors_masking``) the keywords come from the prompt each response answered:
``chat_prompt(situation, prompt)`` rendered with the policy tokenizer's chat template (the decoded chat prompt
the authors' reward read during training) or, without a tokenizer, the text of its messages. Without this the
eval-time reward had no prompts and scored coverage and uniqueness 0 under that preset.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opgrpo.reward.config import RewardConfig
from opgrpo.reward.trl import make_scorer

__all__ = ["score_responses"]


def score_responses(situations: Sequence[str], responses: Sequence[Any], references: Sequence[Any], encoder: Any,
                    config: RewardConfig | None = None, *, prompt: str = "implicit",
                    tokenizer: Any = None) -> list[dict]:
    """One ``score_completions`` dict per response; ``prompt`` is the prompt kind the responses were generated
    with (implicit | explicit), used only under ``masking="prompt"``; ``tokenizer`` renders it (optional)."""
    from opgrpo.text.prompts import chat_prompt

    scorer = make_scorer(encoder, config, tokenizer=tokenizer)
    prompts = None
    if scorer.config.masking == "prompt":
        prompts = [chat_prompt(s, prompt) if isinstance(s, str) and s.strip() else None for s in situations]
    return scorer.score(list(situations), list(responses), list(references), prompts)
