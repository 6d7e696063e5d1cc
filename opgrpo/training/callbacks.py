"""Trainer callbacks that write a run's metrics and sample completions as JSON lines in the run directory.

- ``MetricsJsonlCallback``: every trainer log (``on_log``) becomes one line of ``metrics.jsonl`` with the step,
  epoch and everything TRL logged at that step (GRPO: ``reward``, ``reward_std``,
  ``rewards/<component>/mean|std``, ``kl``, ``entropy``, ``completions/mean_length``, ``clip_ratio/*``, ``loss``,
  ``learning_rate``, ...). On resume the lines of steps after the checkpoint and the end-of-run summaries of earlier
  attempts (``train_runtime``: a preempted attempt logs one at the step it stopped) are dropped, so the file stays
  one history with each step once.
- ``PreemptionCallback``: at each optimizer step end, when a preemption signal reached any rank
  (opgrpo.training.preempt), every rank saves a full checkpoint of that step and stops.
- ``CompletionSamplesCallback``: every ``every_n_steps`` optimizer steps, a few (prompt, completion, per-component
  reward, advantage) rows of the latest generation batch go to ``completions.jsonl``.

Both write on the main process only. W&B logging is the app's job (one run per Hydra job: opgrpo.app.tracking
passes its own callback in ``callbacks``).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from opgrpo.utils.jsonio import append_jsonl, read_jsonl
from opgrpo.utils.jsonio import jsonable as _jsonable


class MetricsJsonlCallback(TrainerCallback):
    """Append every log dict to ``path`` (one JSON object per line: ``step``, ``epoch``, ``time`` + the logs)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or not self.path.exists():
            return
        # A fresh run starts a new file; a resumed run forgets what was logged after its checkpoint.
        rows = read_jsonl(self.path)
        kept = [r for r in rows if 0 < state.global_step and int(r.get("step", 0)) <= state.global_step
                and "train_runtime" not in r]
        if len(kept) != len(rows):
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        record = {"step": int(state.global_step), "epoch": state.epoch, "time": time.time()}
        record.update({k: _jsonable(v) for k, v in logs.items()})
        append_jsonl(self.path, [record])


class PreemptionCallback(TrainerCallback):
    """At each optimizer step end, ask every rank whether a preemption signal arrived (``watch``:
    opgrpo.training.preempt.catching); if one did, save a full checkpoint of this step (optimizer state included,
    whatever ``save_only_model`` says: resuming needs it) and stop training. ``stopped_at``: the step it stopped at."""

    def __init__(self, watch):
        self.watch = watch
        self.stopped_at: int | None = None

    def on_step_end(self, args, state, control, **kwargs):
        from opgrpo.training.preempt import agreed, signal_name

        signum = agreed(self.watch.signum, getattr(args, "device", None))
        if not signum:
            return
        self.watch.agreed = signum
        self.stopped_at = int(state.global_step)
        args.save_only_model = False
        control.should_save = True
        control.should_training_stop = True
        if state.is_world_process_zero:
            logging.getLogger("opgrpo.training.preempt").warning(
                "%s received: saving checkpoint-%d and stopping", signal_name(signum), state.global_step)


class CompletionSamplesCallback(TrainerCallback):
    """Every ``every_n_steps`` steps, write up to ``max_samples`` rows of the latest generation batch to ``path``.

    A row: ``step``, ``prompt`` (last user message), ``completion`` (text), ``rewards`` ({component: value}),
    ``advantage``. The rows come from the GRPO trainer's own record of its latest generation batch (the one TRL's
    ``log_completions`` reads), so call ``bind(trainer)`` after building the trainer (``run_grpo`` does).
    Samples are taken whole groups first (the TRL batch is ordered group by group), so a group's completions can be
    compared side by side.
    """

    def __init__(self, path: str | Path, every_n_steps: int = 10, max_samples: int = 8):
        if every_n_steps <= 0:
            raise ValueError(f"every_n_steps must be positive, got {every_n_steps}")
        self.path = Path(path)
        self.every_n_steps = every_n_steps
        self.max_samples = max_samples
        self._trainer = None
        self._last_step = -1

    def bind(self, trainer) -> "CompletionSamplesCallback":
        self._trainer = trainer
        return self

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and state.global_step == 0 and self.path.exists():
            self.path.unlink()

    @staticmethod
    def _text(message: Any) -> str:
        if isinstance(message, str):
            return message
        if isinstance(message, list) and message:  # chat messages: keep the last one's content
            last = message[-1]
            return str(last.get("content", "")) if isinstance(last, dict) else str(last)
        return str(message)

    def rows(self, step: int) -> list[dict]:
        logs = getattr(self._trainer, "_logs", None)
        if not logs or not logs.get("prompt"):
            return []
        prompts = list(logs["prompt"])
        completions = list(logs["completion"])
        rewards = {name: list(vals) for name, vals in logs.get("rewards", {}).items()}
        advantages = list(logs.get("advantages", []))
        n = min(self.max_samples, len(prompts))
        out = []
        for i in range(n):
            out.append(
                {
                    "step": step,
                    "prompt": self._text(prompts[i]),
                    "completion": self._text(completions[i]),
                    "rewards": {k: _jsonable(v[i]) for k, v in rewards.items() if i < len(v)},
                    "advantage": _jsonable(advantages[i]) if i < len(advantages) else None,
                }
            )
        return out

    def on_step_end(self, args, state, control, **kwargs):
        step = int(state.global_step)
        if not state.is_world_process_zero or step % self.every_n_steps or step == self._last_step:
            return
        self._last_step = step
        rows = self.rows(step)
        if rows:
            append_jsonl(self.path, rows)
