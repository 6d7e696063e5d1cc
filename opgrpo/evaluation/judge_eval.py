"""Judge-based evaluation: 1-5 scores of each response on helpfulness, clarity, factuality, depth and
engagement (the paper's second evaluation, there with GPT-4.1 as judge).

The judge is anything with ``complete(prompts, *, max_tokens, temperature) -> list[str | None]``: an
OpenAI-compatible endpoint (:class:`opgrpo.judges.ChatEndpoint`) or a local instruction-tuned LM run
with transformers generation (:class:`opgrpo.judges.LocalChatJudge`), both built by
``opgrpo.judges.build_judge``. The prompt asks for a JSON object; replies are parsed as JSON or, failing
that, as "criterion: score" lines. A reply that does not give all five scores in [1, 5] is asked again
(with ``retry_temperature``, so a greedy judge does not repeat itself) up to ``max_retries`` times, then
counted as failed and left out of the means.

An empty response is not sent to the judge: it gets the scale minimum (1) on every criterion and is
counted in ``empty``.
"""
from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from opgrpo.judges import CHAT_KINDS, build_judge
from opgrpo.utils.checks import Problems

logger = logging.getLogger(__name__)

CRITERIA = ("helpfulness", "clarity", "factuality", "depth", "engagement")
MIN_SCORE, MAX_SCORE = 1, 5
KINDS = CHAT_KINDS

JUDGE_TEMPLATE = """You are an impartial expert judge. Rate the response below to the user's question on five criteria, each an integer from 1 (very poor) to 5 (excellent):
- helpfulness: how useful the response is for someone thinking about the question
- clarity: how clear, well organised and easy to follow it is
- factuality: how accurate and free of false or unsupported claims it is
- depth: how thorough and insightful the analysis is
- engagement: how engaging and thoughtful it reads

[Question]
{question}

[Response]
{response}

Reply with only a JSON object with exactly these keys, each value an integer from 1 to 5:
{{"helpfulness": <score>, "clarity": <score>, "factuality": <score>, "depth": <score>, "engagement": <score>}}"""


@dataclass
class JudgeEvalConfig:
    """The judge evaluation (off by default: ``kind="none"``)."""

    kind: str = "none"
    """``none``, ``transformers`` (local LM, generation) or ``http`` (OpenAI-compatible endpoint)."""
    model: str = ""
    """Judge model: hub id or path for ``transformers``, the served model name for ``http``."""
    base_url: str = ""
    """API root for ``http``, e.g. ``https://api.openai.com/v1`` or ``http://127.0.0.1:8000/v1``."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key (``http``)."""
    max_retries: int = 2
    """Extra attempts for a reply that does not parse; then the item is counted as failed."""
    max_new_tokens: int = 64
    """Tokens the judge may generate per reply."""
    retry_temperature: float = 0.7
    """Sampling temperature of the retries (the first attempt is greedy)."""
    max_response_chars: int = 8000
    """Responses longer than this are cut (with a marker) before they go into the judge prompt."""
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
        p.choice("kind", self.kind, KINDS)
        if self.kind != "none" and not self.model:
            p.add("model", f"must be set for judge kind {self.kind!r}")
        if self.kind == "http" and not self.base_url:
            p.add("base_url", "must be set for judge kind 'http'")
        for name in ("max_new_tokens", "batch_size", "max_length", "timeout"):
            p.positive(name, getattr(self, name))
        p.non_negative("max_retries", self.max_retries)
        return list(p)


class CompletionJudge(Protocol):
    def complete(self, prompts: list[str], *, max_tokens: int = 16,
                 temperature: float = 0.0) -> list[str | None]: ...


# --------------------------------------------------------------------------- parsing

_JSON_OBJ_RE = re.compile(r"\{[^{}]*\}", re.DOTALL)
_LINE_RE = re.compile(
    r"(?im)^[\s*#>\-\d.)]*(" + "|".join(CRITERIA) + r")\W{0,4}?\s*[:=\-]\s*\**\s*(\d+(?:\.\d+)?)")


def _valid(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if MIN_SCORE <= v <= MAX_SCORE else None


def parse_scores(reply: str | None) -> dict[str, float] | None:
    """The five criterion scores in ``reply``, or None unless all five are present and within [1, 5].

    Tries each ``{...}`` JSON object in the reply (keys compared case-insensitively), then lines such
    as ``Clarity: 4`` or ``- **depth**: 3/5``.
    """
    if not reply:
        return None
    for m in _JSON_OBJ_RE.finditer(reply):
        try:
            obj = json.loads(m.group(0))
        except json.JSONDecodeError:
            continue
        if not isinstance(obj, dict):
            continue
        lowered = {str(k).strip().lower(): v for k, v in obj.items()}
        scores = {c: _valid(lowered.get(c)) for c in CRITERIA}
        if all(v is not None for v in scores.values()):
            return scores
    found: dict[str, float | None] = {}
    for m in _LINE_RE.finditer(reply):
        found.setdefault(m.group(1).lower(), _valid(m.group(2)))
    if all(found.get(c) is not None for c in CRITERIA):
        return {c: found[c] for c in CRITERIA}
    return None


# --------------------------------------------------------------------------- evaluation


@dataclass
class JudgeEvalResult:
    """Per-item scores (None = failed) and the summary over scored items."""

    scores: list[dict[str, float] | None]
    replies: list[str | None]
    means: dict[str, float]
    stderr: dict[str, float]
    counts: dict[str, int] = field(default_factory=dict)
    """items, scored, failed (no parsable reply after the retries), empty, retries (extra calls)."""

    def summary(self) -> dict[str, Any]:
        return {"means": self.means, "stderr": self.stderr, "counts": self.counts}


def build_prompt(question: str, response: str, max_response_chars: int = 8000) -> str:
    response = response.strip()
    if len(response) > max_response_chars:
        response = response[:max_response_chars].rstrip() + " [... truncated]"
    return JUDGE_TEMPLATE.format(question=question.strip(), response=response)


def judge_responses(questions: Sequence[str], responses: Sequence[str | None], judge: CompletionJudge, *,
                    max_retries: int = 2, max_new_tokens: int = 64, retry_temperature: float = 0.7,
                    max_response_chars: int = 8000) -> JudgeEvalResult:
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
    prompts = {i: build_prompt(str(questions[i]), str(responses[i]), max_response_chars) for i in pending}
    retries = 0
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
            parsed = parse_scores(reply)
            if parsed is None:
                still.append(i)
            else:
                scores[i] = parsed
        pending = still
    if pending:
        logger.warning("judge gave no parsable scores for %d of %d response(s) after %d attempt(s)",
                       len(pending), n, max(0, max_retries) + 1)
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
    counts = {"items": n, "scored": len(done), "failed": len(pending), "empty": len(empty), "retries": retries}
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
                            dtype=config.dtype, section="judge_eval")
    if judge is None:
        return None
    return judge_responses(questions, responses, judge, max_retries=config.max_retries,
                           max_new_tokens=config.max_new_tokens, retry_temperature=config.retry_temperature,
                           max_response_chars=config.max_response_chars)


__all__ = ["CRITERIA", "JudgeEvalConfig", "JudgeEvalResult", "build_prompt",
           "judge_responses", "parse_scores", "run_judge_eval", "write_judge_outputs"]
