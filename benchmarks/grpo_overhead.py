"""The project's overhead on a GRPO step: ``opgrpo`` (``run_grpo``) against a bare ``trl.GRPOTrainer``, on CPU,
for 1 process and for 2 DeepSpeed ZeRO-2 processes (torchrun, gloo, DeepSpeed's CPU accelerator).

Both sides train the same policy on the same prompts with the same ``GRPOConfig`` fields, the same DeepSpeed config
(``conf/deepspeed/<name>.yaml``) and the same trivial reward (completion length), so only the project's layer
differs:

  bare    ``trl.GRPOTrainer(model, [length_reward], args=grpo_config(...))`` and ``trainer.train()``: the config is
          the output of ``opgrpo.training.grpo.grpo_config`` (so every field matches), the process group is made by
          ``setup_process_group`` (without it DeepSpeed does not start on CPU at all), nothing else;
  opgrpo  ``opgrpo.training.grpo.run_grpo`` as the ``grpo`` stage calls it: prompt-length filter, the project's
          callbacks (``MetricsJsonlCallback`` writing metrics.jsonl at every step, ``CompletionSamplesCallback``
          writing completions.jsonl at every step: the worst case, the CPU preset writes every 2nd), final save.

One invocation per world size runs both sides in alternating order (bare, opgrpo, opgrpo, bare, ...) in the same
processes, so machine noise hits both. A step's time is the wall time from one ``on_step_begin`` to the next
(generation, reward, loss, optimizer step, logging and every callback of the step); the first ``--warmup`` steps of
each run are not timed. Printed per world size: median step time of each side, the ratio opgrpo / bare, the time
spent inside the project's callbacks per step (timed directly), and PASS/FAIL of "overhead <= 5% of the step".

The policy is a tiny random Llama (``--hidden``/``--layers``, the SmolLM2 tokenizer) built in a temporary folder:
it measures the machinery, not a real model; with a real policy the step is longer and the overhead share smaller.
On a busy machine the step time of one side varies by a few percent from run to run: read PASS/FAIL with the
printed noise line, the CPU-seconds ratio and the directly timed callback share. Examples (2 cores: about 3.5 min
for 1 process, 3 min for 2 processes, 6.5 min for both)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/grpo_overhead.py               # 1 process, then 2 (ZeRO-2)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/grpo_overhead.py --procs 2 --deepspeed zero3
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled",
       "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
for _k, _v in ENV.items():
    os.environ.setdefault(_k, _v)
LIMIT = 0.05  # the project's overhead may be at most this share of the bare step


def length_reward(prompts=None, completions=None, **kwargs):
    """The trivial reward both sides train on: completion length in hundreds of characters."""
    return [len(c[-1]["content"] if isinstance(c, list) else c) / 100.0 for c in completions or []]


# ---- worker: one (torchrun) process of one world size ------------------------------------------------------------
def _callback_timers():
    """Time the project's callbacks directly: every hook of MetricsJsonlCallback / CompletionSamplesCallback the
    trainer calls is wrapped with a timer (the wrapper costs two perf_counter calls)."""
    from opgrpo.training import callbacks

    spent = {"s": 0.0}
    for cls in (callbacks.MetricsJsonlCallback, callbacks.CompletionSamplesCallback):
        for hook in ("on_train_begin", "on_log", "on_step_end"):
            if hook not in cls.__dict__:
                continue
            orig = cls.__dict__[hook]

            def timed(self, *a, _orig=orig, **kw):
                t0 = time.perf_counter()
                try:
                    return _orig(self, *a, **kw)
                finally:
                    spent["s"] += time.perf_counter() - t0

            setattr(cls, hook, timed)
    return spent


def _step_timer(spent):
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Per step (one step start to the next): wall seconds, this process's CPU seconds, and the seconds spent
        inside the project's callbacks."""

        def __init__(self):
            self.marks: list[tuple[float, float, float]] = []

        def on_step_begin(self, args, state, control, **kwargs):
            self.marks.append((time.perf_counter(), time.process_time(), spent["s"]))

        def steps(self) -> tuple[list[float], list[float], list[float]]:
            m = self.marks
            return tuple([m[i + 1][k] - m[i][k] for i in range(len(m) - 1)] for k in range(3))

    return StepTimer()


def _fresh_accelerator() -> None:
    """Forget the last trainer's Accelerator (accelerate refuses a second DeepSpeed one in a process), keeping the
    process group; both sides pass through here before every run."""
    from accelerate.state import AcceleratorState, GradientState

    gc.collect()  # the last run's trainer (kept by reference cycles) goes now, not during the next run's steps
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    try:
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()
    except ImportError:  # pragma: no cover - older transformers
        pass


def worker(a) -> int:
    import torch

    torch.set_num_threads(a.threads)
    from trl import GRPOTrainer

    from opgrpo.benchmark import load_items, sample_data_path
    from opgrpo.training.common import load_tokenizer
    from opgrpo.training.distributed import all_gather, dist_info, setup_process_group
    from opgrpo.training.grpo import (
        GRPOSettings,
        build_grpo_dataset,
        drop_long_prompts,
        grpo_config,
        run_grpo,
    )

    deepspeed = json.loads(Path(a.deepspeed_json).read_text()) if a.deepspeed_json else ""
    setup_process_group(deepspeed=bool(deepspeed))
    info = dist_info()
    spent = _callback_timers()
    items, _ = load_items(sample_data_path("train"))
    settings = GRPOSettings(
        prompts_per_step=a.prompts, mini_batch_size=a.prompts, max_prompt_length=256, completion_samples=4,
        completion_samples_every=1,
        trl=dict(num_generations=a.group, per_device_train_batch_size=a.per_device, learning_rate=1e-5,
                 max_completion_length=a.tokens, max_steps=a.steps + 1, logging_steps=1, save_steps=10**6,
                 seed=a.seed,
                 # the paper preset's choices where they differ from TRL's defaults (conf/trainer/paper.yaml)
                 beta=0.001, use_bias_correction_kl=False, lr_scheduler_type="constant",
                 activation_checkpointing=False, save_total_limit=2),
    )  # steps + 1: the last step's start closes the last timed interval

    def bare(out: Path, timer) -> None:
        args = grpo_config(settings, out, world_size=info.world_size, reward_weights=[1.0], deepspeed=deepspeed)
        tokenizer = load_tokenizer(a.model)
        dataset, _ = drop_long_prompts(build_grpo_dataset(items), tokenizer, settings.max_prompt_length)
        GRPOTrainer(model=a.model, reward_funcs=[length_reward], args=args, train_dataset=dataset,
                    processing_class=tokenizer, callbacks=[timer]).train()

    def opgrpo(out: Path, timer) -> None:
        run_grpo(a.model, items, [length_reward], [1.0], settings, out, deepspeed=deepspeed, callbacks=[timer])

    sides = {"bare": bare, "opgrpo": bare if a.aa else opgrpo}  # --aa: the noise floor, bare against itself
    result: dict = {"world_size": info.world_size, "deepspeed": a.deepspeed_name if deepspeed else "",
                    **{side: {"steps": [], "cpu": [], "callbacks": [], "run_medians": []} for side in sides}}
    for r in range(a.rounds):
        for name in (("bare", "opgrpo") if r % 2 == 0 else ("opgrpo", "bare")):
            _fresh_accelerator()
            timer = _step_timer(spent)
            t0 = time.perf_counter()
            sides[name](Path(a.out) / f"{name}-{r}", timer)
            wall, cpu, inside = (x[a.warmup:] for x in timer.steps())
            cpu_ranks = all_gather(cpu)  # every rank's CPU seconds per step
            side = result[name]
            side["steps"] += wall
            side["callbacks"] += inside
            side["cpu"] += [sum(per_rank) for per_rank in zip(*cpu_ranks)]
            side["run_medians"].append(statistics.median(wall))
            if info.is_main:
                print(f"[{info.world_size} proc] round {r} {name:>6}: {' '.join(f'{s:.2f}' for s in wall)} s/step "
                      f"(run {time.perf_counter() - t0:.0f} s)", flush=True)
    if info.is_main:
        Path(a.result).write_text(json.dumps(result))
    return 0


# ---- driver: build the policy, launch one worker per world size, compare -----------------------------------------
def build_policy(out: Path, hidden: int, layers: int) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from opgrpo.app.resources import smollm_path

    tok = AutoTokenizer.from_pretrained(smollm_path())
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    n = sum(p.numel() for p in model.parameters())
    print(f"policy: tiny random Llama, hidden {hidden}, {layers} layers, {n / 1e6:.1f}M parameters "
          f"(SmolLM2 tokenizer, vocab {len(tok)}), in {out}", flush=True)


def deepspeed_config(name: str) -> dict:
    """``config:`` of conf/deepspeed/<name>.yaml: the exact dict the ``deepspeed=<name>`` group hands the trainer."""
    import yaml

    return yaml.safe_load((ROOT / "conf" / "deepspeed" / f"{name}.yaml").read_text())["config"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(nproc: int, a, tmp: Path, model: Path) -> dict:
    out = tmp / f"runs-{nproc}"
    result = tmp / f"result-{nproc}.json"
    worker_args = ["--worker", "--model", str(model), "--out", str(out), "--result", str(result)]
    for key in ("steps", "warmup", "rounds", "tokens", "group", "prompts", "seed", "threads"):
        worker_args += [f"--{key}", str(getattr(a, key))]
    if a.aa:
        worker_args.append("--aa")
    worker_args += ["--per-device", str(a.per_device or a.prompts * a.group // nproc)]
    if nproc > 1:
        ds = tmp / f"{a.deepspeed}.json"
        ds.write_text(json.dumps(deepspeed_config(a.deepspeed)))
        worker_args += ["--deepspeed-json", str(ds), "--deepspeed-name", a.deepspeed]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--nnodes", "1",
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), __file__, *worker_args]
    else:
        cmd = [sys.executable, __file__, *worker_args]
    env = {**os.environ, **ENV, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "ACCELERATE_USE_DEEPSPEED"):
        env.pop(key, None)
    t0 = time.perf_counter()
    lines = []
    with subprocess.Popen(cmd, env=env, cwd=tmp, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith(f"[{nproc} proc]"):
                print("  " + line, end="", flush=True)
    if proc.returncode != 0 or not result.exists():
        first = next((i for i, line in enumerate(lines) if "Traceback" in line), max(0, len(lines) - 60))
        print("\n".join(lines[first:first + 80]), file=sys.stderr)
        raise SystemExit(f"the {nproc}-process worker failed (exit {proc.returncode}): {' '.join(cmd)}")
    data = json.loads(result.read_text())
    data["wall_s"] = time.perf_counter() - t0
    return data


def report(data: dict) -> bool:
    bare, op = data["bare"], data["opgrpo"]
    mb, mo = statistics.median(bare["steps"]), statistics.median(op["steps"])
    ratio = mo / mb
    cpu_ratio = statistics.median(op["cpu"]) / statistics.median(bare["cpu"])
    paired = statistics.median(o / b for o, b in zip(op["run_medians"], bare["run_medians"]))
    cb = statistics.median(op["callbacks"])
    ok = ratio - 1.0 <= LIMIT
    label = f"{data['world_size']} process" + ("es" if data["world_size"] > 1 else "")
    label += f", DeepSpeed {data['deepspeed']}" if data["deepspeed"] else ", no DeepSpeed"
    print(f"{label}: {len(bare['steps'])} + {len(op['steps'])} timed steps, {data['wall_s']:.0f} s")
    print(f"  bare trl.GRPOTrainer  median step {mb:.3f} s (mean {statistics.mean(bare['steps']):.3f})")
    print(f"  opgrpo run_grpo       median step {mo:.3f} s (mean {statistics.mean(op['steps']):.3f})")
    print(f"  ratio opgrpo / bare   {ratio:.3f}  (overhead {100 * (ratio - 1):+.1f}% of the step; limit "
          f"{100 * LIMIT:.0f}%)  {'PASS' if ok else 'FAIL'}")
    print(f"  same round, paired    median of the rounds' opgrpo / bare ratios {paired:.3f}")
    print(f"  CPU seconds per step  ratio opgrpo / bare {cpu_ratio:.3f} (all processes; what other programs on the "
          f"machine take does not count here)")
    print(f"  project callbacks     {1000 * cb:.1f} ms/step ({100 * cb / mb:.2f}% of the bare step), timed inside")
    spread = [m / mb - 1.0 for m in bare["run_medians"]]
    noise = max(abs(x) for x in spread)
    print(f"  noise                 the bare runs' own medians lie {100 * min(spread):+.1f}% .. {100 * max(spread):+.1f}% "
          f"around the bare median" + ("; that is more than the limit: on a busy machine a FAIL may be noise, "
                                       "rerun it" if noise > LIMIT and not ok else ""), flush=True)
    return ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--procs", default="1,2", help="world sizes to measure, comma-separated (>1: torchrun)")
    parser.add_argument("--deepspeed", default="zero2", help="conf/deepspeed/<name>.yaml for the multi-process runs")
    parser.add_argument("--steps", type=int, default=5, help="optimizer steps per run (the first --warmup untimed)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps at the start of every run")
    parser.add_argument("--rounds", type=int, default=4, help="runs of each side per world size, order alternating")
    parser.add_argument("--tokens", type=int, default=24, help="max completion tokens")
    parser.add_argument("--group", type=int, default=4, help="completions per prompt")
    parser.add_argument("--prompts", type=int, default=2, help="prompts per step (one optimizer step each)")
    parser.add_argument("--per-device", type=int, default=0,
                        help="completions per forward/backward pass (0: the whole step's share of one process)")
    parser.add_argument("--hidden", type=int, default=128, help="tiny policy width")
    parser.add_argument("--layers", type=int, default=4, help="tiny policy depth")
    parser.add_argument("--model", default="", help="a policy path instead of the tiny random Llama")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--aa", action="store_true",
                        help="A/A test: run the bare trainer in the opgrpo slot too, to see this machine's noise floor")
    # worker-only
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--deepspeed-json", default="", help=argparse.SUPPRESS)
    parser.add_argument("--deepspeed-name", default="", help=argparse.SUPPRESS)
    a = parser.parse_args(argv)
    if a.worker:
        return worker(a)
    if a.steps <= a.warmup:
        parser.error(f"--steps ({a.steps}) must be larger than --warmup ({a.warmup})")

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="grpo_overhead_") as tmp:
        tmp = Path(tmp)
        model = Path(a.model) if a.model else tmp / "policy"
        if a.model:
            print(f"policy: {model}", flush=True)
        else:
            build_policy(model, a.hidden, a.layers)
        print(f"group {a.group}, {a.prompts} prompts/step, {a.tokens} completion tokens, {a.steps} steps per run "
              f"({a.warmup} untimed), {a.rounds} runs per side, {a.threads} torch thread(s) per process", flush=True)
        if a.aa:
            print("A/A test: both sides are the bare trl.GRPOTrainer (the 'opgrpo' lines are bare too)", flush=True)
        results = []
        for nproc in (int(n) for n in a.procs.split(",")):
            results.append(launch(nproc, a, tmp, model))
    print()
    ok = [report(r) for r in results]
    print(f"overall: {'PASS' if all(ok) else 'FAIL'} (opgrpo step <= bare step x {1 + LIMIT:.2f}); "
          f"benchmark took {time.perf_counter() - t0:.0f} s")
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
