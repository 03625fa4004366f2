# `make demo` and `make test` each build the virtual environment they need from a clean clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: setup test gpu-check demo bench clean

$(VENV)/.installed: requirements.txt constraints.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt -c constraints.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

setup: $(VENV)/.installed

test: setup
	$(PY) -m pytest -q tests

# The checks that need an accelerator (CUDA placement, fp16/bf16, DDP with nccl, the teacher
# cache's device-to-host cost); each skips cleanly without a CUDA device.
gpu-check: setup
	$(PY) -m pytest -q -m gpu -rs tests/gpu

demo: setup
	$(PY) examples/mnist1d/compare.py

bench: setup
	$(PY) benchmarks/kd_step_overhead.py
	$(PY) benchmarks/lm_kd_step_overhead.py --threads 1
	$(PY) benchmarks/feature_kd_step_overhead.py
	$(PY) benchmarks/tf_kd_step_overhead.py
	$(PY) benchmarks/trainer_algorithm_overhead.py
	$(PY) benchmarks/loss_check_overhead.py
	$(PY) benchmarks/short_epoch_overhead.py --threads 1
	$(PY) benchmarks/short_epoch_overhead.py --threads 2

clean:
	rm -rf $(VENV) nd_workspace
