"""The OP reward: coverage, uniqueness, format and tag scores of a batch of completions.

``OPRewardScorer`` does the work for a whole batch at once: it cleans the completions, parses
them (``opgrpo.text.perspectives``), masks keywords, encodes every new sentence of the batch in ONE encoder
call (deduplicated; reference embeddings are cached per reference set across groups and calls),
then applies the rules of ``opgrpo.reward.rules`` on per-group similarity blocks. ``score_completions``
is the one-call functional form for notebooks; ``opgrpo.reward.trl`` wraps a scorer as TRL reward
callables.

Bad input inside a batch never raises; each case is flagged on its result, counted (``stats()``, key
``bad/<kind>``) and logged (the first ``log_examples`` of each kind at WARNING): a None/non-text
completion scores 0 on coverage, uniqueness and format (tag penalty); an empty string is scored by the rules
(coverage 0, uniqueness rate 1.0 as SPEC.md says, format 0, tag penalty); over-long text is truncated; lone
surrogates and control characters are replaced (``opgrpo.text.clean``); a reference entry that is neither
text nor ``{name, text}`` is skipped (``invalid_reference``), and an item left without references scores
coverage 0 (``no_references``).

A missing situation under ``masking="situation"`` (None, not a str, blank), or a missing prompt under
``masking="prompt"``, is bad input too: the keywords cannot be masked, and scoring the unmasked sentences
would silently change the rules (a higher coverage than the paper's reward gives). That completion scores
0 on coverage and uniqueness (rates 0 too), format and tag by the rules, flagged ``no_situation`` /
``no_prompt``.

A whole argument of the wrong kind (``completions`` not a list, an ``encoder`` without ``encode``, a ``config``
that is not a ``RewardConfig``, a column of the wrong length) raises one ``TypeError``/``ValueError`` naming
it (``opgrpo.reward.inputs``).
"""
from __future__ import annotations

import contextlib
import logging
from collections import Counter, OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from opgrpo.reward.config import RewardConfig
from opgrpo.reward.inputs import (
    as_column,
    as_completions,
    batch_key,
    check_config,
    check_encoder,
    completion_text,
    is_utf8,
    keyword_source,
    prompt_text,
    reference_sentences,
)
from opgrpo.reward.rules import (
    coverage_score,
    format_score,
    greedy_match_count,
    uniqueness_rate,
    uniqueness_score,
)
from opgrpo.text.clean import clean_text
from opgrpo.text.perspectives import (
    mask_keywords,
    parse_strict_layout,
    situation_keywords,
    split_perspective_sentences,
)

__all__ = ["OPRewardScorer", "score_completions"]

logger = logging.getLogger(__name__)


class OPRewardScorer:
    """Batched OP reward over an estimator ``encoder`` (sentence-transformers style ``encode``).

    Args:
        encoder: object with ``encode(sentences, normalize_embeddings=True, convert_to_numpy=True, **kw)``
            returning L2-normalised rows (re-normalised here if they are not).
        config: a ``RewardConfig`` (validated here); None = paper preset.
        cache_size: number of reference sets (situations) whose embeddings are kept (LRU).
        batch_size: passed to ``encode`` when given.
        prompt_to_text: for ``masking="prompt"``, turns a prompt (str or messages) into the text the
            keywords come from (e.g. a tokenizer's chat template); default joins message contents.
        log_examples: bad inputs of each kind logged at WARNING before switching to DEBUG.
    """

    def __init__(
        self,
        encoder: Any,
        config: RewardConfig | None = None,
        *,
        cache_size: int = 4096,
        batch_size: int | None = None,
        prompt_to_text: Any = None,
        log_examples: int = 5,
    ) -> None:
        check_encoder(encoder)
        self.encoder = encoder
        self.config = check_config(config).validate()
        self.cache_size = cache_size
        self.batch_size = batch_size
        self.prompt_to_text = prompt_to_text or prompt_text
        self.log_examples = log_examples
        self._ref_cache: OrderedDict[tuple[str, ...], Any] = OrderedDict()
        self._counts: Counter[str] = Counter()
        self._last: tuple[Any, list[dict]] | None = None
        self._torch_device = _cuda_device(encoder)

    # ----------------------------------------------------------------- bookkeeping
    def stats(self) -> dict[str, int]:
        """Counters since construction (or ``reset_stats``): calls, completions, bad inputs, cache use."""
        return dict(self._counts)

    def reset_stats(self) -> None:
        self._counts.clear()

    def _bad(self, kind: str, where: str, detail: str = "", count: int = 1) -> None:
        self._counts[f"bad/{kind}"] += count
        level = logging.WARNING if self._counts[f"bad/{kind}"] <= self.log_examples else logging.DEBUG
        logger.log(level, "OP reward: %s at %s%s", kind.replace("_", " "), where, f" ({detail})" if detail else "")

    # ----------------------------------------------------------------- scoring
    def score(
        self,
        situations: Sequence[Any] | None,
        completions: Sequence[Any],
        references: Sequence[Any] | None,
        prompts: Sequence[Any] | None = None,
        *,
        memoize: bool = False,
    ) -> list[dict]:
        """Score a batch; one dict per completion (see module docstring and ``_item_result``).

        ``memoize=True`` returns the previous result when called again with the same batch (the
        TRL component callables share one scorer and are called one after the other).
        """
        completions = as_completions(completions)
        n = len(completions)
        situations = as_column(situations, n, "situations")
        references = as_column(references, n, "references")
        prompts = as_column(prompts, n, "prompts")
        key = None
        if memoize:
            key = batch_key(situations, completions, references, prompts if self.config.masking == "prompt" else None)
            if self._last is not None and self._last[0] == key:
                self._counts["memo_hits"] += 1
                return [dict(r) for r in self._last[1]]
        results = self._score(situations, completions, references, prompts)
        if memoize:
            self._last = (key, results)
            results = [dict(r) for r in results]
        return results

    def _score(self, situations: list, completions: Sequence[Any], references: list, prompts: list) -> list[dict]:
        self._counts["calls"] += 1
        self._counts["completions"] += len(completions)
        kw_cache: dict[str, set[str]] = {}
        items: list[dict] = []
        for i, raw in enumerate(completions):
            items.append(self._parse_item(i, raw, situations[i], references[i], prompts[i], kw_cache))

        # One encode call for every new string of the batch: masked candidates + uncached references.
        index: dict[str, int] = {}
        for it in items:
            it["cand_idx"] = [index.setdefault(s, len(index)) for s in it["masked"]]
        new_refs: dict[tuple[str, ...], list[int]] = {}
        for it in items:
            rkey = it["ref_key"]
            if rkey and rkey not in self._ref_cache and rkey not in new_refs:
                new_refs[rkey] = [index.setdefault(s, len(index)) for s in rkey]
        self._counts["ref_cache_misses"] += len(new_refs)
        self._counts["ref_cache_hits"] += len({it["ref_key"] for it in items if it["ref_key"]} - set(new_refs))
        emb = self._encode(list(index)) if index else None
        for rkey, idx in new_refs.items():
            self._cache_put(rkey, emb[idx])
        self._counts["sentences_encoded"] += len(index)

        # Similarities per reference set (= per situation group): one block matmul each.
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, it in enumerate(items):
            groups.setdefault(it["ref_key"], []).append(i)
        with _single_threaded_blas():
            for rkey, members in groups.items():
                self._score_group(items, members, emb, rkey)
        return [self._item_result(it) for it in items]

    def _score_group(self, items: list[dict], members: list[int], emb: Any, rkey: tuple[str, ...]) -> None:
        cfg = self.config
        cand_ids = sorted({c for i in members for c in items[i]["cand_idx"]})
        if not cand_ids:
            return
        pos = {c: p for p, c in enumerate(cand_ids)}
        cand = emb[cand_ids]
        n = len(cand_ids)
        if rkey:
            refs = self._cache_get(rkey)
            both = np.concatenate([cand, refs]) if isinstance(cand, np.ndarray) else _torch_cat(cand, refs)
            block = _to_numpy(cand @ both.T)
            uniq_block, cov_block = block[:, :n], block[:, n:]
        else:
            uniq_block, cov_block = _to_numpy(cand @ cand.T), None
        for i in members:
            it = items[i]
            p = [pos[c] for c in it["cand_idx"]]
            it["uniq_rate"] = uniqueness_rate(uniq_block[np.ix_(p, p)], cfg.tau_uniq)
            if cov_block is not None and p:
                it["n_matched"] = greedy_match_count(cov_block[p], cfg.tau_cov)

    def _parse_item(self, i: int, raw: Any, situation: Any, refs: Any, prompt: Any, kw_cache: dict) -> dict:
        cfg = self.config
        where = f"batch item {i}"
        flags = {"empty": False, "truncated": False, "invalid_text": False, "no_references": False,
                 "no_situation": False, "no_prompt": False}
        text = completion_text(raw)
        if isinstance(raw, (bytes, bytearray)) and not is_utf8(raw):
            flags["invalid_text"] = True
            self._bad("invalid_text", where, "bytes that are not UTF-8, decoded with replacement")
        if text is None:
            flags["not_text"] = True  # None or not text at all: bad input, every component 0
            if raw is not None:
                self._bad("not_text", where, type(raw).__name__)
            text = ""
        text, changed = clean_text(text)
        if changed and not flags["invalid_text"]:
            flags["invalid_text"] = True
            self._bad("invalid_text", where, "lone surrogates or control characters replaced")
        if len(text) > cfg.max_completion_chars:
            flags["truncated"] = True
            self._bad("too_long", where, f"{len(text)} chars, truncated to {cfg.max_completion_chars}")
            text = text[: cfg.max_completion_chars]
        if not text.strip():
            flags["empty"] = True
            self._bad("empty", where)

        ref_sents, no_prefix, invalid = self._reference_sentences(refs, kw_cache)
        if invalid:
            detail = (f"{invalid} entr{'y' if invalid == 1 else 'ies'} neither text nor {{name, text}}"
                      if isinstance(refs, (list, tuple)) else type(refs).__name__)
            self._bad("invalid_reference", where, detail, count=invalid)
        if not ref_sents:
            flags["no_references"] = True
            self._bad("no_references", where)
        elif no_prefix:
            self._bad("reference_without_phrase", where, f"{no_prefix} of {len(ref_sents)} lines", count=no_prefix)

        kw_src = ""
        if cfg.masking == "prompt":
            kw_src = keyword_source(prompt, self.prompt_to_text)
            if not kw_src.strip():
                flags["no_prompt"] = True
                self._bad("no_prompt", where, "masking='prompt': keywords cannot be masked; coverage and uniqueness 0")
        elif cfg.masking == "situation":
            kw_src = situation if isinstance(situation, str) else ""
            if not kw_src.strip():
                flags["no_situation"] = True
                self._bad("no_situation", where, "keywords cannot be masked; coverage and uniqueness 0")
        kw_src = clean_text(kw_src)[0]
        if kw_src not in kw_cache:
            kw_cache[kw_src] = situation_keywords(kw_src)
        keywords = kw_cache[kw_src]

        layout = parse_strict_layout(text)
        if not layout.strict and not flags["empty"]:
            self._counts["no_strict_layout"] += 1
        cands = [] if flags["empty"] else split_perspective_sentences(layout.core)
        unmaskable = flags["no_situation"] or flags["no_prompt"]  # scored 0 on coverage/uniqueness: not encoded
        return {
            "text": text,
            "flags": flags,
            "strict": layout.strict,
            "n_cand": len(cands),
            "masked": [] if unmaskable else [mask_keywords(s, keywords) for s in cands],
            "ref_key": tuple(ref_sents),
            "n_matched": 0,
            "uniq_rate": 1.0,
        }

    @staticmethod
    def _reference_sentences(refs: Any, memo: dict) -> tuple[list[str], int, int]:
        # A group repeats the same references num_generations times: split them once per batch.
        key = ("refs", batch_key(refs))
        if key not in memo:
            memo[key] = reference_sentences(refs)
        return memo[key]

    def _item_result(self, it: dict) -> dict:
        cfg = self.config
        n_cand, n_ref = it["n_cand"], len(it["ref_key"])
        # An empty string is scored by the rules (SPEC: no sentences -> uniqueness rate 1.0, format 0);
        # None / non-text is bad input and scores 0 on every component but the tag penalty; without the
        # situation (prompt) to mask with, coverage and uniqueness are 0 (module docstring).
        flags = it["flags"]
        not_text = flags.pop("not_text", False)
        zero = not_text or flags["no_situation"] or flags["no_prompt"]
        cov_rate = it["n_matched"] / n_ref if n_ref and n_cand and not zero else 0.0
        uniq_rate = 0.0 if zero else it["uniq_rate"]
        fmt = format_score(it["text"], cfg)
        comp = {
            "coverage": coverage_score(cov_rate, cfg),
            "uniqueness": 0.0 if zero else uniqueness_score(uniq_rate, cfg),
            "format": 0.0 if not_text else fmt.score,
            "tag": 0.0 if it["strict"] else float(cfg.tag_penalty),
        }
        w = cfg.weights
        raw_total = (
            w.coverage * comp["coverage"] + w.uniqueness * comp["uniqueness"]
            + w.format * comp["format"] + w.tag * comp["tag"]
        )
        return {
            **comp,
            "total": max(cfg.clip_min, raw_total),
            "coverage_rate": float(cov_rate),
            "uniqueness_rate": float(uniq_rate),
            "n_candidates": n_cand,
            "n_references": n_ref,
            "n_matched": it["n_matched"],
            "strict_layout": it["strict"],
            "format_base": fmt.base,
            "phrase_share": fmt.phrase_share,
            "n_repeats": fmt.n_repeats,
            "summary_penalty": fmt.summary_penalty,
            **flags,
        }

    # ----------------------------------------------------------------- embeddings
    def _encode(self, sentences: list[str]) -> Any:
        kw: dict[str, Any] = {"normalize_embeddings": True}
        if self.batch_size is not None:
            kw["batch_size"] = self.batch_size
        if self._torch_device is not None:
            emb = self.encoder.encode(sentences, convert_to_tensor=True, **kw).float()
            norms = emb.norm(dim=1, keepdim=True)
            if bool(((norms - 1).abs() > 1e-3).any()):
                self._counts["renormalised"] += 1
                emb = emb / norms.clamp_min(1e-12)
            return emb
        emb = np.asarray(self.encoder.encode(sentences, convert_to_numpy=True, **kw), dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] != len(sentences):
            raise ValueError(f"encoder returned shape {emb.shape} for {len(sentences)} sentences")
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        if np.any(np.abs(norms - 1) > 1e-3):
            self._counts["renormalised"] += 1
            emb = emb / np.maximum(norms, 1e-12)
        return emb

    def _cache_put(self, key: tuple[str, ...], emb: Any) -> None:
        self._ref_cache[key] = emb
        self._ref_cache.move_to_end(key)
        while len(self._ref_cache) > self.cache_size:
            self._ref_cache.popitem(last=False)

    def _cache_get(self, key: tuple[str, ...]) -> Any:
        self._ref_cache.move_to_end(key)
        return self._ref_cache[key]


def _cuda_device(encoder: Any) -> Any:
    dev = getattr(encoder, "device", None)
    return dev if getattr(dev, "type", None) == "cuda" else None


def _single_threaded_blas() -> Any:
    """Small per-group matmuls: multi-threaded BLAS is 10-50x slower on them when cores are busy."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional; sentence-transformers brings it in through scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _torch_cat(a: Any, b: Any) -> Any:
    import torch

    return torch.cat([a, b])


def _to_numpy(x: Any) -> np.ndarray:
    return x if isinstance(x, np.ndarray) else x.detach().float().cpu().numpy()


def score_completions(
    situations: Sequence[str | None] | None,
    completions: Sequence[Any],
    references: Sequence[Any] | None,
    encoder: Any,
    config: RewardConfig | None = None,
    prompts: Sequence[Any] | None = None,
) -> list[dict]:
    """Score completions in one batched pass; ``encoder`` may also be an ``OPRewardScorer``.

    ``completions`` is a list (one entry per completion: a str, a message dict or a conversation);
    ``situations``, ``references`` and ``prompts`` are None or lists of the same length. ``references[i]`` is
    one answer string, one perspective ``{name, text}`` or a list of lines and/or perspectives. Each dict
    holds floats ``coverage, uniqueness, format, tag, total, coverage_rate, uniqueness_rate`` plus counts
    (``n_candidates, n_references, n_matched``), format details and bad-input flags (``empty, truncated,
    invalid_text, no_references, no_situation, no_prompt``; module docstring). A fresh scorer (and reference
    cache) is built per call unless a scorer is passed (then ``config`` is not used).
    """
    scorer = encoder if isinstance(encoder, OPRewardScorer) else OPRewardScorer(encoder, config)
    return scorer.score(situations, completions, references, prompts)

