"""NLI benchmark scoring: how much of each reference perspective a response entails.

For every reference perspective of an item, premise = its explanation (the text after
"In the perspective of X, "), hypothesis = each sentence of the response; the perspective's score is
the maximum entailment probability over the sentences, the item's score the mean over perspectives
(SPEC.md, "Evaluation: the NLI benchmark"); an item without any reference perspective scores 0, as in the authors'
``benchmark_new/nli/eva.py``.

Which text of a response is scored (``NLIConfig.text``, :func:`scored_text`): the ``core`` block found by the
authors' extraction regex (opgrpo.evaluation.responses.extract_blocks; a response where it finds no non-empty core
and summary is an empty answer and scores 0, counted as ``unparsed``), the ``full`` response (baselines without
the tags), or ``auto``: the core block when the response parses, else the full response.

One interface, :meth:`EntailmentScorer.entailment` over ``(premise, hypothesis)`` pairs, with two
backends built by :func:`build_scorer`:

- ``sequence_classification``: an MNLI-style classifier (the paper's ``microsoft/deberta-v2-xlarge-mnli``),
  softmax over its labels, entailment column found by name in ``config.id2label``.
- ``causal_lm``: an instruction-tuned LM asked whether the premise entails the hypothesis, scored as
  P(Yes) from its Yes/No next-token logits (:class:`opgrpo.judges.YesNoLM`). This is an LLM-judge
  approximation of NLI, not the paper's metric; results are labelled with the backend.

Both deduplicate the pairs, sort them by length into large batches over *all* pairs of all items (one
scorer call for a whole test split) and restore the input order. The classifier is scored by
sentence-transformers' ``CrossEncoder.predict(pairs, apply_softmax=True)`` (length-sorted batches); hand-written
here are only what it does not do: the de-duplication of pairs, the text cleaning and the entailment column
looked up by label name (``entailment_index``). The ``causal_lm`` backend has no library equivalent (P(Yes) of
a chat LM) and batches through ``opgrpo.judges.YesNoLM``. Every premise and hypothesis is cleaned
first (``opgrpo.text.clean``: a lone surrogate or control character would crash the tokenizer); what was
changed is counted (``EntailmentScorer.cleaned``) and logged once per call.
"""
from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from opgrpo.evaluation.config import BACKENDS, SPLITTERS, TEXTS, NLIConfig
from opgrpo.models.devices import resolve_device as _resolve_device
from opgrpo.models.devices import resolve_dtype as _resolve_dtype
from opgrpo.text.clean import clean_text, clean_texts

logger = logging.getLogger(__name__)



CAUSAL_LM_TEMPLATE = (
    "Premise: {premise}\n"
    "Hypothesis: {hypothesis}\n\n"
    "Does the premise entail the hypothesis? Answer Yes or No."
)


# --------------------------------------------------------------------------- sentence splitting

_TAG_RE = re.compile(r"</?\s*(?:core\s+perspectives|summary)\s*>", re.IGNORECASE)
_HAS_WORD_RE = re.compile(r"\w")


@functools.lru_cache(maxsize=8)
def _sentence_splitter(language: str):
    from sentence_splitter import SentenceSplitter

    return SentenceSplitter(language=language)


def split_sentences(text: str | None, splitter: str = "sentence_splitter", language: str = "en") -> list[str]:
    """The response's sentences (the NLI hypotheses).

    The layout tags ``<core perspectives>``/``<summary>`` (and their closing forms) are removed first,
    so a tag never becomes a hypothesis; the text is split on newlines and, with ``sentence_splitter``,
    each line into sentences. Pieces are stripped; empty ones and ones without any word character
    (markdown rules, bullets, stray punctuation) are dropped.
    """
    if not text:
        return []
    if splitter not in SPLITTERS:
        raise ValueError(f"unknown splitter {splitter!r}; expected one of {SPLITTERS}")
    text = _TAG_RE.sub("\n", str(text))
    out: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        pieces = _sentence_splitter(language).split(line) if splitter == "sentence_splitter" else [line]
        out.extend(p.strip() for p in pieces if _HAS_WORD_RE.search(p))
    return out


# --------------------------------------------------------------------------- scorers


def entailment_index(id2label: dict[Any, str]) -> int:
    """Index of the entailment class, read by name from ``config.id2label``.

    A label counts when it contains "entail" (case-insensitive) and is not a negation such as
    ``not_entailment``; exactly one must match.
    """
    hits = []
    for idx, label in id2label.items():
        name = str(label).strip().lower()
        if "entail" in name and not re.match(r"^(?:not|non)[\s_-]?", name):
            hits.append(int(idx))
    if len(hits) != 1:
        labels = {int(k): v for k, v in id2label.items()}
        raise ValueError(
            f"cannot find a single entailment label in the model's id2label {labels}; "
            "the NLI model needs named labels such as {0: 'CONTRADICTION', 1: 'NEUTRAL', 2: 'ENTAILMENT'}"
        )
    return hits[0]


class EntailmentScorer:
    """Entailment probabilities for (premise, hypothesis) pairs; subclasses score unique pairs."""

    backend = "base"

    def __init__(self, batch_size: int = 32, progress: bool = True):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.progress = progress
        self.cleaned = 0
        """Distinct premises/hypotheses that held lone surrogates or control characters (cleaned, counted)."""

    def entailment(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """P(entailment) per pair, in input order (float64 array of ``len(pairs)``)."""
        if len(pairs) == 0:
            return np.zeros(0, dtype=np.float64)
        index: dict[tuple[str, str], int] = {}
        inverse = np.empty(len(pairs), dtype=np.int64)
        for i, (p, h) in enumerate(pairs):
            inverse[i] = index.setdefault((str(p), str(h)), len(index))
        unique = self._clean(list(index))
        probs = np.asarray(self._score_unique(unique), dtype=np.float64)
        if probs.shape != (len(unique),):
            raise RuntimeError(f"{type(self).__name__} returned {probs.shape} scores for {len(unique)} pairs")
        return probs[inverse]

    def _clean(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        cleaned: dict[str, str] = {}
        changed = 0
        for text in {t for pair in pairs for t in pair}:
            cleaned[text], ch = clean_text(text)
            changed += ch
        if not changed:
            return pairs
        self.cleaned += changed
        logger.warning("NLI: %d text(s) held lone surrogates or control characters; replaced before the model "
                       "(U+FFFD / space)", changed)
        return [(cleaned[p], cleaned[h]) for p, h in pairs]

    def _score_unique(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        raise NotImplementedError

    def _bar(self, total: int, desc: str):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit="pair", disable=not self.progress, leave=False)


class SequenceClassificationNLI(EntailmentScorer):
    """MNLI-style classifier through sentence-transformers' ``CrossEncoder.predict(pairs, apply_softmax=True)``.

    ``CrossEncoder.predict`` sorts the pairs by length, tokenises and pads one batch at a time and restores
    the order; what stays here is the de-duplication and cleaning (``EntailmentScorer.entailment``) and the
    entailment column, found by name in the model config's ``id2label`` (``entailment_index``). Pairs are
    truncated with ``longest_first`` (the CrossEncoder's default): the longer side loses tokens first. The
    premise (a reference explanation) is short, so a runaway hypothesis (a response "sentence" without any
    punctuation) is what gets cut, while ``only_first``/``only_second`` would fail outright whenever the
    named side is too short to absorb the excess.

    ``model`` is a hub id or local path, a loaded ``sentence_transformers.CrossEncoder`` (moved to ``device``,
    its dtype kept), or a loaded
    transformers sequence-classification model with its ``tokenizer`` (saved to a temporary folder and
    loaded as a CrossEncoder: ``CrossEncoder`` is built from a path only).
    """

    backend = "sequence_classification"

    def __init__(self, model: Any, tokenizer: Any = None, *, batch_size: int = 32, max_length: int = 512,
                 device: str = "auto", dtype: str = "auto", progress: bool = True):
        super().__init__(batch_size, progress)
        import torch
        from sentence_transformers import CrossEncoder

        self.device = _resolve_device(device)
        torch_dtype = _resolve_dtype(dtype, self.device)
        if isinstance(model, CrossEncoder):
            self.cross_encoder = model.to(self.device)
        elif isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
            self.cross_encoder = CrossEncoder(str(model), device=self.device, model_kwargs={"dtype": torch_dtype})
        else:
            if tokenizer is None:
                raise ValueError("a preloaded model needs its tokenizer")
            import tempfile

            with tempfile.TemporaryDirectory(prefix="opgrpo-nli-") as tmp:
                model.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
                self.cross_encoder = CrossEncoder(tmp, device=self.device, model_kwargs={"dtype": torch_dtype})
        self.cross_encoder.eval()
        self.entail_idx = entailment_index(self.cross_encoder.config.id2label)
        tok = self.cross_encoder.tokenizer  # its model_max_length is what predict truncates to
        self.max_length = min(max_length, getattr(tok, "model_max_length", max_length) or max_length)
        tok.model_max_length = self.max_length
        self._identity = torch.nn.Identity()  # a saved CrossEncoder activation (e.g. Sigmoid) must not apply

    @property
    def model(self) -> Any:
        """The underlying transformers model (``transformers_model`` in sentence-transformers 6, ``model`` in 5)."""
        found = getattr(self.cross_encoder, "transformers_model", None)
        return found if found is not None else getattr(self.cross_encoder, "model", None)

    @property
    def tokenizer(self) -> Any:
        return self.cross_encoder.tokenizer

    def _score_unique(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        probs = self.cross_encoder.predict([list(p) for p in pairs], batch_size=self.batch_size,
                                           show_progress_bar=self.progress, activation_fn=self._identity,
                                           apply_softmax=True, convert_to_numpy=True)
        return np.asarray(probs, dtype=np.float64).reshape(len(pairs), -1)[:, self.entail_idx]


class CausalLMNLI(EntailmentScorer):
    """LLM-judge NLI: P(Yes) of an instruction-tuned LM asked whether the premise entails the hypothesis.

    Not the paper's metric (that is the MNLI classifier); use it where no NLI classifier is available.
    """

    backend = "causal_lm"

    def __init__(self, judge: Any, *, batch_size: int = 32, progress: bool = True,
                 template: str = CAUSAL_LM_TEMPLATE):
        super().__init__(batch_size, progress)
        self.judge = judge
        self.template = template

    @classmethod
    def from_config(cls, config: NLIConfig) -> CausalLMNLI:
        from opgrpo.judges import YesNoLM

        judge = YesNoLM(config.model, device=config.device, dtype=config.dtype, batch_size=config.batch_size,
                        max_length=config.max_length)
        return cls(judge, batch_size=config.batch_size, progress=config.progress)

    def _score_unique(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        prompts = [self.template.format(premise=p, hypothesis=h) for p, h in pairs]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
        out = np.empty(len(prompts), dtype=np.float64)
        chunk = self.batch_size * 8  # several judge batches per call, so the bar moves
        with self._bar(len(prompts), "NLI (causal LM)") as bar:
            for start in range(0, len(order), chunk):
                idx = order[start:start + chunk]
                out[idx] = self.judge.prob_yes([prompts[i] for i in idx])
                bar.update(len(idx))
        return out


def build_scorer(config: NLIConfig) -> EntailmentScorer:
    """The scorer for ``config.backend``, with its model loaded from ``config.model``."""
    if config.backend == "sequence_classification":
        return SequenceClassificationNLI(config.model, batch_size=config.batch_size, max_length=config.max_length,
                                         device=config.device, dtype=config.dtype, progress=config.progress)
    if config.backend == "causal_lm":
        return CausalLMNLI.from_config(config)
    raise ValueError(f"unknown NLI backend {config.backend!r}; expected one of {BACKENDS}")


# --------------------------------------------------------------------------- item scoring


@dataclass
class ItemScore:
    """NLI score of one item's response."""

    id: str
    score: float
    """Mean over perspectives of the max entailment over response sentences (nan when skipped)."""
    perspective_scores: list[float] = field(default_factory=list)
    perspective_names: list[str] = field(default_factory=list)
    n_sentences: int = 0
    response: str = ""
    """The whole response (cleaned), whatever part of it was scored."""
    skipped: bool = False
    """True when the item is to be left out of the metrics (its score is NaN); ``score_items`` never skips one."""
    no_references: bool = False
    """The item has no parsable reference perspective: it scores 0 (the authors' rule) and is counted."""
    parsed: bool | None = None
    """The authors' regex found a non-empty core and summary in the response (None: not checked)."""
    text: str = "full"
    """What was scored: ``core``, ``full``, or ``none`` (``text="core"`` and the response did not parse: an empty
    answer, score 0)."""
    attempts: int | None = None
    """Samples drawn for this item's response (None: not known, e.g. responses read from a file)."""


def scored_text(response: str | None, text: str = "full") -> tuple[str, bool, str]:
    """(the text NLI scores, whether the response parses, which text that is: ``core``, ``full`` or ``none``).

    ``text`` is ``core``, ``full`` or ``auto`` (see the module docstring); a response parses when the authors'
    extraction regex finds a non-empty core and summary (opgrpo.evaluation.responses.extract_blocks).
    """
    from opgrpo.evaluation.responses import extract_blocks

    if text not in TEXTS:
        raise ValueError(f"unknown NLI text {text!r}; expected one of {TEXTS}")
    response = "" if not response else str(response)
    blocks = extract_blocks(response)
    if blocks is not None and text != "full":
        return blocks[0], True, "core"
    if text == "core":
        return "", False, "none"
    return response, blocks is not None, "full"


def _references_of(item: Any) -> list[str]:
    from opgrpo.text.perspectives import split_perspective_sentences

    refs = getattr(item, "references", item)
    if isinstance(refs, str):  # a whole answer: one piece per "In the perspective of" line
        return split_perspective_sentences(refs)
    return [str(r) for r in refs if r is not None]


def score_items(items_refs: Sequence[Any], responses: Sequence[str | None], scorer: EntailmentScorer, *,
                splitter: str = "sentence_splitter", language: str = "en",
                ids: Iterable[str] | None = None, text: str = "full",
                attempts: Sequence[int | None] | None = None) -> list[ItemScore]:
    """NLI scores of ``responses`` against their items' references, all pairs in one scorer call.

    ``items_refs[i]`` is an :class:`opgrpo.benchmark.loading.Item` (its ``.references`` lines and ``.id`` are used),
    a list of reference lines or one answer string (split before each "In the perspective of" line). ``text``
    says what of each response is scored (``full``, ``core`` or ``auto``: :func:`scored_text`). An empty response
    (or, with ``core``, one that does not parse) scores 0; an item with no parsable perspective scores 0 with
    ``no_references=True``; both are counted in the log. Responses and references are cleaned first
    (``opgrpo.text.clean``, counted in one WARNING); ``ItemScore.response`` is the cleaned whole response.
    ``attempts``: samples drawn per response, copied to ``ItemScore.attempts``.
    """
    from opgrpo.text.perspectives import parse_reference

    if len(items_refs) != len(responses):
        raise ValueError(f"{len(items_refs)} items but {len(responses)} responses")
    ids = [str(i) for i in ids] if ids is not None else [str(getattr(it, "id", i)) for i, it in
                                                        enumerate(items_refs)]
    if attempts is not None and len(attempts) != len(responses):
        raise ValueError(f"{len(attempts)} attempts for {len(responses)} responses")
    responses, _ = clean_texts(["" if not r else str(r) for r in responses], where="NLI", log=logger,
                               what="response")
    chosen = [scored_text(r, text) for r in responses]
    ref_lines = [_references_of(item) for item in items_refs]
    flat, _ = clean_texts([line for lines in ref_lines for line in lines], where="NLI", log=logger,
                          what="reference line")
    plans = []  # (premises, names, sentences) per item; None when skipped
    pairs: list[tuple[str, str]] = []
    start = 0
    for lines in ref_lines:
        premises, names = [], []
        for line in flat[start:start + len(lines)]:
            name, explanation = parse_reference(line)
            if explanation and explanation.strip():
                premises.append(explanation.strip())
                names.append(name or "")
        start += len(lines)
        plans.append((premises, names))
    sentences = [split_sentences(scored, splitter, language) for scored, _, _ in chosen]
    for (premises, _), sents in zip(plans, sentences):
        pairs.extend((p, s) for p in premises for s in sents)

    probs = scorer.entailment(pairs)
    results, pos, no_refs, empty = [], 0, [], 0
    for k, (item_id, (premises, names), sents, response, (_, parsed, kind)) in enumerate(
            zip(ids, plans, sentences, responses, chosen)):
        tried = None if attempts is None else attempts[k]
        if not premises:
            no_refs.append(item_id)
            results.append(ItemScore(item_id, 0.0, response=response, no_references=True, parsed=parsed, text=kind,
                                     attempts=tried, n_sentences=len(sents)))
            continue
        if not sents:
            empty += 1
            per = [0.0] * len(premises)
        else:
            block = probs[pos:pos + len(premises) * len(sents)].reshape(len(premises), len(sents))
            pos += block.size
            per = block.max(axis=1).tolist()
        results.append(ItemScore(item_id, float(np.mean(per)), per, names, len(sents), response, parsed=parsed,
                                 text=kind, attempts=tried))
    if no_refs:
        logger.warning("%d item(s) with no parsable reference perspective scored 0: %s", len(no_refs),
                       ", ".join(no_refs[:10]) + (" ..." if len(no_refs) > 10 else ""))
    if empty:
        logger.warning("%d empty response(s) (no sentence to score%s) scored 0", empty,
                       ", or no core block to score" if text == "core" else "")
    return results
