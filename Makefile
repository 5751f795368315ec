# Set-up and run targets. Everything installs into .venv from the pinned constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ROWS ?= 50000

.PHONY: install demo check test test-unit test-integration lint up clean-data

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip uv==0.13.9
	$(BIN)/uv pip install --quiet --python $(BIN)/python -c constraints.txt -e '.[airflow,dev]'
	touch $@

install: $(VENV)/.installed

## The nightly pipeline end to end on the embedded PostgreSQL (or SEGMENTATION_DATABASE_URL).
demo: install
	ROWS=$(ROWS) scripts/demo.sh

## The whole test suite (unit, integration on real PostgreSQL, DAG checks and dag.test runs).
test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

## The fast loop (a few minutes): lint, the unit tests and the fast integration tests on the embedded
## PostgreSQL; no Airflow processes, no browser, no Celery. The same tests as `pytest -m "not slow"`.
check: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	env -u SEGMENTATION_TEST_ADMIN_URL $(BIN)/python -m pytest -q -m "not slow"

test-unit: install
	$(BIN)/python -m pytest -q tests/unit

## The integration tests on a real PostgreSQL (embedded, or SEGMENTATION_TEST_ADMIN_URL's server).
test-integration: install
	$(BIN)/python -m pytest -q tests/integration

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## Airflow standalone (api-server, scheduler, dag-processor, triggerer) with these DAGs.
up: install
	@# OpenLineage events to the console (the task logs) unless a transport is set (README, "Lineage").
	ol='{"type": "console"}'; AIRFLOW__OPENLINEAGE__TRANSPORT="$${AIRFLOW__OPENLINEAGE__TRANSPORT:-$$ol}" scripts/up.sh

clean-data:
	rm -rf .data
