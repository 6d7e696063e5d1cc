"""Judge evaluation: reply parsing, retries and failure counts with a scripted judge; the local backend."""
import json
import math

import pytest

from opgrpo.evaluation.judge_eval import (
    CRITERIA,
    JUDGE_SYSTEM,
    JUDGE_TEMPLATE,
    JudgeEvalConfig,
    build_prompt,
    judge_responses,
    parse_judge_reply,
    parse_scores,
    run_judge_eval,
    write_judge_outputs,
)
from opgrpo.judges import JudgeUnavailable, LocalChatJudge, build_judge

GOOD = '{"helpfulness": 4, "clarity": 5, "factuality": 3, "depth": 2, "engagement": 4}'
NESTED = """{
  "helpfulness": {"reason": "useful", "score": "4"},
  "clarity": {"reason": "clear", "score": 5},
  "factuality": {"reason": "mostly right", "score": "3"},
  "depth": {"reason": "deep enough", "score": "2"},
  "engagement": {"reason": "fine", "score": "4"}
}"""

# copied verbatim from fuyu12345/OPRL-LLM benchmark_new/llm_eval/gpt.py (USER_TEMPLATE)
AUTHORS_USER_TEMPLATE = """Please act as an impartial judge and evaluate the quality of
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


class ScriptedJudge:
    """Replies from a script keyed by (response marker, attempt number); records every call."""

    def __init__(self, script):
        self.script = script
        self.calls = []  # (prompts, temperature)
        self.attempts = {}

    def complete(self, prompts, *, max_tokens=16, temperature=0.0):
        self.calls.append((list(prompts), temperature, max_tokens))
        out = []
        for p in prompts:
            key = next(k for k in self.script if f"<<{k}>>" in p)
            n = self.attempts.get(key, 0)
            self.attempts[key] = n + 1
            replies = self.script[key]
            out.append(replies[min(n, len(replies) - 1)])
        return out


def test_parse_scores_json_and_lines():
    # the authors' nested form, bare, fenced, and with prose around it; "4" and 4 are both scores
    scores = {"helpfulness": 4, "clarity": 5, "factuality": 3, "depth": 2, "engagement": 4}
    assert parse_scores(NESTED) == scores
    assert parse_scores("```json\n" + NESTED + "\n```") == scores
    assert parse_scores("Here you go:\n" + NESTED + "\nThanks.") == scores
    assert parse_scores(GOOD) == scores  # the flat form is read too
    assert parse_scores('{"Helpfulness": "5", "CLARITY": 4.0, "factuality": 1, "depth": 1, "engagement": 2}') == {
        "helpfulness": 5, "clarity": 4, "factuality": 1, "depth": 1, "engagement": 2}
    # broken replies: unparseable, each with its reason
    cases = {
        None: "no_reply", "   ": "no_reply",
        "1. **Helpfulness**: 4/5\n- clarity = 3": "no_json",              # lines are not the authors' JSON
        '```json\n{"helpfulness": {"reason": "ok", "score": 4},\n```': "invalid_json",  # cut off mid-object
        '{"helpfulness": 4, "clarity": 5, "factuality": 3, "depth": 2}': "missing_aspect",
        NESTED.replace('"reason": "deep enough", "score": "2"', '"reason": "deep enough"'): "missing_aspect",
        NESTED.replace('"score": "2"', '"score": "[score from 1 to 5]"'): "bad_score",  # the template echoed
        NESTED.replace('"score": "2"', '"score": 6'): "bad_score",
        NESTED.replace('"score": "2"', '"score": 4.5'): "bad_score",
        "[1, 2, 3]": "no_json",
    }
    for reply, reason in cases.items():
        parsed = parse_judge_reply(reply)
        assert parsed.scores is None and parsed.error == reason, (reply, parsed)
        assert parse_scores(reply) is None
    parsed = parse_judge_reply(NESTED)
    assert parsed.error == "" and parsed.reasons["depth"] == "deep enough" and parsed.reasons["clarity"] == "clear"


def test_judge_template_is_the_authors_verbatim():
    assert JUDGE_TEMPLATE == AUTHORS_USER_TEMPLATE
    assert JUDGE_SYSTEM == "You are a strict JSON grader. Only return valid JSON per the provided schema."
    prompt = build_prompt("  Eating meat ", " A response. ")
    assert prompt == AUTHORS_USER_TEMPLATE.format(situation="Eating meat", response="A response.")
    assert prompt.startswith("Please act as an impartial judge") and "## Query:\nEating meat\n## Output:\nA response.\n"\
        in prompt
    cut = build_prompt("q" * 4001, "r" * 12001)
    assert "q" * 4000 + " ...[TRUNCATED]\n## Output:\n" + "r" * 12000 + " ...[TRUNCATED]\n## Evaluate" in cut


def test_judge_responses_retries_then_counts_failures(caplog):
    judge = ScriptedJudge({
        "ok": [GOOD],
        "late": ["I think it is fine.",
                 '```json\n{"clarity": 2, "helpfulness": 2, "factuality": 2, "depth": 2, "engagement": 3}\n```'],
        "never": ["no idea", None, "still nothing"],
    })
    responses = ["<<ok>> a response", "<<late>> another", "   ", "<<never>> bad"]
    result = judge_responses(["q1", "q2", "q3", "q4"], responses, judge, max_retries=2, max_new_tokens=50,
                             retry_temperature=0.9)
    assert [len(c[0]) for c in judge.calls] == [3, 2, 1]  # empty response never sent; only failures retried
    assert [c[1] for c in judge.calls] == [0.0, 0.9, 0.9] and judge.calls[0][2] == 50
    assert judge.attempts == {"ok": 1, "late": 2, "never": 3}
    assert result.scores[0] == {"helpfulness": 4, "clarity": 5, "factuality": 3, "depth": 2, "engagement": 4}
    assert result.scores[1]["engagement"] == 3
    assert result.scores[2] == {c: 1.0 for c in CRITERIA}  # empty response: the scale minimum
    assert result.scores[3] is None and result.replies[3] == "still nothing"
    # unparseable replies: "I think it is fine." (no_json), "no idea" (no_json), None (no_reply), "still nothing"
    assert result.counts == {"items": 4, "scored": 3, "failed": 1, "empty": 1, "retries": 3,
                             "unparseable_replies": 4, "unparseable/no_reply": 1, "unparseable/no_json": 3,
                             "unparseable/invalid_json": 0, "unparseable/missing_aspect": 0,
                             "unparseable/bad_score": 0}
    assert result.means["helpfulness"] == pytest.approx((4 + 2 + 1) / 3)
    assert result.means["engagement"] == pytest.approx((4 + 3 + 1) / 3)
    # sample std of (4, 2, 1) = sqrt(7/3); stderr = that / sqrt(3)
    assert result.stderr["helpfulness"] == pytest.approx(math.sqrt(7 / 3) / math.sqrt(3))
    assert "q1" in judge.calls[0][0][0] and "a response" in judge.calls[0][0][0]


def test_judge_responses_without_retries_and_outputs(tmp_path):
    judge = ScriptedJudge({"late": ["nope", GOOD]})
    result = judge_responses(["q"], ["<<late>> x"], judge, max_retries=0)
    assert result.counts["failed"] == 1 and result.counts["retries"] == 0 and math.isnan(result.means["depth"])
    paths = write_judge_outputs(tmp_path, result, ids=["item-7"])
    summary = json.loads(paths["metrics_json"].read_text())
    assert summary["means"]["depth"] is None and summary["counts"]["failed"] == 1
    assert json.loads(paths["items_jsonl"].read_text()) == {"id": "item-7", "scores": None, "reply": "nope"}
    with pytest.raises(ValueError, match="1 questions but 2 responses"):
        judge_responses(["q"], ["a", "b"], judge)


def test_long_responses_are_cut_in_the_prompt():
    judge = ScriptedJudge({"x": [GOOD]})
    judge_responses(["q"], ["<<x>>" + "y" * 500], judge, max_response_chars=100)
    prompt = judge.calls[0][0][0]
    assert "y" * 95 in prompt and "y" * 96 not in prompt and "y ...[TRUNCATED]\n## Evaluate" in prompt


def test_run_judge_eval_builds_the_judge_of_its_config():
    assert run_judge_eval(JudgeEvalConfig(), ["q"], ["r"]) is None
    with pytest.raises(ValueError, match="judge_eval.model"):
        run_judge_eval(JudgeEvalConfig(kind="transformers"), ["q"], ["r"])
    with pytest.raises(ValueError, match="judge_eval.kind"):
        run_judge_eval(JudgeEvalConfig(kind="gpt", model="m"), ["q"], ["r"])
    with pytest.raises(JudgeUnavailable, match="unreachable"):
        run_judge_eval(JudgeEvalConfig(kind="http", model="m", base_url="http://127.0.0.1:9/v1", timeout=2.0),
                       ["q"], ["r"])


def test_local_judge_generates_batched_like_unbatched(tmp_path, tiny_lm):
    path = tiny_lm
    cfg = JudgeEvalConfig(kind="transformers", model=str(path), device="cpu", batch_size=2, max_new_tokens=6,
                          max_retries=1)
    judge = build_judge(cfg.kind, purpose="chat", model=cfg.model, device=cfg.device, batch_size=cfg.batch_size)
    assert isinstance(judge, LocalChatJudge)
    prompts = ["Rate this.", "A much longer prompt to rate, with several more words in it.", "Short"]
    batched = judge.complete(prompts, max_tokens=6)
    single = [judge.complete([p], max_tokens=6)[0] for p in prompts]
    assert batched == single and all(isinstance(r, str) and r for r in batched)
    # a random model never answers in the format: every item fails after 1 retry
    result = run_judge_eval(cfg, ["q1", "q2"], ["r1", "r2"], judge=judge)
    assert {k: result.counts[k] for k in ("items", "scored", "failed", "empty", "retries", "unparseable_replies")} \
        == {"items": 2, "scored": 0, "failed": 2, "empty": 0, "retries": 2, "unparseable_replies": 4}
