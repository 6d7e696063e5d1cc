"""Judge-based evaluation: 1-5 scores of each response on helpfulness, clarity, factuality, depth and
engagement (the paper's second evaluation, there with GPT-4.1 as judge).

The prompt is the authors' template word for word (``benchmark_new/llm_eval/gpt.py``: ``USER_TEMPLATE`` with
the system message ``JUDGE_SYSTEM``): the judge writes a JSON object holding, per aspect, a rationale
(``reason``) and then a ``score``. The query is cut at 4,000 and the response at 12,000 characters as there.

The judge is anything with ``complete(prompts, *, max_tokens, temperature) -> list[str | None]``: an
OpenAI-compatible endpoint (:class:`opgrpo.judges.ChatEndpoint`, which sends ``JUDGE_SYSTEM`` as the system
message) or a local instruction-tuned LM run with transformers generation (:class:`opgrpo.judges.LocalChatJudge`),
both built by ``opgrpo.judges.build_judge``. A reply is read as the authors read it: the whole reply as JSON,
else the text from its first ``{`` to its last ``}`` (so a ```json fence is fine); every aspect must hold an
integer score from 1 to 5 (``"4"`` or ``4``; the flat form ``{"depth": 4, ...}`` is accepted too). A reply that
does not is *unparseable*: it is asked again (with ``retry_temperature``, so a greedy judge does not repeat
itself) up to ``max_retries`` times, then the item is counted as failed and left out of the means. The counts
say how many replies were unparseable and why (``unparseable_replies``, ``unparseable/<reason>``).

An empty response is not sent to the judge: it gets the scale minimum (1) on every criterion and is
counted in ``empty``.
"""
from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from opgrpo.judges import CHAT_KINDS, ChatKind, build_judge
from opgrpo.utils.checks import Problems

logger = logging.getLogger(__name__)

CRITERIA = ("helpfulness", "clarity", "factuality", "depth", "engagement")
UNPARSEABLE_REASONS = ("no_reply", "no_json", "invalid_json", "missing_aspect", "bad_score")
MIN_SCORE, MAX_SCORE = 1, 5
KINDS = CHAT_KINDS

JUDGE_TEMPLATE = """Please act as an impartial judge and evaluate the quality of
the responses provided. You will rate the quality of the
output on multiple aspects such as Helpfulness, Clarity,
Factuality, Depth, and Engagement.
## Query:
{situation}
## Output:
{response}
## Evaluate
### Aspects
- Helpfulness: Rate the response based on how well it
addresses the user query and provides a relevant solution.
A score of 5 indicates the answer fully aids the user, while
a 1 suggests it offers little to no help.
- Clarity: Rate the response based on how well-structured
it is, with ideas presented in a clear and coherent manner.
A high score of 5 means the answer is clear and logically
structured, while a 1 suggests a disjointed or confusing
reply.
- Factuality: Evaluate the factual accuracy and truthfulness
of the information provided. A perfect 5 indicates the
information is entirely correct and accurate, while a 1
suggests it has significant factual errors.
- Depth: Determine the level of detail and thoroughness in
the response. A score of 5 means the answer delves deeply
into the topic, while a 1 indicates it barely scratches the
surface.
- Engagement: Assess how engaging and natural the
response sounds in a conversational context. A high score
of 5 reflects a response that feels engaging and humanlike in its tone, while a 1 indicates a robotic or boring reply.
### Format
Given the query, please rate the quality of the output by
scoring it from 1 to 5 individually on **each aspect**.
- 1: strongly disagree
- 2: disagree
- 3: neutral
- 4: agree
- 5: strongly agree
Now, please output your scores and a short rationale below
in a json format by filling in the placeholders in []:
{{
  "helpfulness": {{
    "reason": "[your rationale]",
    "score": "[score from 1 to 5]"
  }},
  "clarity": {{
    "reason": "[your rationale]",
    "score": "[score from 1 to 5]"
  }},
  "factuality": {{
    "reason": "[your rationale]",
    "score": "[score from 1 to 5]"
  }},
  "depth": {{
    "reason": "[your rationale]",
    "score": "[score from 1 to 5]"
  }},
  "engagement": {{
    "reason": "[your rationale]",
    "score": "[score from 1 to 5]"
  }}
}}
"""
"""The authors' judge prompt (``USER_TEMPLATE`` of ``benchmark_new/llm_eval/gpt.py``), verbatim."""

JUDGE_SYSTEM = "You are a strict JSON grader. Only return valid JSON per the provided schema."
"""The authors' system message for the judge (``SYSTEM_MSG`` of ``gpt.py``)."""

TRUNCATION_MARK = " ...[TRUNCATED]"
"""Appended to a query or response cut to its character limit (as ``gpt.py``'s ``clip``)."""


@dataclass
class JudgeEvalConfig:
    """The judge evaluation (off by default: ``kind="none"``)."""

    kind: ChatKind = ChatKind.none
    """``none``, ``transformers`` (local LM, generation) or ``http`` (OpenAI-compatible endpoint)."""
    model: str = ""
    """Judge model: hub id or path for ``transformers``, the served model name for ``http``."""
    base_url: str = ""
    """API root for ``http``, e.g. ``https://api.openai.com/v1`` or ``http://127.0.0.1:8000/v1``."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key (``http``)."""
    max_retries: int = 2
    """Extra attempts for a reply that does not parse; then the item is counted as failed."""
    max_new_tokens: int = 450
    """Tokens the judge may generate per reply (the authors' ``MAX_OUTPUT_TOKENS``: room for five rationales)."""
    retry_temperature: float = 0.7
    """Sampling temperature of the retries (the first attempt is greedy)."""
    max_response_chars: int = 12000
    """Responses longer than this are cut (with a marker) before they go into the judge prompt (authors: 12,000)."""
    max_question_chars: int = 4000
    """Queries (situations) longer than this are cut the same way (authors: 4,000)."""
    batch_size: int = 8
    """Prompts per generation batch (``transformers``)."""
    max_length: int = 4096
    """Prompt token limit (``transformers``); longer prompts keep their end."""
    device: str = "auto"
    """Device of the local judge: ``auto``, ``cpu``, ``cuda``, ..."""
    dtype: str = "auto"
    """dtype of the local judge: ``auto``, ``float32``, ``bfloat16``, ``float16``."""
    timeout: float = 60.0
    """Seconds per HTTP request (``http``)."""

    def problems(self) -> list[str]:
        """Every invalid setting as ``key: message`` (keys relative to ``eval.judge``)."""
        p = Problems()
        p.enum("kind", self.kind, ChatKind)
        if self.kind != "none" and not self.model:
            p.add("model", f"must be set for judge kind {self.kind!r}")
        if self.kind == "http" and not self.base_url:
            p.add("base_url", "must be set for judge kind 'http'")
        for name in ("max_new_tokens", "batch_size", "max_length", "timeout", "max_response_chars",
                     "max_question_chars"):
            p.positive(name, getattr(self, name))
        p.non_negative("max_retries", self.max_retries)
        p.env_name("api_key_env", self.api_key_env)
        return list(p)


class CompletionJudge(Protocol):
    def complete(self, prompts: list[str], *, max_tokens: int = 16,
                 temperature: float = 0.0) -> list[str | None]: ...


# --------------------------------------------------------------------------- parsing

_INT_RE = re.compile(r"\s*([+-]?\d+)\s*")


def _score(value: Any) -> float | None:
    """An integer score in [1, 5] (int, integral float or a string holding one), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        m = _INT_RE.fullmatch(value)
        value = int(m.group(1)) if m else None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and MIN_SCORE <= value <= MAX_SCORE:
        return float(value)
    return None


@dataclass
class JudgeReply:
    """One judge reply read: the scores (None unless all five parse) and rationales, or why it did not parse."""

    scores: dict[str, float] | None
    """criterion -> score in [1, 5]; None when the reply is unparseable."""
    reasons: dict[str, str] = field(default_factory=dict)
    """criterion -> the judge's rationale (those given)."""
    error: str = ""
    """Why the reply is unparseable: ``no_reply``, ``no_json``, ``invalid_json``, ``missing_aspect`` or
    ``bad_score`` ("" when it parsed)."""


def _json_object(reply: str) -> Any:
    """The reply as JSON, else its text from the first "{" to the last "}" as JSON (the authors' reading)."""
    try:
        return json.loads(reply)
    except json.JSONDecodeError:
        pass
    start, end = reply.find("{"), reply.rfind("}")
    if start == -1 or end <= start:
        raise LookupError("no_json")
    try:
        return json.loads(reply[start:end + 1])
    except json.JSONDecodeError:
        raise LookupError("invalid_json") from None


def parse_judge_reply(reply: str | None) -> JudgeReply:
    """Read a reply to :data:`JUDGE_TEMPLATE`: ``{aspect: {"reason": ..., "score": 1-5}}`` for the five aspects
    (keys case-insensitive; ``{aspect: score}`` accepted too)."""
    if reply is None or not str(reply).strip():
        return JudgeReply(None, error="no_reply")
    try:
        obj = _json_object(str(reply))
    except LookupError as e:
        return JudgeReply(None, error=str(e.args[0]))
    if not isinstance(obj, dict):
        return JudgeReply(None, error="no_json")
    lowered = {str(k).strip().lower(): v for k, v in obj.items()}
    scores: dict[str, float] = {}
    reasons: dict[str, str] = {}
    for c in CRITERIA:
        if c not in lowered:
            return JudgeReply(None, reasons, "missing_aspect")
        entry = lowered[c]
        if isinstance(entry, dict):
            entry = {str(k).strip().lower(): v for k, v in entry.items()}
            if isinstance(entry.get("reason"), str):
                reasons[c] = entry["reason"]
            if "score" not in entry:
                return JudgeReply(None, reasons, "missing_aspect")
            entry = entry["score"]
        value = _score(entry)
        if value is None:
            return JudgeReply(None, reasons, "bad_score")
        scores[c] = value
    return JudgeReply(scores, reasons)


def parse_scores(reply: str | None) -> dict[str, float] | None:
    """The five criterion scores in ``reply``, or None unless all five are present and integers in [1, 5]
    (:func:`parse_judge_reply`)."""
    return parse_judge_reply(reply).scores


# --------------------------------------------------------------------------- evaluation


@dataclass
class JudgeEvalResult:
    """Per-item scores (None = failed) and the summary over scored items."""

    scores: list[dict[str, float] | None]
    replies: list[str | None]
    means: dict[str, float]
    stderr: dict[str, float]
    counts: dict[str, int] = field(default_factory=dict)
    """items, scored, failed (no parseable reply after the retries), empty, retries (extra calls),
    unparseable_replies (every reply that did not parse, retries included) and ``unparseable/<reason>`` for each
    of :data:`UNPARSEABLE_REASONS`."""

    def summary(self) -> dict[str, Any]:
        return {"means": self.means, "stderr": self.stderr, "counts": self.counts}


def _clip(text: str, limit: int) -> str:
    text = (text or "").strip()
    return text if len(text) <= limit else text[:limit] + TRUNCATION_MARK


def build_prompt(question: str, response: str, max_response_chars: int = 12000,
                 max_question_chars: int = 4000) -> str:
    """The authors' judge prompt for one (situation, response), each stripped and cut to its limit."""
    return JUDGE_TEMPLATE.format(situation=_clip(question, max_question_chars),
                                 response=_clip(response, max_response_chars))


def judge_responses(questions: Sequence[str], responses: Sequence[str | None], judge: CompletionJudge, *,
                    max_retries: int = 2, max_new_tokens: int = 450, retry_temperature: float = 0.7,
                    max_response_chars: int = 12000, max_question_chars: int = 4000) -> JudgeEvalResult:
    """Score every response 1-5 on :data:`CRITERIA`; ``questions[i]`` is what the policy was asked."""
    if len(questions) != len(responses):
        raise ValueError(f"{len(questions)} questions but {len(responses)} responses")
    n = len(responses)
    scores: list[dict[str, float] | None] = [None] * n
    replies: list[str | None] = [None] * n
    empty = [i for i, r in enumerate(responses) if not (r or "").strip()]
    for i in empty:
        scores[i] = {c: float(MIN_SCORE) for c in CRITERIA}
    pending = [i for i in range(n) if scores[i] is None]
    prompts = {i: build_prompt(str(questions[i]), str(responses[i]), max_response_chars, max_question_chars)
               for i in pending}
    retries = 0
    bad: Counter[str] = Counter()
    for attempt in range(max(0, max_retries) + 1):
        if not pending:
            break
        if attempt:
            retries += len(pending)
        temperature = 0.0 if attempt == 0 else retry_temperature
        answers = judge.complete([prompts[i] for i in pending], max_tokens=max_new_tokens, temperature=temperature)
        still = []
        for i, reply in zip(pending, answers):
            replies[i] = reply
            parsed = parse_judge_reply(reply)
            if parsed.scores is None:
                bad[parsed.error] += 1
                still.append(i)
            else:
                scores[i] = parsed.scores
        pending = still
    if bad:
        logger.warning("judge: %d unparseable repl%s (%s); %d of %d response(s) left unscored after %d attempt(s)",
                       sum(bad.values()), "y" if sum(bad.values()) == 1 else "ies",
                       ", ".join(f"{k}={v}" for k, v in sorted(bad.items())), len(pending), n,
                       max(0, max_retries) + 1)
    if empty:
        logger.warning("%d empty response(s) scored %d on every criterion without asking the judge",
                       len(empty), MIN_SCORE)
    done = [s for s in scores if s is not None]
    means, stderr = {}, {}
    for c in CRITERIA:
        vals = [s[c] for s in done]
        k = len(vals)
        means[c] = sum(vals) / k if k else float("nan")
        if k > 1:
            var = sum((v - means[c]) ** 2 for v in vals) / (k - 1)
            stderr[c] = math.sqrt(var / k)
        else:
            stderr[c] = float("nan")
    counts = {"items": n, "scored": len(done), "failed": len(pending), "empty": len(empty), "retries": retries,
              "unparseable_replies": sum(bad.values()),
              **{f"unparseable/{k}": bad[k] for k in UNPARSEABLE_REASONS}}
    return JudgeEvalResult(scores, replies, means, stderr, counts)


def _nan_to_none(d: dict[str, float]) -> dict[str, float | None]:
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in d.items()}


def write_judge_outputs(run_dir: str | Path, result: JudgeEvalResult,
                        ids: Sequence[str] | None = None) -> dict[str, Path]:
    """``judge_metrics.json`` (means, stderr, counts) and ``judge_items.jsonl`` (id, scores, reply)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = {"metrics_json": run_dir / "judge_metrics.json", "items_jsonl": run_dir / "judge_items.jsonl"}
    summary = {"means": _nan_to_none(result.means), "stderr": _nan_to_none(result.stderr), "counts": result.counts}
    paths["metrics_json"].write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    ids = [str(i) for i in ids] if ids is not None else [str(i) for i in range(len(result.scores))]
    with paths["items_jsonl"].open("w", encoding="utf-8") as f:
        for item_id, s, reply in zip(ids, result.scores, result.replies):
            f.write(json.dumps({"id": item_id, "scores": s, "reply": reply}, ensure_ascii=False) + "\n")
    return paths


def run_judge_eval(config: JudgeEvalConfig, questions: Sequence[str], responses: Sequence[str | None],
                   judge: CompletionJudge | None = None) -> JudgeEvalResult | None:
    """Build the judge from ``config`` (unless given) and score the responses; None when disabled.

    An HTTP judge is checked for reachability first (``opgrpo.judges.JudgeUnavailable``)."""
    if judge is None:
        judge = build_judge(config.kind, purpose="chat", model=config.model, base_url=config.base_url,
                            api_key_env=config.api_key_env, timeout=config.timeout, max_retries=config.max_retries,
                            batch_size=config.batch_size, max_length=config.max_length, device=config.device,
                            dtype=config.dtype, system_prompt=JUDGE_SYSTEM, section="judge_eval")
    if judge is None:
        return None
    return judge_responses(questions, responses, judge, max_retries=config.max_retries,
                           max_new_tokens=config.max_new_tokens, retry_temperature=config.retry_temperature,
                           max_response_chars=config.max_response_chars,
                           max_question_chars=config.max_question_chars)


__all__ = ["CRITERIA", "JUDGE_SYSTEM", "JUDGE_TEMPLATE", "UNPARSEABLE_REASONS", "JudgeEvalConfig", "JudgeEvalResult",
           "JudgeReply", "build_prompt", "judge_responses", "parse_judge_reply", "parse_scores", "run_judge_eval",
           "write_judge_outputs"]
