# evalpipe: two commands set up everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export EVALPIPE_HOME ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(EVALPIPE_HOME)/dagster
export GX_ANALYTICS_ENABLED := false

.PHONY: demo test dev lint format bench clean

$(STAMP): pyproject.toml evalpipe/sources/olmes/_instance_scan.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

## demo: create .venv, generate sample dumps if absent, ingest them, print the result
demo: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/evalpipe demo

## test: create .venv if needed, lint, run the whole suite
test: $(STAMP)
	$(BIN)/ruff check evalpipe evalpipe_tests benchmarks
	$(BIN)/ruff format --check evalpipe evalpipe_tests benchmarks
	$(BIN)/python -m pytest -q; status=$$?; if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; fi; exit $$status

## dev: the Dagster UI on 127.0.0.1:3000 over the instance that `make demo` and the CLI use
dev: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

lint: $(STAMP)
	$(BIN)/ruff check evalpipe evalpipe_tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format evalpipe evalpipe_tests benchmarks
	$(BIN)/ruff check --fix evalpipe evalpipe_tests benchmarks

clean:
	rm -rf $(VENV) build evalpipe/sources/olmes/*.so data/lake data/warehouse.duckdb data/reconstructed data/reports data/dagster
