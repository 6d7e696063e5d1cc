"""GDPO-style reward aggregation: normalise each reward component within its group, then take the weighted sum.

With the plain aggregation (GRPO, TRL ``sum_then_normalize``) the components are summed first and the sum is
normalised within the group, so a group whose completions differ by one component and a group whose completions
differ by several components at once can end up with the same advantages: only the *sum's* spread is seen.
GDPO (group reward-decoupled normalisation) z-scores every component within its group first, so each component
that separates the group contributes its own unit of advantage; the weighted sum of those z-scores is then
normalised once more over the whole batch.

This is exactly TRL 1.16's ``multi_objective_aggregation="normalize_then_sum"`` (grpo_trainer.py): per group and per
component ``(r - mean) / (std + 1e-4)`` with Bessel-corrected std (a component that is constant in a group gives 0),
weighted sum, then ``(s - batch mean) / (batch std + 1e-4)``; TRL ignores ``scale_rewards`` on this path. The
functions here reproduce both aggregations in numpy as the tests' reference; training goes through TRL
(``reward.aggregation=gdpo`` in the Hydra app). Test-only code: it lives with the tests, not in the package.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["gdpo_advantages", "sum_advantages", "EPS"]

EPS = 1e-4  # TRL's std offset


def _std(x: np.ndarray, axis=None, keepdims: bool = False) -> np.ndarray:
    """NaN-aware, Bessel-corrected std (TRL ``nanstd``); NaN where fewer than 2 values."""
    count = np.sum(~np.isnan(x), axis=axis, keepdims=keepdims)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(np.nanmean((x - np.nanmean(x, axis=axis, keepdims=True)) ** 2, axis=axis, keepdims=keepdims)
                       * count / (count - 1))


def _grouped(component_scores, weights, group_size: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(component_scores, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    w = np.asarray(weights, dtype=float).reshape(-1)
    if x.ndim != 2 or x.shape[1] != w.size:
        raise ValueError(f"component_scores must be [n, k] with k = len(weights) = {w.size}, got shape {x.shape}")
    if group_size < 1 or x.shape[0] % group_size:
        raise ValueError(f"group_size ({group_size}) must divide the number of completions ({x.shape[0]})")
    return x, w


def gdpo_advantages(component_scores: np.ndarray, weights: Sequence[float], group_size: int, *,
                    eps: float = EPS, batch_normalize: bool = True) -> np.ndarray:
    """GDPO advantages of ``n`` completions (consecutive groups of ``group_size``) from ``[n, k]`` component scores.

    ``A_i = norm_batch( sum_k w_k * (r_ik - mean_g(r_k)) / (std_g(r_k) + eps) )`` where ``g`` is i's group and
    ``norm_batch(s) = (s - mean(s)) / (std(s) + eps)`` over all ``n`` (``batch_normalize=False`` skips it). Stds are
    Bessel-corrected; NaN scores (unscorable) are left out of the statistics and get advantage 0, as in TRL.
    """
    x, w = _grouped(component_scores, weights, group_size)
    n, k = x.shape
    g = x.reshape(-1, group_size, k)
    mean = np.nanmean(g, axis=1, keepdims=True) if group_size > 1 else g
    std = _std(g, axis=1, keepdims=True) if group_size > 1 else np.zeros_like(mean)
    z = ((g - mean) / (np.nan_to_num(std, nan=0.0) + eps)).reshape(n, k)
    unscorable = np.isnan(x).all(axis=1)
    s = np.nansum(z * w[None, :], axis=1)
    s[unscorable] = np.nan
    if batch_normalize:
        std_b = _std(s) if np.sum(~np.isnan(s)) > 1 else 0.0
        s = (s - np.nanmean(s)) / (np.nan_to_num(std_b, nan=0.0) + eps)
    return np.nan_to_num(s, nan=0.0)


def sum_advantages(component_scores: np.ndarray, weights: Sequence[float], group_size: int, *,
                   scale: str = "group", eps: float = EPS) -> np.ndarray:
    """Plain GRPO advantages (TRL ``sum_then_normalize``): weighted sum, minus the group mean, over the std.

    ``scale``: ``group`` (group std), ``batch`` (std over all ``n``) or ``none`` (no division).
    """
    x, w = _grouped(component_scores, weights, group_size)
    unscorable = np.isnan(x).all(axis=1)
    r = np.nansum(x * w[None, :], axis=1)
    r[unscorable] = np.nan
    grouped = r.reshape(-1, group_size)
    adv = (grouped - np.nanmean(grouped, axis=1, keepdims=True)).reshape(-1)
    if scale == "group":
        std = np.repeat(_std(grouped, axis=1) if group_size > 1 else np.zeros(len(grouped)), group_size)
        adv = adv / (np.nan_to_num(std, nan=0.0) + eps)
    elif scale == "batch":
        adv = adv / (np.nan_to_num(_std(r), nan=0.0) + eps)
    elif scale != "none":
        raise ValueError(f"scale must be group, batch or none, got {scale!r}")
    return np.nan_to_num(adv, nan=0.0)
