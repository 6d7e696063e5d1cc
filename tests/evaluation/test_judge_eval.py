"""Judge evaluation: reply parsing, retries and failure counts with a scripted judge; the local backend."""
import json
import math

import pytest

from opgrpo.evaluation.judge_eval import (
    CRITERIA,
    JudgeEvalConfig,
    judge_responses,
    parse_scores,
    run_judge_eval,
    write_judge_outputs,
)
from opgrpo.judges import JudgeUnavailable, LocalChatJudge, build_judge

GOOD = '{"helpfulness": 4, "clarity": 5, "factuality": 3, "depth": 2, "engagement": 4}'


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
    assert parse_scores("Here you go: " + GOOD) == {"helpfulness": 4, "clarity": 5, "factuality": 3, "depth": 2,
                                                    "engagement": 4}
    assert parse_scores('{"Helpfulness": "5", "CLARITY": 4.5, "factuality": 1, "depth": 1, "engagement": 2}') == {
        "helpfulness": 5, "clarity": 4.5, "factuality": 1, "depth": 1, "engagement": 2}
    lines = "1. **Helpfulness**: 4/5\n- clarity = 3\nFactuality - 5\n### Depth: 2\nEngagement:4"
    assert parse_scores(lines) == {"helpfulness": 4, "clarity": 3, "factuality": 5, "depth": 2, "engagement": 4}
    assert parse_scores('{"helpfulness": 4, "clarity": 5, "factuality": 3, "depth": 2}') is None  # one missing
    assert parse_scores('{"helpfulness": 6, "clarity": 5, "factuality": 3, "depth": 2, "engagement": 1}') is None
    assert parse_scores("helpfulness: 0\nclarity: 3\nfactuality: 3\ndepth: 3\nengagement: 3") is None
    assert parse_scores('{"helpfulness": <score>, "clarity": <score>}') is None  # the prompt's own placeholder
    assert parse_scores("") is None and parse_scores(None) is None


def test_judge_responses_retries_then_counts_failures(caplog):
    judge = ScriptedJudge({
        "ok": [GOOD],
        "late": ["I think it is fine.", "clarity: 2\nhelpfulness: 2\nfactuality: 2\ndepth: 2\nengagement: 3"],
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
    assert result.counts == {"items": 4, "scored": 3, "failed": 1, "empty": 1, "retries": 3}
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
    assert "y" * 95 in prompt and "y" * 96 not in prompt and "[... truncated]" in prompt


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
    assert result.counts == {"items": 2, "scored": 0, "failed": 2, "empty": 0, "retries": 2}
