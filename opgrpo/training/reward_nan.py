"""NaN counts of a GRPO run's reward functions: TRL reads NaN (and None) as "not applicable" and says nothing.

A user reward (``reward.extra_funcs``) that returns NaN for every completion would train nothing, silently
(``rewards/<name>/mean: null``). So ``run_grpo`` wraps every plain reward function in ``NanCountingReward``
(``count_nan``), which logs ``rewards/<name>/nan_share`` with the step's metrics (through TRL's ``log_metric``: averaged
over the processes and the logging window), and adds ``RewardNanCallback``, which logs a WARNING naming the function
at a step where it returned NaN/None for every completion.
"""
from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback

logger = logging.getLogger(__name__)

__all__ = ["NanCountingReward", "RewardNanCallback", "count_nan"]


def _is_missing(value: Any) -> bool:
    """TRL's "no reward": None or NaN (anything that is not a number counts too)."""
    if value is None:
        return True
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return True


class NanCountingReward:
    """``func`` as TRL sees it (same ``__name__``, same outputs), counting the NaN/None it returns.

    Each call logs ``rewards/<name>/nan_share`` (the share of this call's completions with no reward) through TRL's
    ``log_metric`` when TRL passes it; otherwise the share waits in ``pending`` for ``RewardNanCallback`` to log.
    A call in which every completion got NaN/None appends the trainer's step to ``all_nan_steps``. Attributes the
    wrapper lacks (``bind``, ``scorer``, ...) are the wrapped function's.
    """

    def __init__(self, func: Callable) -> None:
        self.func = func
        self.__name__ = _callable_name(func)
        self.metric = f"rewards/{self.__name__}/nan_share"
        self.calls = 0
        self.completions = 0
        self.nans = 0
        self.pending: list[float] = []
        self.all_nan_steps: list[int] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = self.func(*args, **kwargs)
        values = list(out) if out is not None else []
        n, nans = len(values), sum(_is_missing(v) for v in values)
        self.calls += 1
        self.completions += n
        self.nans += nans
        if n:
            log_metric = kwargs.get("log_metric")
            if callable(log_metric):
                log_metric(self.metric, nans / n)
            else:
                self.pending.append(nans / n)
            if nans == n:
                state = kwargs.get("trainer_state")
                self.all_nan_steps.append(int(getattr(state, "global_step", -1)) if state is not None else -1)
        return out

    def __getattr__(self, name: str) -> Any:
        if name == "func":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.func, name)

    def __repr__(self) -> str:
        return f"NanCountingReward({self.func!r})"


def _callable_name(func: Callable) -> str:
    """The name TRL gives ``func`` (``trl.trainer.utils.get_callable_name``: partials unwrapped, else the class)."""
    inner = func
    while hasattr(inner, "func") and hasattr(inner, "args") and hasattr(inner, "keywords"):  # functools.partial
        inner = inner.func
    return getattr(inner, "__name__", type(inner).__name__)


def count_nan(funcs: Any) -> list:
    """``funcs`` with every plain synchronous callable wrapped in ``NanCountingReward`` (once); reward models
    (``torch.nn.Module``, hub ids) and async functions pass unchanged."""
    out = []
    for func in funcs:
        plain = callable(func) and not isinstance(func, (str, NanCountingReward)) and not _is_module(func)
        async_ = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(inspect.getattr_static(type(func), "__call__", None))
        out.append(NanCountingReward(func) if plain and not async_ else func)
    return out


def _is_module(func: Any) -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return isinstance(func, torch.nn.Module)


class RewardNanCallback(TrainerCallback):
    """Warn when a reward function returned NaN/None for every completion of a step (see the module docstring).

    ``funcs``: the run's reward functions; those with NaN counts (``NanCountingReward``: a
    ``metric`` name and ``all_nan_steps``) are watched, others ignored. Put it before the callbacks that write the
    logs, so a ``nan_share`` it adds is written with the step. One WARNING per function and step, on the main process.
    """

    def __init__(self, funcs):
        self.funcs = [f for f in funcs if hasattr(f, "all_nan_steps") and hasattr(f, "metric")]
        self._warned: set[tuple[str, int]] = set()

    def _warn(self, name: str, step: int) -> None:
        if (name, step) in self._warned:
            return
        self._warned.add((name, step))
        logger.warning("reward function %r returned NaN (or None) for every completion at step %d: TRL reads NaN as "
                       "'not applicable', so it adds nothing to the reward there; check what it returns", name, step)

    def on_step_end(self, args, state, control, **kwargs):
        for func in self.funcs:  # batches scored during this step (on this process)
            scored, func.all_nan_steps[:] = bool(func.all_nan_steps), []
            if scored and state.is_world_process_zero:
                self._warn(func.__name__, int(state.global_step))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None:
            return
        for func in self.funcs:  # the share over all processes and the logging window (TRL's log_metric)
            if func.metric not in logs and func.pending:
                logs[func.metric] = sum(func.pending) / len(func.pending)
            func.pending.clear()
            share = logs.get(func.metric)
            if state.is_world_process_zero and isinstance(share, (int, float)) and not math.isnan(share) \
                    and share >= 1.0:
                self._warn(func.__name__, int(state.global_step))
