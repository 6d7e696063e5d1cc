"""Triplet mining for the similarity estimator (SPEC.md, "Similarity estimator"; the authors' create_dataset.py).

Per training item: the reference explanations ("In the perspective of X," stripped) are keyword-masked
with the situation's keywords and embedded (one ``encode`` call per batch of items): masking only finds the
candidate pairs. Every pair with cosine >= ``pair_threshold`` is tried, most similar first, until a Yes/No judge
confirms one as the *same* perspective (anchor = the earlier sentence, positive); then every remaining sentence,
most similar to the anchor first, until the judge calls one *different* (hard negative). ``max_pairs_judged`` /
``max_negatives_judged`` cap those searches for cheap runs (-1 = no cap, the paper); an item the cap stops is
skipped as "pair_cap" / "negative_cap". The judge is asked in rounds of ``judge_window`` candidates per item,
all items of a batch together, and an item stops at its first decision: the triplets are those of a
one-at-a-time search. The judge is an LLM asked ``AUTHORS_JUDGE_PROMPT`` (paper) or ``SITUATION_JUDGE_PROMPT``,
or human pair labels (``opgrpo.judges.LabelJudge`` over ``opgrpo.estimator.pair_labels.PairLabels``, which reads
the perspective names instead of a prompt). Without a judge (kind "none") the thresholds decide alone: the most
similar pair above the threshold, and the most similar remaining sentence below it.

Triplet texts are ``train_text``: "raw" (paper: the prefix-stripped sentences, punctuation kept) or "masked" (the
form the reward encodes generated sentences in); the raw explanations, similarities and judge probabilities are
kept alongside either way. Every processed item gets one JSONL record in ``out_path`` (``status`` "ok" with the
triplet, or the skip reason), written as mining goes, so a resumed run skips items already there (except those
the judge failed on). ``opgrpo.estimator.triplets.load_triplets`` reads the "ok" records back.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from opgrpo.estimator.config import MiningConfig
from opgrpo.estimator.triplets import (
    Triplet,
    masked_explanations,
    read_mining_records,
    record_triplet,
)
from opgrpo.judges.labels import PairQuery
from opgrpo.text.clean import clean_texts

logger = logging.getLogger(__name__)

SKIP_REASONS = ("malformed", "duplicate_id", "too_few_perspectives", "no_pair_above_threshold", "no_confirmed_pair",
                "pair_cap", "no_negative", "negative_cap", "judge_errors")

AUTHORS_JUDGE_PROMPT = (
    "Determine if the following sentence pair expresses the *same* meaning or perspective. "
    "Respond strictly with 'Yes' or 'No'.\n\n"
    "Sentence A: {a}\nSentence B: {b}\nAnswer:"
)
"""The judge prompt of SPEC.md, verbatim (the authors' create_dataset.py), given without a chat template."""

SITUATION_JUDGE_PROMPT = (
    "Situation: {situation}\n\n"
    "Sentence A: {a}\n"
    "Sentence B: {b}\n\n"
    "Do these two sentences express the same perspective on the situation, that is, the same value, "
    "right or duty for essentially the same reason? Answer Yes or No."
)
"""The project's judge prompt (``mining.prompt=situation``): shows the situation; meant for a chat template."""

JUDGE_PROMPTS = {"authors": AUTHORS_JUDGE_PROMPT, "situation": SITUATION_JUDGE_PROMPT}


def _normalise(vectors: Any) -> np.ndarray:
    arr = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return arr / np.where(norms == 0, 1.0, norms)


@dataclass
class _Work:
    item_id: str
    situation: str
    raw: list[str]
    masked: list[str]
    emb: np.ndarray
    names: list[str | None] = field(default_factory=list)
    sims: np.ndarray = field(default=None)  # type: ignore[assignment]
    pairs: list[tuple[int, int]] = field(default_factory=list)
    chosen: list[tuple[int, int, float | None]] = field(default_factory=list)


@dataclass
class _Search:
    """One judge search through ordered candidates, asked in windows until ``_Miner._rounds``' decide ends it."""

    work: _Work
    candidates: list[Any]
    capped: int = 0
    """Candidates left out by the cap (never asked)."""
    pos: int = 0
    asked: int = 0
    answered: int = 0

    def next_window(self, n: int, skip) -> list[Any]:
        out = []
        while self.pos < len(self.candidates) and len(out) < n:
            c = self.candidates[self.pos]
            self.pos += 1
            if not skip(c):
                out.append(c)
        return out

    def failed(self, judge) -> bool:
        """Every question asked went unanswered, and unanswered means failure (not a label judge's abstention)."""
        return self.asked > 0 and self.answered == 0 and not getattr(judge, "abstains", False)


def _capped(candidates: list, cap: int) -> tuple[list, int]:
    return (list(candidates), 0) if cap < 0 else (list(candidates[:cap]), max(0, len(candidates) - cap))


class _Miner:
    def __init__(self, encoder, judge, config: MiningConfig, stats: dict[str, int], failures: Counter):
        self.encoder, self.judge, self.cfg, self.stats, self.failures = encoder, judge, config, stats, failures
        self.template = config.prompt_template or JUDGE_PROMPTS[config.prompt]
        self.window = max(1, int(config.judge_window))

    def _ask(self, pairs: list[tuple[_Work, int, int]]) -> list[float | None]:
        """P(same) for each (item, i, j): ``judge.prob_same`` on PairQuery objects when the judge has it
        (labels), else ``judge.prob_yes`` on the formatted Yes/No prompts (LLM judges)."""
        if not pairs:
            return []
        self.stats["judge_prompts"] += len(pairs)
        try:
            if hasattr(self.judge, "prob_same"):
                answers = list(self.judge.prob_same([self._query(w, i, j) for w, i, j in pairs]))
            else:
                answers = list(self.judge.prob_yes([self._prompt(w, i, j) for w, i, j in pairs]))
        except Exception as exc:  # a judge failure costs this batch's decisions; the stage weighs the share
            logger.warning("judge call failed for %d prompts: %s", len(pairs), exc)
            self.failures[f"{type(exc).__name__}: {exc}"] += len(pairs)
            answers = [None] * len(pairs)
        if len(answers) != len(pairs):
            logger.warning("judge returned %d answers for %d prompts", len(answers), len(pairs))
            answers = (answers + [None] * len(pairs))[:len(pairs)]
        out = []
        for a in answers:
            try:
                a = None if a is None else float(a)
            except (TypeError, ValueError):
                a = None
            if a is None or not np.isfinite(a):
                self.stats["judge_unanswered"] += 1
                a = None
            out.append(a)
        return out

    def _prompt(self, w: _Work, i: int, j: int) -> str:
        """The judge sees the unmasked, prefix-stripped sentences (the authors' create_dataset.py)."""
        return self.template.format(situation=w.situation, a=w.raw[i], b=w.raw[j])

    @staticmethod
    def _query(w: _Work, i: int, j: int) -> PairQuery:
        names = w.names or [None] * len(w.raw)
        return PairQuery(w.item_id, w.situation, names[i], w.raw[i], names[j], w.raw[j])

    def _rounds(self, searches: list[_Search], pair_of, skip, decide) -> None:
        """Ask the judge in rounds of ``judge_window`` candidates per open search, all searches together.

        ``pair_of(search, candidate) -> (i, j)`` is the question; ``decide(search, candidate, p) -> bool`` takes
        the verdicts in candidate order and returns True when the search is finished; ``skip(search, candidate)``
        leaves a candidate out without asking.
        """
        open_ = list(searches)
        while open_:
            asked: list[tuple[_Search, Any]] = []
            for s in open_:
                asked.extend((s, c) for c in s.next_window(self.window, lambda c, s=s: skip(s, c)))
            answers = self._ask([(s.work, *pair_of(s, c)) for s, c in asked])
            finished: set[int] = set()
            for (s, c), p in zip(asked, answers):
                if id(s) in finished:
                    continue  # decided earlier in this window: later verdicts are not read
                s.asked += 1
                s.answered += p is not None
                if decide(s, c, p):
                    finished.add(id(s))
            open_ = [s for s in open_ if id(s) not in finished and s.pos < len(s.candidates)]

    def choose_pairs(self, works: list[_Work]) -> dict[str, str]:
        """Fill ``w.chosen`` with anchor/positive pairs; returns skip reasons by item id."""
        skips: dict[str, str] = {}
        k = max(1, self.cfg.max_triplets_per_item)

        def used(w: _Work) -> set[int]:
            return {x for c in w.chosen for x in c[:2]}

        if self.judge is None:
            for w in works:
                for i, j in w.pairs:
                    if len(w.chosen) < k and not ({i, j} & used(w)):
                        w.chosen.append((i, j, None))
            return skips
        searches = [_Search(w, *_capped(w.pairs, self.cfg.max_pairs_judged)) for w in works]

        def decide(s: _Search, c: tuple[int, int], p: float | None) -> bool:
            i, j = c
            if p is not None and p >= self.cfg.judge_threshold and not ({i, j} & used(s.work)):
                s.work.chosen.append((i, j, p))
            return len(s.work.chosen) >= k

        self._rounds(searches, lambda s, c: c, lambda s, c: bool(set(c) & used(s.work)), decide)
        for s in searches:
            if not s.work.chosen:
                reason = "judge_errors" if s.failed(self.judge) else "pair_cap" if s.capped else "no_confirmed_pair"
                skips[s.work.item_id] = reason
        return skips

    def choose_negatives(self, works: list[_Work]) -> tuple[list[tuple[_Work, Triplet]], dict[str, str]]:
        skips: dict[str, str] = {}
        searches: list[tuple[_Search, int, int, float | None]] = []
        for w in works:
            for a, pos, p_pos in w.chosen:
                rest = [x for x in np.argsort(-w.sims[a], kind="stable").tolist() if x not in (a, pos)]
                if self.judge is None:
                    rest = [x for x in rest if w.sims[a, x] < self.cfg.pair_threshold][:1]
                    searches.append((_Search(w, rest), a, pos, p_pos))
                else:
                    searches.append((_Search(w, *_capped(rest, self.cfg.max_negatives_judged)), a, pos, p_pos))
        found: dict[int, tuple[int, float | None]] = {}
        if self.judge is None:
            found = {id(s): (s.candidates[0], None) for s, *_ in searches if s.candidates}
        else:
            anchor = {id(s): a for s, a, _, _ in searches}

            def decide(s: _Search, x: int, p: float | None) -> bool:
                if p is not None and p < self.cfg.judge_threshold:
                    found[id(s)] = (x, p)
                    return True
                return False

            self._rounds([s for s, *_ in searches], lambda s, x: (anchor[id(s)], x), lambda s, x: False, decide)
        out: list[tuple[_Work, Triplet]] = []
        text = self.cfg.train_text
        for s, a, pos, p_pos in searches:
            w = s.work
            if id(s) not in found:
                reason = ("judge_errors" if self.judge is not None and s.failed(self.judge)
                          else "negative_cap" if s.capped else "no_negative")
                skips.setdefault(w.item_id, reason)
                continue
            neg, p_neg = found[id(s)]
            texts = w.raw if text == "raw" else w.masked
            out.append((w, Triplet(
                item_id=w.item_id, anchor=texts[a], positive=texts[pos], negative=texts[neg],
                raw_anchor=w.raw[a], raw_positive=w.raw[pos], raw_negative=w.raw[neg],
                sim_pos=round(float(w.sims[a, pos]), 6), sim_neg=round(float(w.sims[a, neg]), 6),
                judge_pos=p_pos, judge_neg=p_neg, text=text)))
        return out, skips

    def prepare(self, items: list[Any]) -> tuple[list[_Work], dict[str, str]]:
        skips: dict[str, str] = {}
        works: list[_Work] = []
        pending: list[tuple[str, str, list[str], list[str], list[str | None]]] = []
        for item in items:
            names, raw, masked = masked_explanations(item, self.cfg.masking)
            # clean before the encoder, the judge and the triplet file (text.clean; counted, logged at the end)
            raw, n_raw = clean_texts(raw)
            masked, n_masked = clean_texts(masked)
            self.stats["cleaned_texts"] += max(n_raw, n_masked)
            if len(raw) < 2:
                skips[str(item.id)] = "too_few_perspectives"
                continue
            pending.append((str(item.id), item.situation, raw, masked, names))
        if not pending:
            return works, skips
        texts = [t for _, _, _, masked, _ in pending for t in masked]
        emb = _normalise(self.encoder.encode(texts, batch_size=self.cfg.encode_batch_size,
                                             convert_to_numpy=True, normalize_embeddings=True,
                                             show_progress_bar=False))
        start = 0
        for item_id, situation, raw, masked, names in pending:
            w = _Work(item_id, situation, raw, masked, emb[start:start + len(masked)], names=names)
            start += len(masked)
            w.sims = w.emb @ w.emb.T
            n = len(raw)
            pairs = [(float(w.sims[i, j]), i, j) for i in range(n) for j in range(i + 1, n)
                     if w.sims[i, j] >= self.cfg.pair_threshold]
            pairs.sort(key=lambda t: -t[0])  # stable: ties keep document order
            w.pairs = [(i, j) for _, i, j in pairs]
            self.stats["candidate_pairs"] += len(w.pairs)
            if not w.pairs:
                skips[item_id] = "no_pair_above_threshold"
            else:
                works.append(w)
        return works, skips


def _is_item(item: Any) -> bool:
    try:
        return (str(item.id) != "" and isinstance(item.situation, str) and item.situation.strip() != ""
                and isinstance(list(item.perspectives), list))
    except (AttributeError, TypeError):
        return False


def mine_triplets(items: Iterable[Any], encoder, judge, config: MiningConfig | None = None, *,
                  out_path: Path | None = None, resume: bool = True, progress: bool = False,
                  failures: Counter | None = None) -> tuple[list[Triplet], dict[str, int]]:
    """Mine at most ``config.max_triplets_per_item`` triplets per item.

    ``encoder`` has a sentence-transformers ``encode(texts, **kwargs)``; ``judge`` has
    ``prob_yes(prompts) -> list[float | None]`` (LLM judges), ``prob_same(queries) -> list[float | None]`` on
    ``opgrpo.judges.PairQuery`` objects (labels) or is None (thresholds only). Returns the triplets in input
    order (resumed ones included) and counters: items, resumed, triplets, skip_<reason> for each of
    SKIP_REASONS, candidate_pairs, judge_prompts, judge_unanswered, cleaned_texts (explanations that held lone
    surrogates or control characters, cleaned by ``opgrpo.text.clean`` before the encoder, the judge and the file).
    A judge call that raises costs its prompts their answers (unanswered), not the run: ``failures`` (when given)
    counts those prompts by the exception's text, for the caller to decide (opgrpo.estimator.stage).
    """
    cfg = config or MiningConfig()
    stats = {"items": 0, "resumed": 0, "triplets": 0, **{f"skip_{r}": 0 for r in SKIP_REASONS},
             "candidate_pairs": 0, "judge_prompts": 0, "judge_unanswered": 0, "cleaned_texts": 0}
    results: dict[str, list[Triplet]] = {}  # by item id; returned in input order, resumed or not
    prior: dict[str, list[dict]] = {}
    path = Path(out_path) if out_path is not None else None
    if path is not None and path.exists() and not resume:
        path.unlink()
    if path is not None and resume:
        for _, rec in read_mining_records(path):
            if rec["status"] != "judge_errors":  # judge failures may be transient: mine those again
                prior.setdefault(str(rec["item_id"]), []).append(rec)
    seen: set[str] = set()
    seen_order: list[str] = []
    fh = None
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
            with open(path, "ab") as tail:  # a crash left half a line: close it off
                tail.write(b"\n")
        fh = open(path, "a", encoding="utf-8")
    miner = _Miner(encoder, judge, cfg, stats, Counter() if failures is None else failures)
    batch: list[Any] = []

    def flush() -> None:
        works, skips = miner.prepare(batch)
        skips.update(miner.choose_pairs(works))
        mined, neg_skips = miner.choose_negatives([w for w in works if w.chosen])
        for iid, reason in neg_skips.items():
            skips.setdefault(iid, reason)
        got: dict[str, list[Triplet]] = {}
        for _, t in mined:
            got.setdefault(t.item_id, []).append(t)
        for item in batch:
            iid = str(item.id)
            if got.get(iid):
                results[iid] = got[iid]
                records = [{"status": "ok", **asdict(t)} for t in got[iid]]
            else:
                reason = skips.get(iid, "no_negative")
                stats[f"skip_{reason}"] += 1
                logger.debug("item %s skipped: %s", iid, reason)
                records = [{"item_id": iid, "status": reason}]
            if fh is not None:
                for rec in records:
                    fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        if fh is not None:
            fh.flush()
        batch.clear()

    iterator = items
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(items, desc="mining", unit="item")
    try:
        for item in iterator:
            stats["items"] += 1
            if not _is_item(item):
                stats["skip_malformed"] += 1
                logger.warning("skipping malformed item %r", str(item)[:80])
                continue
            iid = str(item.id)
            if iid in seen:
                stats["skip_duplicate_id"] += 1
                logger.warning("skipping repeated item id %s", iid)
                continue
            seen.add(iid)
            seen_order.append(iid)
            if iid in prior:
                stats["resumed"] += 1
                for rec in prior[iid]:
                    t = record_triplet(rec)
                    if t is not None:
                        results.setdefault(iid, []).append(t)
                    elif rec["status"] in SKIP_REASONS:
                        stats[f"skip_{rec['status']}"] += 1
                continue
            batch.append(item)
            if len(batch) >= max(1, cfg.batch_size):
                flush()
        if batch:
            flush()
    finally:
        if fh is not None:
            fh.close()
    triplets = [t for iid in seen_order for t in results.get(iid, [])]
    stats["triplets"] = len(triplets)
    skipped = {r: stats[f"skip_{r}"] for r in SKIP_REASONS if stats[f"skip_{r}"]}
    if stats["cleaned_texts"]:
        logger.warning("mining: %d text(s) held lone surrogates or control characters; replaced before the encoder "
                       "and the judge (U+FFFD / space)", stats["cleaned_texts"])
    logger.info("mined %d triplets from %d items (%d resumed); skipped: %s", len(triplets), stats["items"],
                stats["resumed"], skipped or "none")
    return triplets, stats
