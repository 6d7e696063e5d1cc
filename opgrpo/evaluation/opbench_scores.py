"""OP-Bench scores from rated rows (opgrpo.evaluation.opbench): per question and opinion cluster the mean rating, a
cluster covered when that mean >= tau, the question score the share of covered clusters, and Prism, ModelSlant and
Full the mean question score over their questions (the authors' README; the unweighted OvertonScores).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from opgrpo.evaluation.opbench_files import SOURCES


def opbench_scores(ratings: Sequence[Mapping[str, Any]], sources: Mapping[str, str], *,
                   tau: float = 4.0) -> dict[str, Any]:
    """OP-Bench scores from rated rows (``question_id``, ``cluster``, ``rating``: a number or None = unparseable)
    and each question's split (``sources``: question_id -> prism / modelslant / anything else = unlabelled).

    Cluster mean = mean of its parseable ratings (a cluster with none is not covered); covered when mean >= tau;
    question score = covered clusters / clusters; Prism, ModelSlant = mean question score over their questions
    (None when a split has no question); Full = mean over all questions (the question-weighted mean of the
    splits: (45 x Prism + 15 x ModelSlant) / 60 on the whole benchmark)."""
    by_q: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in ratings:
        ratings_of = by_q[str(r["question_id"])][str(r["cluster"])]
        if r.get("rating") is not None:
            ratings_of.append(float(r["rating"]))
    per_question = []
    for qid, clusters in by_q.items():
        info = {}
        for c in sorted(clusters, key=lambda c: (len(c), c)):
            vals = clusters[c]
            mean = sum(vals) / len(vals) if vals else None
            info[c] = {"mean": mean, "rated": len(vals), "covered": mean is not None and mean >= tau}
        covered = sum(v["covered"] for v in info.values())
        per_question.append({"question_id": qid, "source": sources.get(qid, ""), "score": covered / len(info),
                             "covered": covered, "clusters": len(info), "cluster_means": info})
    split: dict[str, list[float]] = {s: [q["score"] for q in per_question if q["source"] == s] for s in SOURCES}
    scores = [q["score"] for q in per_question]
    out: dict[str, Any] = {
        "full": sum(scores) / len(scores) if scores else None,
        **{s: (sum(v) / len(v) if v else None) for s, v in split.items()},
        "tau": tau,
        "questions": {"all": len(per_question), **{s: len(v) for s, v in split.items()},
                      "unlabelled": sum(q["source"] not in SOURCES for q in per_question)},
        "clusters_without_rating": sum(v["mean"] is None for q in per_question for v in q["cluster_means"].values()),
        "per_question": per_question,
    }
    return out
