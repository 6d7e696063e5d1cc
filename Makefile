# The two commands of the README (each creates .venv on first use):
#   make demo   - the CPU default run, end to end (experiment=cpu_demo)
#   make test   - the default test suite (CPU, ~10 min; skips the tests marked slow; `make test-all` runs them too)
PY := .venv/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: env demo test test-all bench bench-overhead gpu-check help
help:
	@echo "make demo | make test | make test-all | make bench | make bench-overhead | make gpu-check | make env"

env:
	@bash scripts/env.sh

demo: env
	$(PY) -m opgrpo experiment=cpu_demo $(ARGS)

# pytest exits 5 when it collects nothing; that is not a failure of the suite itself.
test: env
	$(PY) -m pytest -q -m "not slow and not gpu" $(ARGS) || [ $$? -eq 5 ]

# Everything the CPU can run, the slow tests included (~20 min on 2 cores)
test-all: env
	$(PY) -m pytest -q $(ARGS) || [ $$? -eq 5 ]

bench: env
	$(PY) benchmarks/reward_throughput.py
	$(PY) benchmarks/nli_throughput.py

# opgrpo's GRPO step vs a bare trl.GRPOTrainer on CPU: 1 process, then 2 DeepSpeed ZeRO-2 processes (~6.5 min)
bench-overhead: env
	OMP_NUM_THREADS=1 $(PY) benchmarks/grpo_overhead.py $(ARGS)

# On a GPU node: ZeRO-2 and ZeRO-3 GRPO for a few steps (MODEL=<hub id or dir>, default Qwen/Qwen2.5-0.5B-Instruct).
# The policy comes from the hub, so the offline switches exported above are turned off here.
gpu-check:
	HF_HUB_OFFLINE=0 TRANSFORMERS_OFFLINE=0 HF_DATASETS_OFFLINE=0 bash scripts/gpu_check.sh $(MODEL)
