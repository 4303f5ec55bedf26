# Dockyard: `make up` brings up a one-host cluster and runs a sample task; `make test` runs
# the whole suite. Both install what they need (a venv, Debian's docker.io, dockerd).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# `make test TESTS=tests/test_x.py`: the install step, then those files only
TESTS ?=

.PHONY: up down test unit proto lint bench docker

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $(STAMP)

docker:
	./deploy/ensure-docker.sh

up: $(STAMP) docker
	$(PY) -m dockyard.quickstart up

down: $(STAMP)
	$(PY) -m dockyard.quickstart down

test: $(STAMP) docker
	$(PY) -m pytest -q -ra --durations=15 $(TESTS)

unit: $(STAMP)
	$(PY) -m pytest -q -m "not docker and not lab"

proto: $(STAMP)
	$(PY) -m dockyard.protogen

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy controller agent dockyard \
		&& $(VENV)/bin/lint-imports && $(PY) -m tests.check_paths

bench: $(STAMP) docker
	$(PY) -m bench.run_task_latency
