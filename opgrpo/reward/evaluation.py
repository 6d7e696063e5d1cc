"""The OP reward of evaluation responses, with the keywords each masking mode needs, and the reference rule.

``score_responses`` is ``score_completions`` for responses to benchmark items. Under ``masking="prompt"`` (the
authors' keyword source, ``reward=authors_masking``) the keywords come from the prompt each response answered:
``chat_prompt(situation, prompt)`` rendered with the policy tokenizer's chat template (the decoded chat prompt
the authors' reward read during training) or, without a tokenizer, the text of its messages. Without this the
eval-time reward had no prompts and scored coverage and uniqueness 0 under that preset.

The reference rule (issue 30.1). A run's own reward numbers are measured at its own ``reward.tau_*`` and weights,
which sweeps and Optuna move: a trial with looser thresholds "wins" without training better. The numbers runs are
ranked and compared by are measured by one fixed rule instead (``reference_config``): the estimator's calibrated
thresholds (``estimator.calibration``, delta 0), the reference weights (``report.reference_weights``) and the
paper's scoring rules (buckets, format and tag settings of ``RewardConfig()``); only what decides which sentences
are compared comes from the run (``masking``, ``max_completion_chars``, and the prompt kind under
``masking="prompt"``). ``rule_of`` lists every knob of it that changes a number, ``rule_fingerprint`` names it in 12
hex digits. The reference total is the weighted sum of the mean components, not clipped per response (as the
sweep table's ``total_at_reference``), so a report may re-weigh the same components. ``score_with_reference``
scores the same responses by both rules from one set of sentence embeddings: the second scorer's encoder calls
are answered from the first's embeddings (``EmbeddingMemo``), so no sentence is encoded twice and the rates at
the reference thresholds compare the same similarities.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from opgrpo.reward.config import COMPONENTS, RATES, RewardConfig, RewardWeights
from opgrpo.reward.trl import make_scorer

__all__ = ["REFERENCE_KEYS", "EmbeddingMemo", "reference_config", "reference_numbers", "rule_fingerprint", "rule_of",
           "score_responses", "score_with_reference"]

REFERENCE_KEYS = (*RATES, *COMPONENTS, "total")
"""The per-response numbers of the reference rule (``total``: weighted sum of the components, not clipped)."""


def score_responses(situations: Sequence[str], responses: Sequence[Any], references: Sequence[Any], encoder: Any,
                    config: RewardConfig | None = None, *, prompt: str = "implicit",
                    tokenizer: Any = None) -> list[dict]:
    """One ``score_completions`` dict per response; ``prompt`` is the prompt kind the responses were generated
    with (implicit | explicit), used only under ``masking="prompt"``; ``tokenizer`` renders it (optional)."""
    return _score(situations, responses, references, encoder, config, prompt=prompt, tokenizer=tokenizer)


def _score(situations: Sequence[str], responses: Sequence[Any], references: Sequence[Any], encoder: Any,
           config: RewardConfig | None, *, prompt: str, tokenizer: Any, quiet: bool = False) -> list[dict]:
    from opgrpo.text.prompts import chat_prompt

    scorer = make_scorer(encoder, config, tokenizer=tokenizer)
    if quiet:  # the same bad inputs were logged by the first scoring of these responses
        scorer.log_examples = 0
    prompts = None
    if scorer.config.masking == "prompt":
        prompts = [chat_prompt(s, prompt) if isinstance(s, str) and s.strip() else None for s in situations]
    return scorer.score(list(situations), list(responses), list(references), prompts)


def reference_config(run: RewardConfig, tau_cov: float, tau_uniq: float,
                     weights: Mapping[str, float] | None = None) -> RewardConfig:
    """The reference rule as a ``RewardConfig``: thresholds ``tau_cov``/``tau_uniq`` (the estimator's calibration),
    ``weights`` (component -> weight, a missing one 0; None = the paper's), the paper's scoring rules, and the
    run's ``masking`` and ``max_completion_chars`` (they decide which sentences are compared)."""
    w = dict(zip(COMPONENTS, RewardWeights().as_list())) if weights is None else dict(weights)
    unknown = sorted(set(w) - set(COMPONENTS))
    if unknown:
        raise ValueError(f"reference weights: unknown component(s) {unknown}; expected {', '.join(COMPONENTS)}")
    return RewardConfig(weights=RewardWeights(**{c: float(w.get(c, 0.0)) for c in COMPONENTS}),
                        tau_cov=float(tau_cov), tau_uniq=float(tau_uniq), masking=run.masking,
                        max_completion_chars=run.max_completion_chars).validate()


def _plain(value: Any) -> Any:
    """Numbers as floats (1 and 1.0 name one rule), choices as their text, lists element-wise."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float, np.number)):
        return float(value)
    return str(getattr(value, "value", value))


def rule_of(config: RewardConfig, prompt: str = "implicit") -> dict[str, Any]:
    """Every knob of ``config`` that changes an evaluation number (rates, components, the unclipped total), as
    plain JSON values. ``aggregation``, ``gdpo_weights`` and ``clip_min`` shape only the training advantage or
    the clipped total, so they are not part of it; ``prompt`` (the prompt kind) is, under ``masking="prompt"``."""
    rule: dict[str, Any] = {
        "tau_cov": _plain(config.tau_cov), "tau_uniq": _plain(config.tau_uniq),
        "weights": {c: _plain(v) for c, v in zip(COMPONENTS, config.weights.as_list())},
        "masking": _plain(config.masking), "max_completion_chars": _plain(config.max_completion_chars),
        "mode": _plain(config.mode),
        **{k: _plain(getattr(config, k)) for k in ("coverage_edges", "uniqueness_edges", "uniqueness_values",
                                                   "format_thresholds", "repeat_penalty", "summary_edges",
                                                   "summary_penalties", "tag_penalty")},
        "total": "weighted sum of the mean components, not clipped",
    }
    if rule["masking"] == "prompt":
        rule["prompt"] = str(prompt)
    return rule


def rule_fingerprint(rule: Mapping[str, Any]) -> str:
    """12 hex digits of the SHA-256 of ``rule`` as sorted JSON: equal rules, equal fingerprints."""
    return hashlib.sha256(json.dumps(rule, sort_keys=True).encode("utf-8")).hexdigest()[:12]


def reference_numbers(score: Mapping[str, Any], config: RewardConfig) -> dict[str, float]:
    """One response's reference numbers from its ``score_completions`` dict under ``config`` (the reference rule):
    the rates, the components and their weighted sum (not clipped)."""
    out = {k: float(score[k]) for k in (*RATES, *COMPONENTS)}
    out["total"] = float(sum(w * out[c] for c, w in zip(COMPONENTS, config.weights.as_list())))
    return out


class EmbeddingMemo:
    """An encoder that encodes each distinct sentence once and answers later calls from the rows it kept.

    Two scorers of the same responses (own rule, reference rule) with one memo make one encoder pass: the second
    asks for the same sentences and gets the same embeddings, so its similarities are the first's. ``encoded``:
    the sentences the wrapped encoder saw; ``device`` is the wrapped encoder's (the scorer keeps CUDA rows as
    tensors)."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder
        self.encoded = 0
        self._rows: dict[str, Any] = {}

    @property
    def device(self) -> Any:
        return getattr(self.encoder, "device", None)

    def encode(self, sentences: Sequence[str], **kwargs: Any) -> Any:
        sentences = list(sentences)
        new = [s for s in dict.fromkeys(sentences) if s not in self._rows]
        if new:
            block = self.encoder.encode(new, **kwargs)
            if len(block) != len(new):  # let the scorer name the bad shape
                return block
            self.encoded += len(new)
            self._rows.update(zip(new, block))
        rows = [self._rows[s] for s in sentences]
        if not rows:
            return self.encoder.encode([], **kwargs)
        if type(rows[0]).__module__.startswith("torch"):
            import torch

            return torch.stack(rows)
        return np.stack([np.asarray(r) for r in rows])


def score_with_reference(situations: Sequence[str], responses: Sequence[Any], references: Sequence[Any],
                         encoder: Any, config: RewardConfig, reference: RewardConfig, *, prompt: str = "implicit",
                         tokenizer: Any = None) -> tuple[list[dict], list[dict[str, float]]]:
    """(each response's ``score_responses`` dict under ``config``, its ``reference_numbers`` under ``reference``),
    from one encoder pass over the sentences (``EmbeddingMemo``)."""
    memo = EmbeddingMemo(encoder)
    own = _score(situations, responses, references, memo, config, prompt=prompt, tokenizer=tokenizer)
    ref = _score(situations, responses, references, memo, reference, prompt=prompt, tokenizer=tokenizer, quiet=True)
    return own, [reference_numbers(s, reference) for s in ref]
