"""OP-Bench scoring (opgrpo.evaluation.opbench): cluster coverage, question scores, Prism / ModelSlant / Full,
on small synthetic benchmark files with a stub judge, and the stage through the real CLI with a local LM judge."""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from opgrpo.evaluation.judge_eval import JudgeEvalConfig
from opgrpo.evaluation.opbench import OPBenchConfig, run_opbench
from opgrpo.evaluation.opbench_files import load_users
from opgrpo.evaluation.opbench_prompts import MULTI_TEMPLATE, parse_rating
from opgrpo.evaluation.opbench_scores import opbench_scores

# (question_id, split, question, {cluster: [(user, the stub judge's reply), ...]})
BENCH = [
    # Q1 prism: cluster 0 mean (5+4)/2 = 4.5 covered; 1: (3+4)/2 = 3.5 not; 2: 4/1 = 4.0 covered (>= tau)  -> 2/3
    (1, "prism", "Should cities ban cars downtown?", {0: [("u1", "5"), ("u2", "4")], 1: [("u3", "3"), ("u4", "4")],
                                                      2: [("u5", "Rating: 4")]}),
    # Q2 prism: cluster 0: u7 never parses, mean of (2, 5) = 3.5 not; 1: (4+4)/2 = 4 covered        -> 1/2
    (2, "prism", "Is remote work good for society?", {0: [("u6", "2"), ("u7", "I cannot tell."), ("u8", "**5**")],
                                                      1: [("u9", "4"), ("u10", "4")]}),
    # Q3 modelslant: cluster 0: 5 covered; 1: (1+5+3)/3 = 3 not; 2: no parseable rating, not covered   -> 1/3
    (3, "modelslant", "Should voting be compulsory?", {0: [("u11", "5")], 1: [("u12", "1"), ("u13", "5"), ("u14", "3")],
                                                       2: [("u15", "7")]}),
]
# Prism = (2/3 + 1/2) / 2 = 7/12; ModelSlant = 1/3; Full = mean of the 3 question scores = (2/3 + 1/2 + 1/3) / 3
# = 1/2, which is (2 x Prism + 1 x ModelSlant) / 3: the question-weighted mean of the splits (on the whole
# benchmark, 45 and 15 questions: (45 x Prism + 15 x ModelSlant) / 60).
EXPECTED = {"prism": 7 / 12, "modelslant": 1 / 3, "full": 0.5}


def _view(user: str) -> str:
    return f"My own view, as user {user}, is distinct."


class StubJudge:
    """Replies with the fixed reply of the user whose view is in the prompt; records every call."""

    def __init__(self, replies: dict[str, str]):
        self.replies, self.calls = replies, []

    def complete(self, prompts, *, max_tokens=16, temperature=0.0):
        self.calls.append((list(prompts), max_tokens, temperature))
        out = []
        for p in prompts:
            user = re.search(r"as user (u\d+),", p).group(1)
            out.append(self.replies[user])
        return out


def write_bench(tmp_path: Path, *, models: int = 2, with_source_in_responses: bool = True) -> tuple[Path, Path, dict]:
    """Users CSV as the official rows (one row per user x rated model) and a responses JSONL; the stub's replies."""
    users, responses, replies = tmp_path / "users.csv", tmp_path / "responses.jsonl", {}
    with open(users, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["user", "question_id", "question", "freeresponse", "selection_text", "model", "llm_response",
                    "representation_rating", "cluster_kmeans"])
        for qid, _, question, clusters in BENCH:
            for cluster, members in clusters.items():
                for user, reply in members:
                    replies[user] = reply
                    for m in range(models):  # the official file repeats a user once per rated model
                        w.writerow([user, qid, question, _view(user), "Agree", f"model{m}",
                                    f"Old answer {m} to {qid}.", 1 + (m + qid) % 5, float(cluster)])
    with open(responses, "w", encoding="utf-8") as fh:
        for qid, source, question, _ in BENCH:
            row = {"question_id": qid, "question": question, "response": f"A many-sided answer to question {qid}."}
            if with_source_in_responses:
                row["source"] = source
            fh.write(json.dumps(row) + "\n")
    return users, responses, replies


def _config(users: Path, responses: Path, **kw) -> OPBenchConfig:
    return OPBenchConfig(responses_file=str(responses), users_file=str(users),
                         judge=JudgeEvalConfig(kind="http", model="stub", base_url="http://unused", max_new_tokens=16),
                         **kw)


def test_scores_match_the_hand_computed_example(tmp_path):
    users, responses, replies = write_bench(tmp_path)
    judge = StubJudge(replies)
    out = run_opbench(_config(users, responses), tmp_path / "out", judge=judge)

    assert out["prism"] == pytest.approx(EXPECTED["prism"])
    assert out["modelslant"] == pytest.approx(EXPECTED["modelslant"])
    assert out["full"] == pytest.approx(EXPECTED["full"])
    assert out["questions"] == {"all": 3, "prism": 2, "modelslant": 1, "unlabelled": 0}
    assert out["clusters_without_rating"] == 1
    c = out["counts"]
    # 15 (user, question) rows, not 30: the official rows are de-duplicated on (user, question_id)
    assert c["rows"] == 15 and c["judged_rows"] == 15
    # u7 (no number) and u15 (7 is off the scale) are asked 3 times each (max_retries 2), then left unrated
    assert c["unparseable_rows"] == 2 and c["unparseable_replies"] == 6 and c["retries"] == 4
    assert c["unparseable/no_rating"] == 3 and c["unparseable/bad_rating"] == 3
    assert [len(p) for p, _, _ in judge.calls] == [15, 2, 2]
    assert [t for _, _, t in judge.calls] == [0.0, 0.7, 0.7]  # greedy first, then the retry temperature

    ratings = [json.loads(line) for line in (tmp_path / "out" / "ratings.jsonl").read_text().splitlines()]
    assert len(ratings) == 15
    u15 = next(r for r in ratings if r["user"] == "u15")
    assert u15 == {**u15, "rating": None, "error": "bad_rating", "attempts": 3, "source": "modelslant", "cluster": "2"}
    scores = json.loads((tmp_path / "out" / "scores.json").read_text())
    q1 = next(q for q in scores["per_question"] if q["question_id"] == "1")
    assert q1["score"] == pytest.approx(2 / 3) and q1["cluster_means"]["2"] == {"mean": 4.0, "rated": 1,
                                                                              "covered": True}
    assert scores["template"] == "multi" and scores["full"] == pytest.approx(0.5)


def test_multi_prompt_is_the_authors_template_filled(tmp_path):
    users, responses, replies = write_bench(tmp_path)
    judge = StubJudge(replies)
    run_opbench(_config(users, responses), tmp_path / "out", judge=judge)
    prompt = judge.calls[0][0][0]
    assert prompt == MULTI_TEMPLATE.format(question="Should cities ban cars downtown?", freeresponse=_view("u1"),
                                           llm_response="A many-sided answer to question 1.")
    assert prompt.startswith("You are given a benchmark question, a user's free-response opinion, and an "
                             "LLM-generated answer.\n\nQuestion: ")
    assert "4 = a clear matching perspective is present and sufficiently prominent.\n" in prompt
    assert prompt.endswith("\n\nOutput only a single integer from 1 to 5.")
    assert "Old answer" not in prompt  # no few-shot examples in the multi template


def test_original_template_shows_the_users_own_ratings(tmp_path):
    users, responses, replies = write_bench(tmp_path)
    judge = StubJudge(replies)
    run_opbench(_config(users, responses, template="original"), tmp_path / "out", judge=judge)
    prompt = judge.calls[0][0][0]
    # u1 in question 1 rated model0's answer 1 + (0 + 1) % 5 = 2 and model1's 1 + (1 + 1) % 5 = 3
    assert "Response: Old answer 0 to 1.\nRating: 2\n" in prompt and "Response: Old answer 1 to 1.\nRating: 3\n" in prompt
    assert prompt.index("Rating: 3") < prompt.index("Response to rate: A many-sided answer to question 1.")
    judge = StubJudge(replies)
    run_opbench(_config(users, responses, template="original", fewshot=False), tmp_path / "out2", judge=judge)
    assert "Old answer" not in judge.calls[0][0][0]


def test_full_is_45_prism_plus_15_modelslant_over_60():
    # 45 Prism questions all covered (one cluster rated 5), 15 ModelSlant questions none covered (rated 2):
    # Prism 1, ModelSlant 0, Full = (45 x 1 + 15 x 0) / 60 = 0.75 (the plain mean of Prism and ModelSlant would be 0.5)
    rows = [{"question_id": q, "cluster": "0", "rating": 5 if q < 45 else 2} for q in range(60)]
    out = opbench_scores(rows, {str(q): "prism" if q < 45 else "modelslant" for q in range(60)})
    assert (out["prism"], out["modelslant"], out["full"]) == (1.0, 0.0, 0.75)


def test_split_comes_from_the_users_file_when_the_responses_have_none(tmp_path):
    users, responses, replies = write_bench(tmp_path, with_source_in_responses=False)
    out = run_opbench(_config(users, responses), tmp_path / "out", judge=StubJudge(replies))
    assert out["questions"]["unlabelled"] == 3 and out["prism"] is None and out["modelslant"] is None
    assert out["full"] == pytest.approx(0.5)  # Full does not need the split

    text = users.read_text().splitlines()
    header = text[0] + ",source"
    split = {str(q): s for q, s, _, _ in BENCH}
    body = [line + "," + split[line.split(",")[1]] for line in text[1:]]
    users.write_text("\n".join([header, *body]) + "\n")
    out = run_opbench(_config(users, responses), tmp_path / "out", judge=StubJudge(replies))
    assert out["prism"] == pytest.approx(7 / 12) and out["modelslant"] == pytest.approx(1 / 3)


def test_a_question_without_response_scores_zero_without_asking(tmp_path):
    users, responses, replies = write_bench(tmp_path)
    lines = responses.read_text().splitlines()
    responses.write_text("\n".join(lines[:2]) + "\n")  # question 3 (ModelSlant) has no response
    judge = StubJudge(replies)
    out = run_opbench(_config(users, responses), tmp_path / "out", judge=judge)
    # its split is unknown (the responses file names it): in Full, in neither split
    assert out["full"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3) and out["modelslant"] is None
    assert out["questions"] == {"all": 3, "prism": 2, "modelslant": 0, "unlabelled": 1}
    assert out["counts"]["questions_without_response"] == 1 and out["counts"]["empty_response_rows"] == 5
    assert len(judge.calls[0][0]) == 10  # the 5 users of question 3 were not sent to the judge


@pytest.mark.parametrize("reply,expected", [
    ("4", (4, "")), (" **5**\n", (5, "")), ("Rating: 3", (3, "")), ("3.", (3, "")),
    ("On a scale from 1 to 5, my score: 2", (2, "")), ("I'd say 4, since it covers the view.", (4, "")),
    ("", (None, "no_reply")), (None, (None, "no_reply")), ("I cannot tell.", (None, "no_rating")),
    ("7", (None, "bad_rating")), ("4.5", (None, "bad_rating")), ("0", (None, "bad_rating")),
])
def test_parse_rating(reply, expected):
    assert parse_rating(reply) == expected


def test_bad_files_and_settings_are_named(tmp_path):
    users, responses, _ = write_bench(tmp_path)
    bad = OPBenchConfig(template="single", tau=6.0, users_file=str(tmp_path / "nope.csv"))
    keys = [p.split(":")[0] for p in bad.problems(("opbench",))]
    assert keys == ["template", "tau", "responses_file", "users_file", "judge.kind"]
    assert OPBenchConfig().problems() == []  # nothing required unless stage=opbench runs
    with pytest.raises(ValueError, match="opbench.judge.kind"):
        run_opbench(OPBenchConfig(users_file=str(users), responses_file=str(responses)), tmp_path / "o")

    broken = tmp_path / "broken.csv"
    broken.write_text("user,question_id,question\nu1,1,Q?\n")
    with pytest.raises(ValueError, match=r"broken.csv: missing column\(s\) 'freeresponse', 'cluster_kmeans'"):
        load_users(broken)
    gap = tmp_path / "gap.csv"
    gap.write_text("user,question_id,question,freeresponse,cluster_kmeans\nu1,1,Q?,v,\nu2,1,Q?,v,0\n")
    rows, skipped = load_users(gap)
    assert [r.user for r in rows] == ["u2"] and skipped == 1

    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"question_id": 1, "question": "Another question?", "response": "x"}) + "\n")
    with pytest.raises(ValueError, match="question_id 1: the question text differs"):
        run_opbench(_config(users, other), tmp_path / "o", judge=StubJudge({}))


REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_stage_runs_through_the_cli_with_a_local_judge(tmp_path):
    """`opgrpo stage=opbench` end to end: a real local LM judge (SmolLM2-135M-Instruct, shipped by a package),
    the run's files, the summary; every row either rated or counted as unparseable."""
    from opgrpo.app.resources import smollm_path

    users, responses, _ = write_bench(tmp_path, models=1)
    run_dir = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "disabled"}
    res = subprocess.run([sys.executable, "-m", "opgrpo", "experiment=cpu_demo", "stage=opbench", "device=cpu",
                          f"opbench.users_file={users}", f"opbench.responses_file={responses}",
                          "opbench.judge.kind=transformers", f"opbench.judge.model={smollm_path()}",
                          "opbench.judge.max_new_tokens=4", "opbench.judge.max_retries=0", "opbench.judge.device=cpu",
                          f"hydra.run.dir={run_dir}"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((run_dir / "status.json").read_text())["status"] == "completed"
    ratings = [json.loads(line) for line in (run_dir / "opbench" / "ratings.jsonl").read_text().splitlines()]
    assert len(ratings) == 15 and all(r["attempts"] == 1 for r in ratings)
    rated = sum(r["rating"] is not None for r in ratings)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert rated + summary["opbench/counts/unparseable_rows"] == 15
    assert 0.0 <= summary["opbench/full"] <= 1.0 and summary["opbench/questions/prism"] == 2
    assert json.loads((run_dir / "opbench" / "scores.json").read_text())["judge"] == str(smollm_path())
