"""The OP reward: coverage and uniqueness of perspectives (from the similarity estimator), format and tag.

Public face (``from opgrpo.reward import score_completions``):

- ``score_completions(situations, completions, references, encoder, config=None)``: one batched call,
  a dict of components, rates and counters per completion.
- ``OPRewardScorer``: the same, keeping the reference-embedding cache across calls (training).
- ``make_reward_functions`` / ``make_total_reward`` / ``reward_weights`` / ``grpo_reward_setup``: TRL
  reward callables (``opgrpo.reward.trl``); ``make_scorer``: a scorer whose prompt keywords use a tokenizer.
- ``score_responses``: the reward of evaluation responses, with the prompts ``masking="prompt"`` needs.
- ``RewardConfig`` / ``RewardWeights`` / ``COMPONENTS``: the knobs, paper preset by default.

Modules: ``config`` (knobs), ``rules`` (pure scoring rules), ``inputs`` (reading and cleaning raw input),
``scorer`` (batched scoring), ``trl`` (TRL adapter), ``evaluation`` (eval-time scoring).
"""
from opgrpo.reward.config import COMPONENTS, SUMMARY_KEYS, RewardConfig, RewardWeights
from opgrpo.reward.evaluation import score_responses
from opgrpo.reward.scorer import OPRewardScorer, score_completions
from opgrpo.reward.trl import (
    GRPORewardSetup,
    OPRewardFunction,
    grpo_reward_setup,
    make_reward_functions,
    make_scorer,
    make_total_reward,
    reward_weights,
)

__all__ = [
    "COMPONENTS",
    "SUMMARY_KEYS",
    "GRPORewardSetup",
    "OPRewardFunction",
    "OPRewardScorer",
    "RewardConfig",
    "RewardWeights",
    "grpo_reward_setup",
    "make_reward_functions",
    "make_scorer",
    "make_total_reward",
    "reward_weights",
    "score_completions",
    "score_responses",
]
