"""TRL reward callables around one shared ``OPRewardScorer``.

TRL calls each reward function as ``f(prompts=..., completions=..., completion_ids=..., **columns)``
where ``columns`` are the dataset's other columns (ours: ``situation``, ``references``) plus
``trainer_state``, ``log_extra`` and ``log_metric``; it logs ``rewards/<__name__>/mean`` and sums
``reward_weights[i] * f_i``. So:

- ``make_reward_functions`` gives one callable per component (coverage, uniqueness, format, tag)
  with ``reward_weights(config)`` as TRL's weights. They share one scorer and its memo, so a batch
  is scored once, not four times. TRL's weighted sum is NOT clipped at ``clip_min``.
- ``make_total_reward`` gives the exact clipped total (``op_total``) as one callable (weight 1.0).
- ``grpo_reward_setup`` turns ``RewardConfig.aggregation`` (the one aggregation knob) into what TRL needs:
  the callables, their weights and TRL's ``multi_objective_aggregation``.

When TRL passes ``log_metric``, the batch's mean rates and bad-input counts (``op/bad_<flag>``: empty,
truncated, invalid_text, no_references, no_situation, no_prompt) are logged once per scored batch under
``op/...``. Bad input follows ``opgrpo.reward.scorer``: scored 0 and counted, never a failed step.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opgrpo.reward.config import COMPONENTS, RewardConfig
from opgrpo.reward.scorer import OPRewardScorer

logger = logging.getLogger(__name__)

__all__ = ["GRPORewardSetup", "OPRewardFunction", "grpo_reward_setup", "make_reward_functions", "make_total_reward",
           "reward_weights"]

_METRICS = ("coverage_rate", "uniqueness_rate", "strict_layout", "n_candidates")
_FLAGS = ("empty", "truncated", "invalid_text", "no_references", "no_situation", "no_prompt")


class OPRewardFunction:
    """One reward component (or ``total``) as a TRL reward callable; ``__name__`` is the TRL name."""

    def __init__(self, scorer: Any, component: str, name: str | None = None,
                 situation_key: str = "situation", references_key: str = "references") -> None:
        self.scorer = scorer
        self.component = component
        self.__name__ = name or component
        self.situation_key = situation_key
        self.references_key = references_key

    def __call__(self, prompts: list[Any] | None = None, completions: list[Any] | None = None,
                 **columns: Any) -> list[float]:
        completions = list(completions or [])
        n = len(completions)
        situations = columns.get(self.situation_key)
        references = columns.get(self.references_key)
        if situations is None and self.scorer.config.masking == "situation" and not getattr(self, "_warned", False):
            logger.warning("reward %s: no %r column; keywords cannot be masked, so every completion scores 0 on "
                           "coverage and uniqueness (counted as bad/no_situation)", self.__name__, self.situation_key)
            self._warned = True
        if references is None and not getattr(self, "_warned_refs", False):
            logger.warning("reward %s: no %r column; coverage is 0", self.__name__, self.references_key)
            self._warned_refs = True
        prompts = list(prompts) if prompts is not None and len(prompts) == n else None
        before = self.scorer.stats().get("memo_hits", 0)
        results = self.scorer.score(situations, completions, references, prompts, memoize=True)
        log_metric = columns.get("log_metric")
        if callable(log_metric) and self.scorer.stats().get("memo_hits", 0) == before and results:
            _log_batch(log_metric, results)
        return [float(r[self.component]) for r in results]


def _log_batch(log_metric: Callable[[str, float], Any], results: list[dict]) -> None:
    n = len(results)
    for key in _METRICS:
        log_metric(f"op/{key}", sum(float(r[key]) for r in results) / n)
    log_metric("op/total", sum(r["total"] for r in results) / n)
    for flag in _FLAGS:
        log_metric(f"op/bad_{flag}", float(sum(bool(r[flag]) for r in results)))


def make_scorer(encoder: Any, config: RewardConfig | None = None, *, batch_size: int | None = None,
                tokenizer: Any = None) -> OPRewardScorer:
    """An ``OPRewardScorer`` (``encoder`` itself when it is one); with ``tokenizer``, a ``masking="prompt"``
    keyword source is the prompt rendered with its chat template (the authors' decoded prompt)."""
    if isinstance(encoder, OPRewardScorer):
        return encoder
    prompt_to_text = None
    if tokenizer is not None:
        def prompt_to_text(prompt: Any) -> str:
            if isinstance(prompt, str):
                return prompt
            return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    return OPRewardScorer(encoder, config, batch_size=batch_size, prompt_to_text=prompt_to_text)


def make_reward_functions(encoder: Any, config: RewardConfig | None = None, *, batch_size: int | None = None,
                          tokenizer: Any = None) -> list[OPRewardFunction]:
    """[coverage, uniqueness, format, tag] callables sharing one scorer; pair with ``reward_weights(config)``.

    ``encoder`` may be an ``OPRewardScorer`` (then ``config``/``batch_size``/``tokenizer`` are
    ignored). ``tokenizer`` (optional) renders conversational prompts with its chat template for
    ``masking="prompt"``. The weighted sum TRL forms from these is not clipped at ``clip_min``.
    """
    scorer = make_scorer(encoder, config, batch_size=batch_size, tokenizer=tokenizer)
    return [OPRewardFunction(scorer, c) for c in COMPONENTS]


def make_total_reward(encoder: Any, config: RewardConfig | None = None, *, batch_size: int | None = None,
                      tokenizer: Any = None) -> OPRewardFunction:
    """The clipped weighted total as one TRL callable named ``op_total`` (use TRL weight 1.0)."""
    return OPRewardFunction(make_scorer(encoder, config, batch_size=batch_size, tokenizer=tokenizer), "total", name="op_total")


def reward_weights(config: RewardConfig | None = None) -> list[float]:
    """TRL ``reward_weights`` in the order of ``make_reward_functions``."""
    return (config or RewardConfig()).weights.as_list()


@dataclass
class GRPORewardSetup:
    """What ``GRPOTrainer`` gets for one ``RewardConfig.aggregation``."""

    funcs: list[OPRewardFunction]
    """The reward callables (TRL logs ``rewards/<__name__>/mean|std`` for each)."""
    weights: list[float]
    """TRL ``reward_weights``, one per callable."""
    trl_aggregation: str
    """TRL ``multi_objective_aggregation``: ``sum_then_normalize`` or ``normalize_then_sum`` (GDPO)."""


def grpo_reward_setup(encoder: Any, config: RewardConfig | None = None, *, batch_size: int | None = None,
                      tokenizer: Any = None) -> GRPORewardSetup:
    """The reward functions, weights and TRL aggregation for ``config.aggregation`` (one shared scorer).

    ``total`` (paper, exact SPEC reward): the clipped weighted total ``op_total`` is the one trained reward; the
    four components ride along at weight 0 so TRL logs each (nothing is scored twice: one memoised scorer).
    ``components``: TRL weights the four components itself (its sum is not clipped at ``clip_min``).
    ``gdpo``: the four components with ``config.gdpo_weights`` (else ``weights``), each normalised within its group
    first (TRL ``normalize_then_sum``); the total is still logged as ``op/total``. Weights that let the tag penalty
    dominate the z-scores (the paper's) are logged as a WARNING here (``RewardConfig.warnings``).
    """
    config = config or RewardConfig()
    for warning in config.warnings():
        logger.warning("reward.%s", warning)
    components = make_reward_functions(encoder, config, batch_size=batch_size, tokenizer=tokenizer)
    if config.aggregation == "total":
        total = make_total_reward(components[0].scorer)
        return GRPORewardSetup([total, *components], [1.0] + [0.0] * len(components), "sum_then_normalize")
    aggregation = "normalize_then_sum" if config.aggregation == "gdpo" else "sum_then_normalize"
    return GRPORewardSetup(components, config.trained_weights(), aggregation)
