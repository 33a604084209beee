# Two entry points for a fresh machine (see README):  make demo   and   make test
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install demo test test-slow test-all lint format docs bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# CPU wheel of exactly this version; any other spec pulls GBs of CUDA packages.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cryonet demo --out demo-output

test: $(STAMP)
	$(VENV)/bin/pytest -m "not slow" -n 2 --timeout 900 $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(VENV)/bin/pytest -m "slow" --timeout 3600 $(PYTEST_ARGS)

test-all: $(STAMP)
	$(VENV)/bin/pytest --timeout 3600 $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) site demo-output .pytest_cache
