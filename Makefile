# One command to set up and open the course, one to set up and run the tests.
#   make course   -> .venv with everything, then JupyterLab on course/
#   make test     -> .venv with everything, then the whole test suite in quick mode
#   make gpu-check -> on a CUDA machine, with its own torch: the CUDA tests and the CUDA benchmark
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch 2.13.0; on a CUDA machine override with e.g. TORCH="torch"
TORCH ?= torch==2.13.0

.PHONY: install course test gpu-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev,course]"
	touch $@

install: $(VENV)/.installed

course: install
	$(BIN)/jupyter lab course/

test: install
	TFA_QUICK=1 $(BIN)/python -m pytest

# No venv here: a GPU machine brings its own CUDA build of torch (the CPU pin would hide the GPU).
gpu-check:
	PYTHONPATH=. $(PYTHON) -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_flex.py \
		tests/test_memory.py::test_estimate_is_near_the_cuda_peak
	PYTHONPATH=. $(PYTHON) benchmarks/cuda_throughput.py --steps 20

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
