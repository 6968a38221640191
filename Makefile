# Two commands: `make demo` and `make test`. `make help` lists the rest.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) hides the useful lines.
export TF_CPP_MIN_LOG_LEVEL ?= 2

.DEFAULT_GOAL := help
.PHONY: help requirements data demo train lint format docs layers test bench clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z_-]+:.*## / {printf "  make %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): requirements.txt requirements-examples.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-examples.txt
	@touch $(STAMP)

requirements: $(STAMP) ## create .venv from requirements*.txt (only when missing or stale)

data: $(STAMP) ## build the demo's digits dataset and convert it to TFRecords
	$(PY) -m examples.digits data

demo: $(STAMP) ## the whole journey offline: data, convert, train, evaluate, export, predict
	$(PY) -m examples.digits all

lint: $(STAMP) ## ruff check, ruff format --check and mypy on library/
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: $(STAMP) ## ruff format and fix what ruff can
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

layers: $(STAMP) ## the library's layers and the picture of its imports (no arrow up)
	$(PY) tools/layers.py

docs: $(STAMP) ## regenerate the configuration reference from the schemas
	$(PY) -m library.config.reference project docs/configuration.md

test: lint ## lint, then the test suite (a few minutes on 2 cores)
	$(PY) -m pytest

bench: $(STAMP) ## the benchmarks (minutes; figures go in BENCHMARKS.md)
	$(PY) bench/input_pipeline.py
	$(PY) bench/convert.py
	$(PY) bench/train_loop.py
	$(PY) bench/onednn.py
	$(PY) bench/scaling.py

clean: ## remove outputs, generated data and caches (keeps .venv)
	rm -rf out dataset .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
