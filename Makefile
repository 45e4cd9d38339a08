# Parley — the two commands: `make demo` and `make test`. Both set up everything they need.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# Python 3.12 (see .python-version): pyenv's, else whatever python3.12 is on PATH.
PYTHON312 := $(shell pyenv which python3.12 2>/dev/null || command -v python3.12 || echo python3.12)
PORT ?= 8000
export PARLEY_PORT ?= $(PORT)
export DJANGO_SETTINGS_MODULE := config.settings

.PHONY: demo test lint typecheck pytest setup bench clean reliability

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON312) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet '.[dev]'
	touch $@

setup: $(VENV)/.installed
	$(PY) manage.py parley_setup

demo: setup
	$(PY) manage.py seed_demo
	$(PY) manage.py rundemo --port $(PORT)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy .

pytest: $(VENV)/.installed
	$(VENV)/bin/pytest --create-db $(PYTEST_ARGS)

test: lint typecheck pytest

bench: setup
	$(PY) bench/provision.py
	$(PY) bench/billing.py
	$(PY) bench/fanout.py

# The reliability suite at full size (issue 10): prints check | tried | result, fails on any
# failing or missing check. Long: minutes, plus the soak (SOAK_MINUTES, default 10).
SOAK_MINUTES ?= 10
reliability: $(VENV)/.installed
	$(PY) reliability/run.py --soak-minutes $(SOAK_MINUTES) $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-artifacts
