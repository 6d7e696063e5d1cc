"""A TRL reward function for the multi-process tests, named by import path (``reward.extra_funcs=[dist_rewards:own_item]``
with ``tests/`` on PYTHONPATH).

Per completion it records, in ``$DIST_REWARDS_DIR/rank<RANK>.jsonl``, the rank, the step, the item id and what the
rank received with it (prompt text, references), so the test can check afterwards that every rank scored its own
items. The reward varies with the completion (its length modulo 7), so GRPO has a non-zero advantage and the weights
move. ``$DIST_REWARDS_KILL_AT`` = N: rank 0 SIGKILLs itself when asked to score at global step N (the kill-and-resume
test); a resumed run unsets it.
"""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path


def own_item(prompts, completions, references, item_id, trainer_state=None, **kwargs):
    rank = int(os.environ.get("RANK", "0"))
    step = int(trainer_state.global_step) if trainer_state is not None else -1
    kill_at = os.environ.get("DIST_REWARDS_KILL_AT")
    if kill_at and rank == 0 and step == int(kill_at):
        os.kill(os.getpid(), signal.SIGKILL)
    rows, rewards = [], []
    for prompt, completion, refs, iid in zip(prompts, completions, references, item_id, strict=True):
        text = completion[0]["content"] if isinstance(completion, list) else str(completion)
        rows.append({"rank": rank, "step": step, "item_id": iid, "prompt": prompt[-1]["content"],
                     "references": list(refs)})
        rewards.append((len(text) % 7) / 7.0)
    out = Path(os.environ["DIST_REWARDS_DIR"])
    with open(out / f"rank{rank}.jsonl", "a") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    return rewards
