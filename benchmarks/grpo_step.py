"""Cost of one CPU GRPO step with SmolLM2-135M-Instruct, and the share of it spent in the OP reward.

Runs ``opgrpo.training.run_grpo`` twice in the same process on the sample training items (group size ``--group``,
``--tokens`` completion tokens, one prompt per step, one optimizer step per generation batch):

  (a) baseline: one trivial reward (completion length), i.e. generation + loss + optimizer step only;
  (b) the OP reward: the four components of ``opgrpo.reward.scorer.make_reward_functions`` with the paper weights,
      scored by an estimator (``--encoder``, default the offline all-MiniLM-L6-v2).

Every reward callable is wrapped with a timer. Printed per run: median step time over the steps after the first
(the first pays one-off costs), steps/s, the reward share of step time, and the process's peak RSS; then the
ratio (b)/(a) of median step times. Example::

    .venv/bin/python benchmarks/grpo_step.py --steps 4 --group 4 --tokens 64

The project's own overhead on a step (run_grpo vs a bare trl.GRPOTrainer, same trivial reward, 1 process and 2
DeepSpeed ZeRO-2 processes) is measured by the sibling ``benchmarks/grpo_overhead.py``.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from transformers import TrainerCallback


class TimedReward:
    """Wrap a TRL reward callable, keeping its name, and add up the seconds spent in it."""

    def __init__(self, func):
        self.func = func
        self.__name__ = getattr(func, "__name__", type(func).__name__)
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return self.func(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1


class StepTimer(TrainerCallback):
    """Wall time of every optimizer step (generation and reward scoring happen inside it)."""

    def __init__(self, rewards):
        self.rewards = rewards
        self.steps: list[float] = []
        self.reward_seconds: list[float] = []
        self._t0 = 0.0
        self._r0 = 0.0

    def _reward_total(self) -> float:
        return sum(r.seconds for r in self.rewards)

    def on_step_begin(self, args, state, control, **kwargs):
        self._t0 = time.perf_counter()
        self._r0 = self._reward_total()

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(time.perf_counter() - self._t0)
        self.reward_seconds.append(self._reward_total() - self._r0)


def peak_rss_mib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib / 1024.0


def length_reward(prompts, completions, **kwargs):
    return [len(c[0]["content"]) / 100.0 for c in completions]


def run(name, model, items, funcs, weights, args) -> dict:
    from opgrpo.training.grpo import GRPOSettings, run_grpo

    timed = [TimedReward(f) for f in funcs]
    timer = StepTimer(timed)
    settings = GRPOSettings(
        prompts_per_step=1, mini_batch_size=1, completion_samples_every=0,
        trl=dict(num_generations=args.group, per_device_train_batch_size=args.group,
                 max_completion_length=args.tokens, max_steps=args.steps, save_steps=10_000, seed=args.seed,
                 # the paper preset's choices where they differ from TRL's defaults (conf/trainer/paper.yaml)
                 logging_steps=1, beta=0.001, use_bias_correction_kl=False, lr_scheduler_type="constant",
                 activation_checkpointing=False, save_total_limit=2),
    )
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        run_grpo(model, items, timed, weights, settings, out, callbacks=[timer])
        total = time.perf_counter() - t0
    steady = timer.steps[1:] or timer.steps
    steady_reward = timer.reward_seconds[1:] or timer.reward_seconds
    median = statistics.median(steady)
    result = {
        "name": name,
        "first_step_s": timer.steps[0],
        "median_step_s": median,
        "steps_per_s": 1.0 / median,
        "reward_share": sum(steady_reward) / sum(steady),
        "reward_s_per_step": statistics.median(steady_reward),
        "run_s": total,
        "peak_rss_mib": peak_rss_mib(),
    }
    print(
        f"{name:>9}: first step {result['first_step_s']:.2f} s, median step {median:.2f} s "
        f"({result['steps_per_s']:.3f} steps/s), reward {result['reward_s_per_step']:.3f} s/step = "
        f"{100 * result['reward_share']:.1f}% of step time, peak RSS so far {result['peak_rss_mib']:.0f} MiB, "
        f"whole run {total:.1f} s",
        flush=True,
    )
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per run (the first is not timed)")
    parser.add_argument("--group", type=int, default=4, help="completions per prompt")
    parser.add_argument("--tokens", type=int, default=64, help="max completion tokens")
    parser.add_argument("--model", default="", help="policy path (default: offline SmolLM2-135M-Instruct)")
    parser.add_argument("--encoder", default="", help="estimator path (default: offline all-MiniLM-L6-v2)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (0: torch's default); on a shared CPU 1 thread avoids spin-waiting")
    args = parser.parse_args(argv)

    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    from sentence_transformers import SentenceTransformer

    from opgrpo.app.resources import minilm_path, smollm_path
    from opgrpo.benchmark import load_items, sample_data_path
    from opgrpo.reward import make_reward_functions, reward_weights

    model = args.model or str(smollm_path())
    items, _ = load_items(sample_data_path("train"))
    encoder = SentenceTransformer(args.encoder or str(minilm_path()), device="cpu")
    print(f"policy {model}, {len(items)} items, group {args.group}, {args.tokens} tokens, {args.steps} steps, "
          f"torch threads {torch.get_num_threads()}", flush=True)

    base = run("baseline", model, items, [length_reward], [1.0], args)
    op = run("op_reward", model, items, make_reward_functions(encoder), reward_weights(), args)
    print(f"step time op_reward / baseline: {op['median_step_s'] / base['median_step_s']:.2f}x "
          f"(reward share {100 * op['reward_share']:.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
