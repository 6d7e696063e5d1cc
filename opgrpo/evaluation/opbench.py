"""OP-Bench (OvertonBench, Poole-Dayan et al. 2025) scoring of one response per benchmark question, as the
authors' ``benchmark_new/op_bench_pipeline`` runs it.

Inputs: a responses file (one row per question: ``question_id``, ``response``, and ``source`` = ``prism`` or
``modelslant``, the column the authors' ``build_benchmark_csv.py`` splits by; optional ``question``, checked
against the benchmark's text as ``prepare_judge_rows.py`` does) and a local copy of the benchmark's user rows
(``elinorpd/overtonbench``, split ``full``; CSV/TSV/JSONL/JSON/parquet with ``user``, ``question_id``,
``question``, ``freeresponse`` (the user's own view) and the cluster column ``cluster_kmeans``; a ``source``
column there is used for questions the responses file does not label). Rows are de-duplicated on
(user, question_id) as the authors do; the official file repeats each user once per rated model.

Judging: each (user, question) row is sent to a chat judge (``opgrpo.judges.build_judge``: a local LM or an
OpenAI-compatible endpoint, configured as ``eval.judge``) with one of two templates:

- ``multi``: the authors' modified multi-perspective judge prompt (``PROMPT_TEMPLATES.md``), verbatim;
- ``original``: the original OP-Bench criterion (would this user feel the whole response represents their view).
  The authors run OvertonBench's own prompt (``--prompt fs+fr``, few-shot from the user's ratings of other
  responses) in the OvertonBench repository; that prompt text is not in the authors' repository, so the text
  here is the project's, written from their summary, and labelled so. With ``fewshot`` and a users file that
  has ``llm_response`` and ``representation_rating`` (the official rows do), the user's own ratings of the
  other responses are shown. ``template_file`` replaces either text, e.g. with OvertonBench's prompt.

A reply is read as a rating 1-5 (:func:`parse_rating`); an unparseable reply is asked again (``max_retries``,
at ``retry_temperature``) and then left out of its cluster's mean (as pandas' ``to_numeric(errors="coerce")``
and a NaN-skipping mean do), counted in ``unparseable_rows``. An empty or missing response is rated 1
without asking (counted).

Scores (:func:`opbench_scores`, the authors' README): per question and cluster the mean rating over the
cluster's users; a cluster is covered when that mean >= ``tau`` (4); the question score is the share of
covered clusters; Prism and ModelSlant are the mean question score over their questions, and Full is the mean
over all questions, i.e. (n_prism x Prism + n_modelslant x ModelSlant) / (n_prism + n_modelslant), which on
the whole benchmark is (45 x Prism + 15 x ModelSlant) / 60. OvertonBench's scoring script also has a
``--weighted`` variant (the authors pass it); its weighting is not defined in the authors' repository and is
not reproduced: these are the unweighted OvertonScores.

This module holds the settings (``OPBenchConfig``), the judging of the rows (:func:`judge_rows`) and the stage
(:func:`run_opbench`); the parts: ``opgrpo.evaluation.opbench_files`` reads the files,
``opgrpo.evaluation.opbench_prompts`` holds the templates and reads the replies, ``opgrpo.evaluation.opbench_scores``
computes the scores.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from opgrpo.evaluation.judge_eval import JudgeEvalConfig
from opgrpo.evaluation.opbench_files import (
    SOURCES,
    SUFFIXES,
    UserRow,
    load_opbench_responses,
    load_users,
)
from opgrpo.evaluation.opbench_prompts import (
    MAX_RATING,
    MIN_RATING,
    MULTI_TEMPLATE,
    ORIGINAL_TEMPLATE,
    PLACEHOLDER,
    UNPARSEABLE_REASONS,
    clip_text,
    examples_text,
    fill_template,
    parse_rating,
)
from opgrpo.evaluation.opbench_scores import opbench_scores
from opgrpo.utils.checks import Problems
from opgrpo.utils.redact import redact_obj

__all__ = ["BENCHMARK_QUESTIONS", "TEMPLATES", "OPBenchConfig", "judge_rows", "run_opbench"]

logger = logging.getLogger(__name__)

TEMPLATES = ("original", "multi")
BENCHMARK_QUESTIONS = {"prism": 45, "modelslant": 15}
"""Questions per split in OvertonBench (60 in all)."""


@dataclass
class OPBenchConfig:
    """OP-Bench (OvertonBench) scoring of one response per question (``stage=opbench``)."""

    responses_file: str = ""
    """The policy's responses (CSV/TSV/JSONL/JSON): ``question_id``, ``response``, ``source`` (prism or modelslant:
    the split, as the authors' responses CSV) and optionally ``question`` (must match the benchmark's text)."""
    users_file: str = ""
    """Local copy of the benchmark's user rows (``elinorpd/overtonbench`` split full, CSV/TSV/JSONL/JSON/parquet):
    ``user``, ``question_id``, ``question``, ``freeresponse`` and the cluster column."""
    template: str = "multi"
    """Judge prompt: ``multi`` (the authors' multi-perspective template, verbatim; an adjusted setting) or
    ``original`` (the original OP-Bench criterion in the project's words, see opgrpo.evaluation.opbench)."""
    template_file: str = ""
    """A text file that replaces the template's text (e.g. OvertonBench's own prompt), with the placeholders
    {question}, {freeresponse}, {llm_response} and optionally {examples}, {selection_text}."""
    fewshot: bool = True
    """``original``: show the user's own ratings of other responses ({examples}) when the users file has
    ``llm_response`` and ``representation_rating`` (the official rows do)."""
    tau: float = 4.0
    """A cluster is covered when its users' mean rating is >= tau (OP-Bench: 4)."""
    cluster_column: str = "cluster_kmeans"
    """Users-file column with each user's opinion cluster (the authors' ``--cluster_col``)."""
    source_column: str = "source"
    """Column with the question's split (prism / modelslant), in the responses file, else the users file."""
    judge: JudgeEvalConfig = field(default_factory=lambda: JudgeEvalConfig(max_new_tokens=16))
    """The judge, configured as ``eval.judge`` (kind transformers or http, model, base_url, ...); its
    ``max_new_tokens`` defaults to 16 here (the reply is one integer)."""

    def problems(self, stages: Sequence[str] = ()) -> list[str]:
        """Invalid settings (keys relative to ``opbench``); with ``opbench`` in ``stages`` also missing files and
        a missing judge."""
        p = Problems()
        p.choice("template", self.template, TEMPLATES)
        if p.finite("tau", self.tau) and not MIN_RATING <= self.tau <= MAX_RATING:
            p.add("tau", f"must be in [{MIN_RATING}, {MAX_RATING}] (the rating scale), got {self.tau}")
        for key in ("cluster_column", "source_column"):
            if not str(getattr(self, key)).strip():
                p.add(key, "must name a column")
        p.extend_from("judge.", self.judge.problems())
        if "opbench" not in stages:
            return list(p)
        for key in ("responses_file", "users_file"):
            ref = getattr(self, key)
            if not ref:
                p.add(key, "required by stage=opbench")
            elif not Path(ref).expanduser().is_file():
                p.add(key, f"no such file {ref!r}")
            elif Path(ref).suffix.lower() not in SUFFIXES:
                p.add(key, f"unknown file type {Path(ref).suffix!r}; expected {', '.join(SUFFIXES)}")
        if self.template_file:
            path = Path(self.template_file).expanduser()
            if not path.is_file():
                p.add("template_file", f"no such file {self.template_file!r}")
            else:
                found = set(PLACEHOLDER.findall(path.read_text(encoding="utf-8")))
                missing = [f"{{{k}}}" for k in ("freeresponse", "llm_response") if k not in found]
                if missing:
                    p.add("template_file", f"has no {' and no '.join(missing)} placeholder")
        if self.judge.kind == "none":
            p.add("judge.kind", "stage=opbench needs a judge: transformers (a local LM) or http (an OpenAI-compatible "
                                "endpoint), with opbench.judge.model")
        return list(p)

    def validate(self, stages: Sequence[str] = ("opbench",)) -> OPBenchConfig:
        from opgrpo.utils.checks import ConfigProblemsError

        problems = self.problems(stages)
        if problems:
            raise ConfigProblemsError([f"opbench.{q}" for q in problems])
        return self

    def template_text(self) -> str:
        if self.template_file:
            return Path(self.template_file).expanduser().read_text(encoding="utf-8")
        return MULTI_TEMPLATE if self.template == "multi" else ORIGINAL_TEMPLATE



# --------------------------------------------------------------------------- judging the rows


def judge_rows(rows: Sequence[UserRow], responses: Mapping[str, str], judge: Any, config: OPBenchConfig
               ) -> tuple[list[dict[str, Any]], Counter]:
    """Rate every row's question's response for its user (one record per row: rating or None, the last reply,
    attempts, error) and count what happened (``unparseable/<reason>`` over every reply, retries, empty)."""
    template = config.template_text()
    fewshot = config.fewshot and config.template == "original"
    j = config.judge
    records: list[dict[str, Any]] = []
    prompts: dict[int, str] = {}
    counts: Counter = Counter({"empty_response_rows": 0, "retries": 0,
                               **{f"unparseable/{k}": 0 for k in UNPARSEABLE_REASONS}})
    for i, row in enumerate(rows):
        response = (responses.get(row.question_id) or "").strip()
        records.append({"question_id": row.question_id, "user": row.user, "cluster": row.cluster, "rating": None,
                        "reply": None, "attempts": 0, "error": ""})
        if not response:
            records[i].update(rating=MIN_RATING, error="empty_response")
            counts["empty_response_rows"] += 1
            continue
        prompts[i] = fill_template(template, question=clip_text(row.question, j.max_question_chars),
                                   freeresponse=row.freeresponse, selection_text=row.selection_text,
                                   llm_response=clip_text(response, j.max_response_chars),
                                   examples=examples_text(row.examples) if fewshot else "")
    pending = list(prompts)
    for attempt in range(max(0, j.max_retries) + 1):
        if not pending:
            break
        counts["retries"] += len(pending) if attempt else 0
        replies = judge.complete([prompts[i] for i in pending], max_tokens=j.max_new_tokens,
                                 temperature=0.0 if attempt == 0 else j.retry_temperature)
        still = []
        for i, reply in zip(pending, replies):
            rating, why = parse_rating(reply)
            records[i].update(reply=reply, attempts=attempt + 1, rating=rating, error=why)
            if rating is None:
                counts[f"unparseable/{why}"] += 1
                still.append(i)
        pending = still
    counts["judged_rows"] = len(prompts)
    counts["unparseable_rows"] = len(pending)
    counts["unparseable_replies"] = sum(counts[f"unparseable/{k}"] for k in UNPARSEABLE_REASONS)
    if pending:
        logger.warning("OP-Bench judge: %d of %d row(s) without a parseable rating after %d attempt(s) (%s); left "
                       "out of their cluster's mean", len(pending), len(prompts), max(0, j.max_retries) + 1,
                       ", ".join(f"{k}={counts[f'unparseable/{k}']}" for k in UNPARSEABLE_REASONS))
    return records, counts



# --------------------------------------------------------------------------- the stage


def run_opbench(config: OPBenchConfig, out_dir: str | Path, judge: Any = None) -> dict[str, Any]:
    """Read the files, judge every (user, question) row, score; write ``ratings.jsonl`` and ``scores.json`` in
    ``out_dir`` and return the summary (scores, counts; no per-question detail). ``judge``: anything with
    ``complete(prompts, *, max_tokens, temperature)``; None = built from ``config.judge``."""
    config.validate(("opbench",))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, skipped = load_users(config.users_file, cluster_column=config.cluster_column,
                               source_column=config.source_column)
    responses = load_opbench_responses(config.responses_file, source_column=config.source_column)
    questions = {r.question_id: r for r in rows}
    for qid, resp in responses.items():
        known = questions.get(qid)
        if known is not None and resp["question"] and resp["question"].strip() != known.question.strip():
            raise ValueError(f"{config.responses_file}: question_id {qid}: the question text differs from the users "
                             f"file's ({resp['question'][:80]!r} vs {known.question[:80]!r}); responses for another "
                             "question set?")
    sources: dict[str, str] = {}
    for qid, row in questions.items():
        given = responses.get(qid, {}).get("source", "")
        if given and row.source and given != row.source:
            raise ValueError(f"question_id {qid}: split {given!r} in {config.responses_file} but {row.source!r} in "
                             f"{config.users_file}")
        sources[qid] = given or row.source
    missing = sorted(set(questions) - set(responses), key=lambda q: (len(q), q))
    if missing:
        logger.warning("OP-Bench: %d question(s) without a response (rated %d for every user): %s", len(missing),
                       MIN_RATING, ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))
    if judge is None:
        from opgrpo.judges import build_judge

        j = config.judge
        judge = build_judge(j.kind, purpose="chat", model=j.model, base_url=j.base_url, api_key_env=j.api_key_env,
                            timeout=j.timeout, max_retries=j.max_retries, batch_size=j.batch_size,
                            max_length=j.max_length, device=j.device, dtype=j.dtype, system_prompt="",
                            section="opbench.judge")
    records, counts = judge_rows(rows, {q: r["response"] for q, r in responses.items()}, judge, config)
    for rec in records:
        rec["source"] = sources[rec["question_id"]]
    scores = opbench_scores(records, sources, tau=config.tau)
    n = scores["questions"]
    if (n["prism"], n["modelslant"]) != (BENCHMARK_QUESTIONS["prism"], BENCHMARK_QUESTIONS["modelslant"]):
        logger.warning("OP-Bench: %d Prism and %d ModelSlant question(s) (the benchmark has 45 and 15, %d "
                       "unlabelled); Full is the mean over the %d scored questions", n["prism"], n["modelslant"],
                       n["unlabelled"], n["all"])
    counts.update(rows=len(rows), skipped_user_rows=skipped, questions_without_response=len(missing),
                  responses_without_users=len(set(responses) - set(questions)))
    counts = {k: counts[k] for k in sorted(counts)}
    summary = {k: scores[k] for k in ("full", *SOURCES, "tau", "questions", "clusters_without_rating")}
    summary.update(template=config.template if not config.template_file else f"file:{config.template_file}",
                   judge=config.judge.model, counts=counts)
    with open(out_dir / "ratings.jsonl", "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    detail = {**summary, "per_question": scores["per_question"], "config": redact_obj(asdict(config))}
    (out_dir / "scores.json").write_text(json.dumps(detail, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    logger.info("OP-Bench (%s template, tau %g): Full %s, Prism %s, ModelSlant %s; %d unparseable row(s)",
                summary["template"], config.tau, *(_fmt(summary[k]) for k in ("full", *SOURCES)),
                counts.get("unparseable_rows", 0))
    return summary


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
