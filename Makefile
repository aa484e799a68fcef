# Two commands do everything on a fresh machine:
#   make lab   - set up (if needed) and open the course in JupyterLab
#   make test  - set up (if needed) and run the whole test suite
# When a virtual or conda environment is active it is used; otherwise .venv is created.

SHELL := /bin/bash
ACTIVE_ENV := $(or $(VIRTUAL_ENV),$(CONDA_PREFIX))
ifeq ($(ACTIVE_ENV),)
  ENV_DIR := .venv
else
  ENV_DIR := $(ACTIVE_ENV)
endif
PY := $(ENV_DIR)/bin/python
# What is installed: the course with the instructor and test tools (everything), or the course
# alone (what a learner's `make lab` needs). Installing everything also covers the course alone.
STAMP := $(ENV_DIR)/.course-installed
LEARNER_STAMP := $(ENV_DIR)/.course-learner-installed
# Tests run notebooks in quick mode with a fixed thread count. Checked outputs must not depend
# on the CPU's kernels: KERNELS and TEST_THREADS let .ci/run repeat the notebooks under others,
# e.g. make test-notebooks KERNELS="ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41" TEST_THREADS=2
TEST_THREADS ?= 1
KERNELS ?=
TEST_ENV := $(KERNELS) OMP_NUM_THREADS=$(TEST_THREADS) MKL_NUM_THREADS=$(TEST_THREADS) COURSE_MODE=quick \
  CUBLAS_WORKSPACE_CONFIG=:4096:8 MPLBACKEND=Agg
# Two test processes with one torch thread each, one process with more: two workers of two
# threads each oversubscribe a 2-core machine (the notebooks took 12.6 minutes instead of 2).
WORKERS ?= $(if $(filter 1,$(TEST_THREADS)),2,1)
# The stored notebooks are compared on the CPU, also on a machine with a GPU.
NBVAL := CUDA_VISIBLE_DEVICES= $(PY) -m pytest -n $(WORKERS) --dist loadscope notebooks \
  --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: lab test test-notebooks setup setup-learner chromium unit notebooks student student-copies book bench clean release grade

setup: $(STAMP)

setup-learner: $(LEARNER_STAMP)

define new_env
	@if [ ! -x "$(PY)" ]; then echo "Creating a virtual environment in $(ENV_DIR)"; python3 -m venv $(ENV_DIR); fi
	$(PY) -m pip install --upgrade pip
endef

$(STAMP): pyproject.toml
	$(new_env)
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP) $(LEARNER_STAMP)

$(LEARNER_STAMP): pyproject.toml
	$(new_env)
	$(PY) -m pip install -e .
	touch $(LEARNER_STAMP)

# The browser test drives Debian's Chromium (never a browser downloaded by a test tool).
chromium:
	@command -v chromium >/dev/null || { \
	  echo "Installing Debian's chromium for the browser test"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

# JupyterLab for a learner (course_utils/lab.py): without nbgrader's instructor tools, news or
# update checks, with --allow-root as root. tests/test_lab.py starts the same command.
lab: setup-learner
	$(PY) -m course_utils.lab notebooks/

test: setup chromium
	$(TEST_ENV) $(PY) -m pytest -n $(WORKERS) --dist loadscope tests
	$(TEST_ENV) $(NBVAL)

# The notebooks alone, compared with their stored outputs.
test-notebooks: setup
	$(TEST_ENV) $(NBVAL)

unit: setup
	$(TEST_ENV) $(PY) -m pytest -n $(WORKERS) tests

# Student copies (solutions replaced by stubs) and the rendered HTML course.
student: setup
	$(PY) -m course_instructor.copies student --out build/student

# Refresh the committed student copies in student/ (the README's Colab links open these).
student-copies: setup
	$(PY) -m course_instructor.copies student --out student

book: setup
	$(PY) -m course_instructor.copies book --out build/book

# Classroom grading with nbgrader (README, "Grading a class"): `make release` writes the student
# assignment (every notebook with an exercise) into $(CLASSROOM)/release/; `make grade SUBMISSIONS=folder`
# grades every student of a folder of per-student folders, on every run, into $(CLASSROOM)/grades.csv and
# nbgrader's feedback. TIMEOUT: seconds per cell of a student's notebook; SEED: the hidden cases' seed.
CLASSROOM ?= classroom
ASSIGNMENT ?= triplet-loss
TIMEOUT ?= 300
SEED ?=
GRADING := $(PY) -m course_instructor.grading

release: setup
	$(GRADING) release --course $(CLASSROOM) --assignment $(ASSIGNMENT) $(if $(SEED),--seed $(SEED))

grade: setup
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=folder-with-one-folder-per-student"; exit 2; }
	$(GRADING) grade "$(SUBMISSIONS)" --course $(CLASSROOM) --assignment $(ASSIGNMENT) --timeout $(TIMEOUT)

bench: setup
	$(PY) benchmarks/bench_losses.py
	$(PY) benchmarks/bench_data.py
	$(PY) benchmarks/compare_pml.py
	OMP_NUM_THREADS=1 $(PY) benchmarks/bench_distributed.py

clean:
	rm -rf build .pytest_cache .hypothesis runs

# Re-execute the stored notebooks in quick CPU mode (what the tests compare against).
notebooks: setup
	$(TEST_ENV) COURSE_MODE=quick CUDA_VISIBLE_DEVICES= $(ENV_DIR)/bin/jupyter nbconvert --to notebook --execute --inplace \
	  --ExecutePreprocessor.timeout=600 --ExecutePreprocessor.store_widget_state=False \
	  --ExecutePreprocessor.kernel_name=python3 --ExecutePreprocessor.record_timing=False $(or $(NB),notebooks/[0-9]*.ipynb)
