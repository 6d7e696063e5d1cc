"""A reward function that returns NaN is counted (``rewards/<name>/nan_share``) and, when it is NaN for every
completion of a step, named in a WARNING (TRL alone reads NaN as "not applicable" and says nothing)."""
from __future__ import annotations

import functools
import logging
import math
import pickle
from types import SimpleNamespace

from helpers import completion_length, make_items, tiny_grpo

from opgrpo.training.grpo import run_grpo
from opgrpo.training.reward_nan import NanCountingReward, RewardNanCallback, count_nan
from opgrpo.utils.jsonio import read_jsonl


def always_nan(prompts, completions, **kw):
    return [float("nan")] * len(completions)


def every_other(prompts, completions, **kw):
    return [None if i % 2 else 1.0 for i in range(len(completions))]


def _state(step=3, main=True):
    return SimpleNamespace(global_step=step, is_world_process_zero=main)


def test_wrapper_returns_the_outputs_unchanged_and_logs_the_share():
    logged = []
    f = NanCountingReward(every_other)
    out = f(prompts=["p"] * 4, completions=["c"] * 4, log_metric=lambda k, v: logged.append((k, v)),
            trainer_state=_state(2))
    assert out == [1.0, None, 1.0, None]
    assert f.__name__ == "every_other" and logged == [("rewards/every_other/nan_share", 0.5)]
    assert (f.calls, f.completions, f.nans, f.all_nan_steps) == (1, 4, 2, [])
    g = NanCountingReward(always_nan)
    g(prompts=["p"] * 3, completions=["c"] * 3, trainer_state=_state(7))  # no log_metric: kept for the callback
    assert g.pending == [1.0] and g.all_nan_steps == [7]


def test_count_nan_wraps_plain_callables_once_and_keeps_names_and_attributes():
    class Scored:
        scorer = "the scorer"

        def __call__(self, prompts, completions, **kw):
            return [0.0] * len(completions)

        def bind(self, trainer):
            self.trainer = trainer

    async def async_reward(prompts, completions, **kw):
        return [0.0]

    part = functools.partial(always_nan)
    funcs = count_nan([completion_length, Scored(), part, async_reward, "hub/model-id"])
    assert [type(f).__name__ for f in funcs] == ["NanCountingReward"] * 3 + ["function", "str"]
    assert [f.__name__ for f in funcs[:3]] == ["completion_length", "Scored", "always_nan"]  # TRL's names
    assert funcs[1].scorer == "the scorer"
    funcs[1].bind("trainer")
    assert funcs[1].func.trainer == "trainer"
    assert count_nan(funcs)[0] is funcs[0]  # not wrapped twice
    assert pickle.loads(pickle.dumps(funcs[0])).__name__ == "completion_length"


def test_callback_warns_once_per_function_and_step_naming_it(caplog):
    nan, half = NanCountingReward(always_nan), NanCountingReward(every_other)
    cb = RewardNanCallback([nan, half, completion_length])
    assert cb.funcs == [nan, half]
    for f in (nan, half):
        f(prompts=["p"] * 2, completions=["c"] * 2, trainer_state=_state(0))
    with caplog.at_level(logging.WARNING, logger="opgrpo.training.reward_nan"):
        cb.on_step_end(None, _state(1), None)
        logs = {"loss": 0.1}
        cb.on_log(None, _state(1), None, logs=logs)
    assert logs == {"loss": 0.1, "rewards/always_nan/nan_share": 1.0, "rewards/every_other/nan_share": 0.5}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'always_nan'" in warnings[0] and "step 1" in warnings[0]
    # TRL already logged the share (log_metric, over all processes): the callback reads it, adds nothing
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="opgrpo.training.reward_nan"):
        logs = {"rewards/every_other/nan_share": 1.0, "rewards/always_nan/nan_share": 0.25}
        cb.on_log(None, _state(2), None, logs=logs)
        cb.on_log(None, _state(2, main=False), None, logs=dict(logs))  # other ranks stay quiet
    assert logs == {"rewards/every_other/nan_share": 1.0, "rewards/always_nan/nan_share": 0.25}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'every_other'" in warnings[0] and "step 2" in warnings[0]


def test_grpo_run_logs_nan_share_and_warns_about_an_all_nan_reward(tiny_model, tmp_path, caplog):
    settings = tiny_grpo(max_steps=2, save_steps=100, completion_samples_every=0)
    with caplog.at_level(logging.WARNING):
        run_grpo(tiny_model, make_items(2), [completion_length, always_nan, every_other], [1.0, 1.0, 1.0],
                 settings, tmp_path)
    rows = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if "rewards/always_nan/mean" in r]
    assert rows  # the steps that scored a generation batch (one here: a batch serves two optimizer steps)
    for row in rows:
        assert row["rewards/always_nan/nan_share"] == 1.0
        assert row["rewards/every_other/nan_share"] == 0.5
        assert row["rewards/completion_length/nan_share"] == 0.0
        assert row["rewards/always_nan/mean"] is None or math.isnan(row["rewards/always_nan/mean"])
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "NaN" in r.getMessage()]
    assert len(warned) == len(rows)
    assert all("'always_nan'" in w and f"step {r['step']}" in w for w, r in zip(warned, rows))
