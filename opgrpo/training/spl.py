"""Soft Preference Learning (Slocum et al., arXiv 2511.08594) on top of GRPO.

SPL splits the KL penalty into its two parts and weights them separately:

    maximise  E[r] + alpha * H(pi) - beta * CE(pi, pi_ref),        KL(pi || pi_ref) = CE(pi, pi_ref) - H(pi)

so ``alpha * H - beta * CE = -beta * KL + (alpha - beta) * H``: alpha = beta is ordinary KL-regularised RL, and
alpha > beta adds an entropy bonus that keeps the policy more diverse. Two ways to train it with TRL's GRPO:

- ``mode="loss"``: TRL's KL term with coefficient beta (k3 per-token estimator, in the loss) plus TRL's entropy
  bonus ``entropy_coef = alpha - beta``. TRL subtracts ``entropy_coef x`` (mean per-token entropy of the full
  next-token distribution over the micro-batch's completion tokens) from the loss, i.e. it *is* a bonus for a
  positive coefficient. Needs alpha >= beta (TRL's entropy_coef is a bonus; use mode="reward" below it).
- ``mode="reward"``: the sequence-level Monte-Carlo form ``r - alpha * log pi(y|x) + beta * log pi_ref(y|x)`` as
  an extra reward ``spl_shaping`` (weight 1) scored with the current policy and a frozen reference; TRL's own KL
  is off (beta=0) and no entropy bonus. Its expectation over y ~ pi is ``E[r] + alpha * H_seq - beta * CE_seq``.
  The shaping reward runs extra forward passes in-process (single process / DDP; not for ZeRO-3 sharded models).

TRL logs ``entropy`` (mean token entropy) and ``kl`` (when beta > 0) every step; mode="reward" adds
``spl/logp``, ``spl/ref_logp`` and ``spl/shaping`` (batch means).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from opgrpo.utils.checks import Choice, Problems

__all__ = ["SPLConfig", "SPLMode", "SPL_MODES", "spl_settings", "spl_shaping", "SPLShapingReward"]

logger = logging.getLogger(__name__)



class SPLMode(Choice):
    """``SPLConfig.mode``: SPL through TRL's loss terms, or as a shaping reward."""

    loss = "loss"
    reward = "reward"


SPL_MODES = tuple(m.value for m in SPLMode)


@dataclass
class SPLConfig:
    """SPL coefficients (``algorithm=spl`` sets ``enabled``)."""

    enabled: bool = False
    """Train with SPL instead of the plain KL-regularised GRPO objective."""
    alpha: float = 0.01
    """Entropy weight: the policy's entropy H(pi) enters the objective with +alpha."""
    beta: float = 0.001
    """Cross-entropy-to-reference weight: CE(pi, pi_ref) enters with -beta (the KL coefficient when alpha = beta)."""
    mode: SPLMode = SPLMode.loss
    """``loss`` (``trainer.grpo.trl.beta`` = beta, ``trl.entropy_coef`` = alpha - beta) or ``reward`` (r - alpha
    log pi + beta log pi_ref)."""

    def problems(self) -> list[str]:
        """Every invalid setting as ``key: message`` (keys relative to ``spl``)."""
        p = Problems()
        for name in ("alpha", "beta"):
            v = getattr(self, name)
            if p.finite(name, v) and v < 0:
                p.add(name, f"must be a finite number >= 0, got {v}")
        p.enum("mode", self.mode, SPLMode)
        if not p and self.mode == "loss" and self.alpha < self.beta:
            p.add("alpha", f"({self.alpha}) < spl.beta ({self.beta}) would need a negative entropy bonus in "
                           "mode=loss; use spl.mode=reward for alpha < beta")
        return list(p)

    def validate(self) -> "SPLConfig":
        p = Problems("spl.")
        p.extend_from("", self.problems())
        p.raise_if_any()
        return self


def spl_settings(settings, spl: SPLConfig):
    """A copy of the ``GRPOSettings`` carrying SPL in its TRL fields: mode=loss sets ``trl.beta`` and
    ``trl.entropy_coef = alpha - beta``; mode=reward turns TRL's KL and entropy bonus off (both live in the
    ``spl_shaping`` reward)."""
    spl.validate()
    if spl.mode == "loss":
        coefs = dict(beta=float(spl.beta), entropy_coef=float(spl.alpha - spl.beta))
    else:
        coefs = dict(beta=0.0, entropy_coef=0.0)
    return replace(settings, trl={**settings.trl, **coefs})


def spl_shaping(policy_logp: Sequence[float], ref_logp: Sequence[float], alpha: float, beta: float) -> np.ndarray:
    """``-alpha * log pi(y) + beta * log pi_ref(y)`` per response (sequence log-probs)."""
    return -alpha * np.asarray(policy_logp, dtype=float) + beta * np.asarray(ref_logp, dtype=float)


class SPLShapingReward:
    """TRL reward callable ``spl_shaping``: ``-alpha log pi(y|x) + beta log pi_ref(y|x)`` of each completion.

    ``reference``: a causal LM (or a path, loaded frozen); the policy is the trainer's model, attached with
    ``bind(trainer)`` (``run_grpo`` binds every reward function that has ``bind``) or passed as ``policy``.
    Log-probs are sums over the completion tokens, with logits divided by ``temperature`` as TRL samples.
    """

    __name__ = "spl_shaping"

    def __init__(self, reference: Any, alpha: float, beta: float, *, tokenizer: Any = None, policy: Any = None,
                 temperature: float = 1.0, batch_size: int = 8, dtype: str = "") -> None:
        if isinstance(reference, (str, bytes)) or hasattr(reference, "__fspath__"):
            from transformers import AutoModelForCausalLM

            kwargs = {"dtype": dtype} if dtype and dtype != "auto" else {}
            reference = AutoModelForCausalLM.from_pretrained(str(reference), **kwargs)
        self.reference = reference.eval().requires_grad_(False)
        self.alpha, self.beta = float(alpha), float(beta)
        self.tokenizer, self.policy = tokenizer, policy
        self.temperature, self.batch_size = float(temperature), int(batch_size)

    def bind(self, trainer: Any) -> None:
        self.policy = trainer.model
        self.tokenizer = self.tokenizer or trainer.processing_class
        device = next(trainer.model.parameters()).device
        self.reference.to(device)

    def _prompt_ids(self, prompt: Any) -> list[int]:
        if isinstance(prompt, str):
            return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        ids = self.tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
        if hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return list(ids)

    def __call__(self, prompts: list[Any] | None = None, completions: list[Any] | None = None,
                 completion_ids: list[list[int]] | None = None, **columns: Any) -> list[float]:
        from opgrpo.models.logprobs import token_logprob_sums

        if self.policy is None or self.tokenizer is None:
            raise RuntimeError("SPLShapingReward needs a policy and a tokenizer: call bind(trainer) first")
        if completion_ids is None:
            completion_ids = [self.tokenizer(_text(c), add_special_tokens=False)["input_ids"] for c in completions]
        prompt_ids = [self._prompt_ids(p) for p in prompts]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        kw = dict(batch_size=self.batch_size, pad_token_id=pad, temperature=self.temperature)
        logp = token_logprob_sums(self.policy, prompt_ids, completion_ids, **kw)
        ref = token_logprob_sums(self.reference, prompt_ids, completion_ids, **kw)
        shaped = spl_shaping(logp, ref, self.alpha, self.beta)
        log_metric = columns.get("log_metric")
        if callable(log_metric) and len(shaped):
            log_metric("spl/logp", float(np.mean(logp)))
            log_metric("spl/ref_logp", float(np.mean(ref)))
            log_metric("spl/shaping", float(np.mean(shaped)))
        return [float(v) for v in shaped]


def _text(completion: Any) -> str:
    if isinstance(completion, str):
        return completion
    return completion[-1]["content"] if completion else ""
