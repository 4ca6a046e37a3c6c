# Each target installs the project into .venv first (only when pyproject.toml changed).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_ARGS ?=
DEMO_DIR := data/demo

.PHONY: install demo test test-fast bench gpu-check gpu-wheels gpu-data lint clean chromium

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	@touch $(STAMP)

demo: $(STAMP)
	test -f $(DEMO_DIR)/val/annotations.json || $(BIN)/mal demo-data $(DEMO_DIR)
	$(BIN)/automl run --model mal -e experiments/mal_demo.yaml

# The browser test drives Debian's chromium (no browser download); install it when missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

chromium:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
		($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends chromium)

# Two pytest workers (pytest-xdist): on 2 cores the Ray start-ups, subprocess launches and waits of one test
# overlap another's training; the suite went from 33 to 16 minutes. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
test: $(STAMP) chromium
	$(BIN)/python -m pytest -q --durations=20 -n $(TEST_WORKERS) --dist worksteal tests

# Everything that neither trains a model nor starts Ray: about a minute, for the edit-test loop.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" tests

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

# The prepared GPU check (bench/gpu_check.py). No install step: a GPU machine brings its own torch stack and
# has no network, so it runs on the Python at hand (.venv here, python3 there) plus the wheels below.
GPU_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
GPU_CHECK_ARGS ?=

gpu-check:
	$(GPU_PYTHON) -m bench.gpu_check $(GPU_CHECK_ARGS)

# What mal needs beyond a GPU image's packages, as CPython 3.12 wheels in .gpu-wheels/ (about 20 MB), and
# coco128-seg's photos in .gpu-data/ (8 MB, optional): both ignored by git, carried to the GPU machine.
gpu-wheels: $(STAMP)
	$(BIN)/python -m bench.gpu_wheels

gpu-data:
	mkdir -p .gpu-data
	cp -r $(or $(BENCH_DATA_DIR),../shared/data)/coco128-seg .gpu-data/

lint: $(STAMP)
	$(BIN)/ruff check mal mask2former automl plumbing tests bench

clean:
	rm -rf results runs mlruns mlflow.db .pytest_cache
