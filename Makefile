# One command to set up and open the course, one to set up and run the tests.
#   make course   -> .venv with everything, then JupyterLab on course/
#   make test     -> .venv with everything, then the whole test suite in quick mode
#   make lesson   -> run every notebook in the full lesson and save its outputs (NOTEBOOKS="06 07" for some)
#   make bench    -> the CPU benchmarks quoted in the README, their output saved in benchmarks/results/
#   make gpu-check -> on a CUDA machine, with its own torch: the CUDA tests, the CUDA benchmark and the
#                     cuda recipe's measured speed and projected wall time (without CUDA: skips, says so)
#   make book     -> the course as a static website in book/_build/html (open index.html), offline
#   make browser-test -> JupyterLab + Debian's Chromium through every widget notebook, then the book
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch 2.13.0 from PyPI: on Linux that is the CUDA build (several GB), on macOS and Windows the CPU one.
# The CPU-only build on Linux: make course TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: install course test lesson bench gpu-check book browser-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e ".[dev,course]"
	touch $@

install: $(VENV)/.installed

course: install
	$(BIN)/jupyter lab course/

test: install
	$(BIN)/ruff check tfa_core tests benchmarks solutions book docs
	TFA_QUICK=1 $(BIN)/python -m pytest

# The committed notebooks as they are, nothing executed; about 15 s.
book: install
	$(BIN)/python book/build.py

# A real browser: Debian's Chromium (apt-get install chromium), driven by Playwright; a few minutes.
CHROMIUM ?= /usr/bin/chromium
browser-test: install book
	@test -x "$(CHROMIUM)" || { echo "make browser-test needs Debian's Chromium: apt-get install chromium"; exit 1; }
	CHROMIUM="$(CHROMIUM)" $(BIN)/python tests/browser/check_course.py

# The notebooks are saved with the full lesson's outputs (what readers see before running anything);
# quick mode is for CI only. About 26 minutes for all ten on two CPU cores.
NOTEBOOKS ?=
lesson: install
	$(BIN)/python benchmarks/course_times.py --write $(NOTEBOOKS)

# About 15 minutes on two CPU cores; run it on an otherwise idle machine.
RESULTS := benchmarks/results/performance-cpu
bench: install
	mkdir -p $(RESULTS)
	$(BIN)/python benchmarks/train_speed.py --widths 128,256,384 | tee $(RESULTS)/train_speed.txt
	$(BIN)/python benchmarks/train_speed.py --block-size 1024 --batch-size 4 | tee $(RESULTS)/train_speed_1024.txt
	$(BIN)/python benchmarks/decode_speed.py | tee $(RESULTS)/decode_speed.txt
	$(BIN)/python benchmarks/long_eval_memory.py | tee $(RESULTS)/long_eval_memory.txt
	MALLOC_MMAP_THRESHOLD_=1048576 $(BIN)/python benchmarks/long_eval_memory.py --dense-up-to 0 \
		| tee $(RESULTS)/long_eval_memory_live.txt
	$(BIN)/python benchmarks/model_comparison.py | tee benchmarks/results/comparison/model_comparison.txt
	$(BIN)/python benchmarks/loss_budget.py | tee $(RESULTS)/loss_budget.txt
	TORCHINDUCTOR_CACHE_DIR=$$(mktemp -d) $(BIN)/python benchmarks/compile_speed.py | tee $(RESULTS)/compile_speed.txt

# No venv here: a GPU machine brings its own CUDA build of torch (the CPU pin would hide the GPU).
gpu-check:
	PYTHONPATH=. $(PYTHON) -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_fast_attention.py \
		tests/test_memory.py::test_estimate_is_near_the_cuda_peak
	PYTHONPATH=. $(PYTHON) benchmarks/cuda_throughput.py --steps 20 --recipe cuda

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis book/_build
