# evalpipe: two commands set up everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export EVALPIPE_HOME ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(EVALPIPE_HOME)/dagster
export GX_ANALYTICS_ENABLED := false

LINTED := evalpipe evalpipe_tests benchmarks fuzz
FUZZ_SECONDS ?= 600

.PHONY: demo test test-no-compiler dev instance lint format fuzz bench clean

$(STAMP): pyproject.toml evalpipe/sources/olmes/_instance_scan.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# setuptools' build warnings (ext-modules "experimental", editable install) are not the user's
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

## instance: write $(DAGSTER_HOME)/dagster.yaml from the settings (SQLite, or Postgres when
## DAGSTER_PG_URL is set; see evalpipe/defs/instance.py)
instance: $(STAMP)
	$(BIN)/python -m evalpipe.defs.instance

## demo: create .venv, generate sample dumps if absent, ingest them, print the result
demo: $(STAMP) instance
	$(BIN)/evalpipe demo

## test: create .venv if needed, lint, run the whole suite. The C scanner must have been built
## (EVALPIPE_SCANNER=c: a failed optional build is an error here, not a silent fallback); the
## instance tests run on the pure-Python scanner too. EVALPIPE_SCANNER=python make test runs the
## rest of the suite on it as well.
test: export EVALPIPE_SCANNER ?= c
test: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/python -m pytest -q; status=$$?; if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; fi; exit $$status

## test-no-compiler: the whole suite on an install made without a C compiler, as a user without
## one gets it: a fresh copy of the tracked files, `pip install` with CC=false (the optional
## scanner build fails and the pure-Python scanner takes over), then pytest. `.ci/run` runs it.
NOCC := build/no-compiler
test-no-compiler:
	rm -rf $(NOCC) && mkdir -p $(NOCC)
	git ls-files -z | tar --null -T - -cf - | tar -xf - -C $(NOCC)
	$(PYTHON) -m venv $(NOCC)/.venv
	cd $(NOCC) && CC=false .venv/bin/python -m pip install --quiet -e ".[dev]"
	cd $(NOCC) && .venv/bin/evalpipe --version | grep "instance scanner: python"
	cd $(NOCC) && EVALPIPE_HOME=$(CURDIR)/$(NOCC)/data DAGSTER_HOME=$(CURDIR)/$(NOCC)/data/dagster \
		EVALPIPE_SCANNER=python \
		.venv/bin/python -m pytest -q -p no:cacheprovider; status=$$?; \
		if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; fi; exit $$status

## dev: the Dagster UI on 127.0.0.1:3000 and the daemon (sensors, automation, run queue) over
## the instance that `make demo` and the CLI use; `dg dev` is Dagster's current command for it
dev: $(STAMP) instance
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/dg dev --host 127.0.0.1 --port 3000

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)

format: $(STAMP)
	$(BIN)/ruff format $(LINTED)
	$(BIN)/ruff check --fix $(LINTED)

## fuzz: coverage-guided fuzzing of the instance scanner (atheris; needs clang) for FUZZ_SECONDS;
## not part of `make test`. New inputs go to build/fuzz-corpus, a failing one to build/fuzz-crash-*
fuzz: $(STAMP)
	$(BIN)/python -c "import atheris" 2>/dev/null || $(BIN)/python -m pip install --quiet atheris
	mkdir -p build/fuzz-corpus
	$(BIN)/python fuzz/fuzz_instance_scan.py -max_total_time=$(FUZZ_SECONDS) -max_len=8192 \
		-dict=fuzz/json.dict -artifact_prefix=build/fuzz- \
		build/fuzz-corpus evalpipe_tests/sources/olmes/scanner_corpus

clean:
	rm -rf $(VENV) build evalpipe/sources/olmes/*.so data/lake data/warehouse.duckdb data/reconstructed data/reports data/dagster
