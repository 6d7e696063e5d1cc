"""Off-policy value of a target policy from logged responses: an IPS/SNIPS estimate of a utility plus an entropy
term, with bootstrap intervals. This is *part* of POPE (Huang et al., arXiv 2509.19333), not POPE itself.

What exists: logged responses ``y_i`` sampled by a behaviour policy ``mu`` with their log-probs
``log mu(y_i|x_i)`` and a utility ``u_i`` per response (a given column, or the OP reward total). The target
policy ``pi`` scores the same responses (``opgrpo.models.logprobs.sequence_logprobs``: sum of token log-probs
under a causal LM, batched). The value estimated for ``pi`` is

    V(pi) = E_{y~pi}[u(y)] + coef * E_{y~pi}[-log pi(y|x)]  =  utility + coef * entropy

where the second part is the target policy's own sequence entropy ``H(pi)`` (nats per response), reported under
the key ``coverage``. Both parts are estimated from the logged responses with the same importance weights
``w_i = pi(y_i|x_i) / mu(y_i|x_i)`` (computed in log space):

- ``weighting="snips"`` (default): self-normalised, ``sum_i w_i f_i / sum_i w_i`` (biased, bounded, low variance);
- ``weighting="ips"``: ``(1/n) sum_i w_i f_i`` (unbiased when mu covers pi);
- ``clip > 0``: ``w_i <- min(w_i, clip)`` first (for snips, the clip applies to the weights divided by their max,
  i.e. relative to the largest weight).

A bootstrap over the logged responses (resampled with replacement, ``n_bootstrap`` times) gives percentile
confidence intervals for the utility, the entropy term and the value. ``stage=pope`` reads a responses JSONL with
a ``behaviour_logprob`` column, scores the responses under the configured policy and writes ``pope.json``.

What POPE has and this module does not: its collaborative utility built from human preference signals (here the
utility is whatever column is given, or the OP reward), its entropy-based *coverage* (diversity) component over
the acceptable responses (here the entropy is the policy's own ``E_pi[-log pi(y|x)]``, which rewards spread over
any responses, not coverage of perspectives), the decomposed estimators' variance analysis, and off-policy
optimisation (alignment) with the estimated value.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from opgrpo.utils.checks import Choice, Problems

__all__ = ["POPEConfig", "importance_weights", "pope_estimate", "load_logged_responses", "run_pope"]

logger = logging.getLogger(__name__)


class Weighting(Choice):
    """``POPEConfig.weighting``: self-normalised or plain inverse-propensity importance weights."""

    snips = "snips"
    ips = "ips"


WEIGHTINGS = tuple(w.value for w in Weighting)


@dataclass
class POPEConfig:
    """Off-policy value of logged responses (``stage=pope``): IPS/SNIPS estimate of a utility plus an entropy term
    with bootstrap intervals (part of POPE; see opgrpo.evaluation.pope)."""

    responses_file: str = ""
    """JSONL: one logged response per row with ``response``, ``behaviour_logprob`` and ``prompt`` (string or chat
    messages) or ``situation`` (rendered with the implicit chat prompt), plus the utility column."""
    model_path: str = ""
    """Target policy to evaluate ("" = the pipeline's current policy, else model.name_or_path)."""
    utility_key: str = "utility"
    """Column holding each response's utility; when absent, the OP reward total is scored (needs ``situation`` and
    ``references`` columns)."""
    coverage_coef: float = 0.1
    """Weight of the entropy term (reported as ``coverage``; the target policy's own sequence entropy, not POPE's
    coverage of perspectives): value = utility + coverage_coef * E_pi[-log pi(y)]."""
    weighting: Weighting = Weighting.snips
    """``snips`` (self-normalised importance weights) or ``ips`` (plain inverse propensity scoring)."""
    clip: float = -1.0
    """Clip importance weights at this value (<= 0: no clipping)."""
    n_bootstrap: int = 1000
    """Bootstrap resamples for the confidence intervals."""
    confidence: float = 0.95
    """Confidence level of the percentile intervals."""
    batch_size: int = 8
    """Responses per forward pass when scoring under the target policy."""
    temperature: float = 1.0
    """Divide the target's logits by this before the log-softmax (match the behaviour sampling temperature)."""
    append_eos: bool = True
    """Score the EOS token after each response (as generation ends with it; match how behaviour_logprob was taken)."""
    seed: int = 0
    """Bootstrap seed."""

    def problems(self) -> list[str]:
        """Every invalid setting as ``key: message`` (keys relative to ``pope``)."""
        p = Problems()
        if p.finite("confidence", self.confidence) and not 0.0 < self.confidence < 1.0:
            p.add("confidence", f"must be in (0, 1) (got {self.confidence})")
        if self.n_bootstrap < 0:
            p.add("n_bootstrap", f"must be >= 0 (got {self.n_bootstrap})")
        p.positive("batch_size", self.batch_size)
        p.positive("temperature", self.temperature)
        p.finite("coverage_coef", self.coverage_coef)
        return list(p)

    def validate(self) -> "POPEConfig":
        """Raise ``ConfigProblemsError`` (a ValueError) listing every invalid field; return self when valid."""
        p = Problems("pope.")
        p.extend_from("", self.problems())
        p.raise_if_any()
        return self


# ---------------------------------------------------------------- estimators


def importance_weights(target_logp: Sequence[float], behaviour_logp: Sequence[float], *, weighting: str = "snips",
                       clip: float = -1.0) -> np.ndarray:
    """Importance weights pi/mu from log-probs. For ``snips`` they are scaled by their max (the estimate is
    invariant to the scale; this avoids overflow for long sequences) and ``clip`` is relative to that max."""
    log_w = np.asarray(target_logp, dtype=float) - np.asarray(behaviour_logp, dtype=float)
    if weighting == "snips":
        log_w = log_w - np.max(log_w)
    elif weighting != "ips":
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if clip > 0:
        log_w = np.minimum(log_w, math.log(clip))
    return np.exp(log_w)


def _estimate(w: np.ndarray, f: np.ndarray, weighting: str) -> float:
    if weighting == "snips":
        total = w.sum()
        return float((w * f).sum() / total) if total > 0 else float("nan")
    return float((w * f).mean())


def pope_estimate(utility: Sequence[float], target_logp: Sequence[float], behaviour_logp: Sequence[float], *,
                  coverage_coef: float = 0.1, weighting: str = "snips", clip: float = -1.0, n_bootstrap: int = 1000,
                  confidence: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """IPS/SNIPS estimate of the target policy's value from logged responses (see the module docstring).

    Returns ``utility``, ``coverage`` (the entropy term E_pi[-log pi(y)]), ``value = utility + coverage_coef *
    coverage``, each with ``<name>_ci`` [low, high] from a percentile bootstrap, plus ``n``, the effective sample size
    ``ess = (sum w)^2 / sum w^2`` and the largest normalised weight ``max_weight_share``.
    """
    u = np.asarray(utility, dtype=float)
    t = np.asarray(target_logp, dtype=float)
    b = np.asarray(behaviour_logp, dtype=float)
    n = u.size
    if not (n and t.size == n and b.size == n):
        raise ValueError(f"utility, target_logp and behaviour_logp need the same non-zero length "
                         f"(got {u.size}, {t.size}, {b.size})")
    if not (np.isfinite(u).all() and np.isfinite(t).all() and np.isfinite(b).all()):
        raise ValueError("utility and log-probs must be finite")
    cov = -t  # per-response coverage: the target's surprisal -log pi(y|x)

    def estimates(idx: np.ndarray) -> tuple[float, float, float]:
        w = importance_weights(t[idx], b[idx], weighting=weighting, clip=clip)
        eu, ec = _estimate(w, u[idx], weighting), _estimate(w, cov[idx], weighting)
        return eu, ec, eu + coverage_coef * ec

    all_idx = np.arange(n)
    eu, ec, ev = estimates(all_idx)
    w = importance_weights(t, b, weighting="snips", clip=clip if weighting == "snips" else -1.0)
    out: dict[str, Any] = {
        "n": int(n), "weighting": weighting, "clip": clip, "coverage_coef": coverage_coef,
        "utility": eu, "coverage": ec, "value": ev,
        "behaviour_utility": float(u.mean()),
        "ess": float(w.sum() ** 2 / (w ** 2).sum()),
        "max_weight_share": float(w.max() / w.sum()),
    }
    if n_bootstrap > 0:
        rng = np.random.default_rng(seed)
        boot = np.array([estimates(rng.integers(0, n, n)) for _ in range(n_bootstrap)])
        lo, hi = (1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100
        for j, name in enumerate(("utility", "coverage", "value")):
            col = boot[:, j][np.isfinite(boot[:, j])]
            out[f"{name}_ci"] = [float(np.percentile(col, lo)), float(np.percentile(col, hi))]
            out[f"{name}_se"] = float(col.std(ddof=1))
        out.update(n_bootstrap=int(n_bootstrap), confidence=confidence)
    return out


# ---------------------------------------------------------------- logged responses and the stage body


def load_logged_responses(path: str | Path) -> list[dict]:
    """Rows of a responses JSONL; ValueError naming the file, row and field for a malformed row."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: row {line_no}: not JSON ({exc})") from None
            for key in ("response", "behaviour_logprob"):
                if key not in row:
                    raise ValueError(f"{path}: row {line_no}: missing field {key!r}")
            if "prompt" not in row and "situation" not in row:
                raise ValueError(f"{path}: row {line_no}: needs a 'prompt' or a 'situation' field")
            if not isinstance(row["behaviour_logprob"], (int, float)) or not math.isfinite(row["behaviour_logprob"]):
                raise ValueError(f"{path}: row {line_no}: field 'behaviour_logprob' must be a finite number")
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no logged responses")
    return rows


def run_pope(rows: Sequence[dict], model: Any, tokenizer: Any, config: POPEConfig, *,
             utility: Sequence[float] | None = None) -> dict[str, Any]:
    """Score ``rows`` under the target ``model`` and return ``pope_estimate`` (utility from ``utility`` or the
    rows' ``config.utility_key`` column)."""
    from opgrpo.models.logprobs import sequence_logprobs
    from opgrpo.text.prompts import chat_prompt

    config.validate()
    if utility is None:
        utility = [float(r[config.utility_key]) for r in rows]
    prompts = [r["prompt"] if "prompt" in r else chat_prompt(r["situation"], "implicit") for r in rows]
    target = sequence_logprobs(model, tokenizer, prompts, [r["response"] for r in rows], batch_size=config.batch_size,
                               temperature=config.temperature, append_eos=config.append_eos)
    out = pope_estimate(utility, target, [float(r["behaviour_logprob"]) for r in rows],
                        coverage_coef=config.coverage_coef, weighting=config.weighting, clip=config.clip,
                        n_bootstrap=config.n_bootstrap, confidence=config.confidence, seed=config.seed)
    out["mean_target_logprob"] = float(np.mean(target))
    out["mean_behaviour_logprob"] = float(np.mean([r["behaviour_logprob"] for r in rows]))
    return out
