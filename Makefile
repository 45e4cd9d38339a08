# Parley — the two commands: `make demo` and `make test`. Both set up everything they need.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# Python 3.13 where the machine has it, else 3.12 (see .python-version, which names both: pyenv
# skips one that is not installed): pyenv's, else whatever is on PATH. 3.13 serves the live inbox
# with lower latency (issue 9: docs/performance.md, "Python 3.13").
PYTHON := $(shell pyenv which python3.13 2>/dev/null || command -v python3.13 || pyenv which python3.12 2>/dev/null || command -v python3.12 || echo python3.12)
# "3.13": the major.minor of the Python given, for telling whether the venv was made by $(PYTHON).
version_of = $(1) -c 'import sys; print(*sys.version_info[:2], sep=".")'
PYTHON_VERSION := $(shell $(call version_of,$(PYTHON)) 2>/dev/null)
PORT ?= 8000
export PARLEY_PORT ?= $(PORT)
export DJANGO_SETTINGS_MODULE := config.settings

.PHONY: demo serve test lint typecheck pytest setup bench clean reliability

$(VENV)/.installed: pyproject.toml .python-version
	# A venv made by another Python (3.12 before 3.13 was installed) is made again.
	test -x $(PY) && [ "$$($(call version_of,$(PY)))" = "$(PYTHON_VERSION)" ] \
		|| { rm -rf $(VENV); $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet '.[dev]'
	touch $@

setup: $(VENV)/.installed
	$(PY) manage.py parley_setup

demo: setup
	$(PY) manage.py seed_demo
	$(PY) manage.py rundemo --port $(PORT)

# Production serving on this machine: DEBUG off, one ASGI process per core behind one port
# (SO_REUSEPORT), the Redis channel layer, Procrastinate workers. Needs SECRET_KEY and REDIS_URL
# (INSECURE_DEV_KEY=1 allows a throwaway random key for a local trial). See docs/deploy.md.
PROCESSES ?= $(shell nproc 2>/dev/null || echo 1)
WORKERS ?= 1
serve: setup
	$(PY) -m config.serve --port $(PORT) --processes $(PROCESSES) --workers $(WORKERS)

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
	$(PY) bench/inbox_load.py --compare --customers 500 --agents 50 --rate 1000 --duration 60 --processes 2
	$(PY) bench/idle_sockets.py --sockets 10000
	$(PY) bench/tenants.py --count 1000
	$(PY) bench/send_core.py
	$(PY) bench/send_instructions.py
	$(PY) bench/new_business.py
	$(PY) bench/notify.py --recipients 2000 --connected 50 --workers 2

# The reliability suite at full size (issue 10): prints check | tried | result, fails on any
# failing or missing check. Long: minutes, plus the soak (SOAK_MINUTES, default 10).
SOAK_MINUTES ?= 10
reliability: $(VENV)/.installed
	$(PY) reliability/run.py --soak-minutes $(SOAK_MINUTES) $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-artifacts
