# Two entry points for a fresh machine: `make run` (the main job, offline) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test test-fast test-min test-all test-heavy lint docs install bench-install clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch and torchvision come from the registry together (the machine's
	# CPU-only torch wheel does not load the registry's torchvision).
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# benchmarks/peers.py's peers (Syne Tune) and problems (mf-prior-bench, which declares numpy<2:
# installed without its dependencies, which the bench extra provides)
bench-install: $(VENV)/.installed
	$(PY) -m pip install -q -c constraints.txt -e '.[bench]'
	$(PY) -m pip install -q --no-deps mf-prior-bench==1.10.0

run: $(VENV)/.installed
	$(VENV)/bin/tunelab compare

# Lint, the default suite on every core (kept under 8 minutes on 2 cores), then the heavy suite
# (multi-node, object store, whole compares, the fault matrix's Ray cases) one test at a time, as
# several of them time signals and processes. --durations: every CI log names the slowest tests.
test: lint
	$(PY) -m pytest -n auto --durations=15
	$(PY) -m pytest -m 'heavy and not slow' --durations=15

# ruff, then the import contracts of pyproject.toml. lint-imports finds a package's modules on disk,
# so it reads the layout an install has (tunelab/ with trainables/, search_spaces/ and analysis/ inside).
LINT_TREE := $(VENV)/lint-tree
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	rm -rf $(LINT_TREE) && mkdir -p $(LINT_TREE)
	cp -r tunelab $(LINT_TREE)/ && cp -r trainables search_spaces analysis $(LINT_TREE)/tunelab/
	cd $(LINT_TREE) && PYTHONPATH=. $(CURDIR)/$(VENV)/bin/lint-imports $(CURDIR)/pyproject.toml

# the manual: reference pages regenerated from the code, then a strict build (no broken link, no orphan page)
docs: $(VENV)/.installed
	$(PY) docs/generate_reference.py
	$(VENV)/bin/mkdocs build --strict -d $(VENV)/site

# the edit-test loop: no test that starts Ray or takes seconds of its own (the markers in pyproject.toml)
FAST := not slow and not heavy and not ray and not cluster and not long
test-fast: $(VENV)/.installed
	$(PY) -m pytest -n auto -m '$(FAST)'

# the declared floors of Ray and Optuna (pyproject.toml), everything else as constraints.txt, in a
# venv of its own (.venv-min, 6.7 GB with torch's CUDA libraries), then the test-fast selection
MIN_VENV := .venv-min
$(MIN_VENV)/.installed: pyproject.toml constraints.txt tools/floor_constraints.py
	$(PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install -q --upgrade pip
	$(PYTHON) tools/floor_constraints.py ray optuna > $(MIN_VENV)/constraints.txt
	$(MIN_VENV)/bin/python -m pip install -q -c $(MIN_VENV)/constraints.txt -e '.[dev]'
	touch $@

test-min: $(MIN_VENV)/.installed
	$(MIN_VENV)/bin/python -m pytest -n auto -p no:cacheprovider -m '$(FAST)'

test-all: $(VENV)/.installed
	$(PY) -m pytest -m ''

test-heavy: $(VENV)/.installed
	$(PY) -m pytest -m 'heavy and not slow'

clean:
	rm -rf $(VENV) $(MIN_VENV) *.egg-info
