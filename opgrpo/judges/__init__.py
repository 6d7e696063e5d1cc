"""Judges: models (or human labels) that answer questions about text, built from config by one builder.

Two interfaces, for two purposes:

- ``yes_no`` (the estimator's triplet mining): ``prob_yes(prompts) -> list[float | None]``, or for a
  pair-aware judge ``prob_same(queries) -> list[float | None]`` on ``PairQuery`` objects;
- ``chat`` (the judge-based evaluation): ``complete(prompts, *, max_tokens, temperature) -> list[str | None]``.

=============  =================================  ====================================
kind           purpose "yes_no"                   purpose "chat"
=============  =================================  ====================================
none           None (thresholds decide)           None (evaluation off)
transformers   ``YesNoLM`` (P(Yes) from logits,  ``LocalChatJudge`` (generation)
               or a greedy reply's verdict)
http           ``ChatEndpoint`` (P(Yes) from      ``ChatEndpoint``
               logprobs, else parsed text; or a
               greedy reply's verdict)
labels         ``LabelJudge`` (human labels)      -
=============  =================================  ====================================

A Yes/No judge's ``mode`` is "logprob" (P(Yes) from token probabilities) or "generate" (the authors': a greedy
reply of up to ``max_new_tokens``, Yes when "yes" occurs in the first line after the last "Answer:",
``answer_verdict``);
``chat_template=False`` sends the prompt as plain text (the authors' judge had no chat template).

The settings' choices are enums (``YesNoKind``, ``ChatKind``, ``JudgeMode``, ``Unlabelled``; opgrpo.utils.checks.Choice)
that the config dataclasses type their fields with; the tuples (``YES_NO_KINDS`` ...) are their values.

The local judges batch prompts with ``opgrpo.models.batching`` (length-sorted, left-padded).
The HTTP judge goes through the ``openai`` SDK (retries, ``Retry-After``); see ``opgrpo.judges.http``.
"""
from __future__ import annotations

from typing import Any

from opgrpo.judges.chat import LocalChatJudge
from opgrpo.judges.http import (
    ChatEndpoint,
    JudgeUnavailable,
    parse_yes_no,
    prob_yes_from_logprobs,
    probe_endpoint,
)
from opgrpo.judges.labels import UNLABELLED_MODES, LabelJudge, PairQuery
from opgrpo.judges.yesno import (
    JUDGE_MODES,
    Judge,
    YesNoLM,
    answer_is_clear,
    answer_line,
    answer_verdict,
)
from opgrpo.utils.checks import Choice, choice_enum


class YesNoKind(Choice):
    """Kinds of a Yes/No judge (the estimator's ``judge.kind``)."""

    none = "none"
    transformers = "transformers"
    http = "http"
    labels = "labels"


class ChatKind(Choice):
    """Kinds of a chat judge (``eval.judge.kind``)."""

    none = "none"
    transformers = "transformers"
    http = "http"


JudgeMode = choice_enum("JudgeMode", JUDGE_MODES, __name__)
"""A Yes/No judge's ``mode``: generate or logprob (``opgrpo.judges.yesno.JUDGE_MODES``)."""
Unlabelled = choice_enum("Unlabelled", UNLABELLED_MODES, __name__)
"""A label judge's answer for a pair its file does not mention: different or skip (``UNLABELLED_MODES``)."""
YES_NO_KINDS = tuple(k.value for k in YesNoKind)
CHAT_KINDS = tuple(k.value for k in ChatKind)
PURPOSES = ("yes_no", "chat")

__all__ = ["CHAT_KINDS", "JUDGE_MODES", "PURPOSES", "UNLABELLED_MODES", "YES_NO_KINDS", "ChatEndpoint", "ChatKind",
           "Judge", "JudgeMode", "JudgeUnavailable", "LabelJudge", "LocalChatJudge", "PairQuery", "Unlabelled",
           "YesNoKind", "YesNoLM", "answer_is_clear", "answer_line", "answer_verdict", "build_judge", "parse_yes_no",
           "probe_endpoint", "prob_yes_from_logprobs"]


def build_judge(kind: str, *, purpose: str = "yes_no", model: str = "", base_url: str = "",
                api_key_env: str | None = None, timeout: float | None = None, max_retries: int | None = None,
                max_workers: int | None = None, batch_size: int | None = None, max_length: int | None = None,
                device: str = "auto", dtype: str | None = None, system_prompt: str | None = None,
                labels: Any = None, unlabelled: str = "different", check: bool = True,
                mode: str | None = None, chat_template: bool | None = None, max_new_tokens: int | None = None,
                section: str = "judge") -> Any:
    """The judge of ``kind`` for ``purpose`` (see the table above); None for kind "none".

    ``model`` is a hub id or local path ("transformers") or the served model name ("http"); ``labels`` is
    a label table with ``get(item_id, name_a, name_b)`` ("labels", e.g. ``opgrpo.estimator.pair_labels.
    PairLabels``). Settings left None keep the judge class's own default. An HTTP judge is checked for
    reachability (``check=True``: raises ``JudgeUnavailable``). ``mode``, ``chat_template`` and
    ``max_new_tokens`` are the Yes/No judges' (purpose "yes_no"). Error messages name the setting as
    ``<section>.<field>`` (e.g. ``estimator.judge.model``).
    """
    if purpose not in PURPOSES:
        raise ValueError(f"judge purpose must be one of {PURPOSES}; got {purpose!r}")
    kinds = YES_NO_KINDS if purpose == "yes_no" else CHAT_KINDS
    kind = (kind or "none").lower()
    if kind not in kinds:
        raise ValueError(f"{section}.kind must be one of {kinds}; got {kind!r}")
    if kind == "none":
        return None
    if kind == "labels":
        if labels is None:
            raise ValueError(f"{section}: judge kind 'labels' needs pair labels")
        return LabelJudge(labels, unlabelled)
    if not model:
        raise ValueError(f"{section}.model must be set for judge kind {kind!r}")
    yes_no = _given(mode=mode, chat_template=chat_template, max_new_tokens=max_new_tokens)
    if yes_no.get("mode", "logprob") not in JUDGE_MODES:
        raise ValueError(f"{section}.mode must be one of {JUDGE_MODES}; got {yes_no['mode']!r}")
    if kind == "http" and yes_no.get("mode", "logprob") == "logprob" and yes_no.get("chat_template") is False:
        raise ValueError(f"{section}.chat_template: mode 'logprob' over http needs the chat endpoint "
                         f"(chat_template=true)")
    if kind == "transformers":
        local = _given(dtype=dtype, batch_size=batch_size, max_length=max_length)
        if purpose == "chat":
            return LocalChatJudge(model, device=device, **local)
        return YesNoLM(model, device=device, **local, **_given(system_prompt=system_prompt), **yes_no)
    judge = ChatEndpoint(base_url, model, **_given(api_key_env=api_key_env, timeout=timeout, max_retries=max_retries,
                                                   max_workers=max_workers, system_prompt=system_prompt),
                         **(yes_no if purpose == "yes_no" else {}))
    if check:
        judge.check()
    return judge


def _given(**settings: Any) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if v is not None}
