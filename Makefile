# The two commands of the README (each creates .venv on first use):
#   make demo   - the CPU default run, end to end (experiment=cpu_demo)
#   make test   - the test suite (CPU; `make test-fast` skips the tests marked slow)
PY := .venv/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: env demo test test-fast bench help
help:
	@echo "make demo | make test | make test-fast | make bench | make env"

env:
	@bash scripts/env.sh

demo: env
	$(PY) -m opgrpo experiment=cpu_demo $(ARGS)

# pytest exits 5 when it collects nothing; that is not a failure of the suite itself.
test: env
	$(PY) -m pytest -q $(ARGS) || [ $$? -eq 5 ]

test-fast: env
	$(PY) -m pytest -q -m "not slow and not gpu" $(ARGS) || [ $$? -eq 5 ]

bench: env
	$(PY) benchmarks/reward_throughput.py
	$(PY) benchmarks/nli_throughput.py
