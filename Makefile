# The two commands: `make demo` runs the whole service, `make test` runs every test.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
M3 := $(BIN)/m3
STAMP := $(VENV)/.installed

# Real data first by reliability: the MRDS California subset, then every other bundled source.
BUNDLED := data/raw/minmod/usgs_mrds_california.tar.xz data/raw/minmod

.PHONY: demo test system system-test install db ingest cube serve lint typecheck pytest bench clean-db

demo: system install db ingest cube serve

test: system-test install db lint typecheck pytest

system:
	@scripts/system-packages.sh demo

system-test:
	@scripts/system-packages.sh test

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=25.1"
	$(BIN)/python -m pip install -q -e ".[serve]" --group dev
	touch $(STAMP)

db: install
	$(M3) db start
	$(M3) db upgrade

ingest: db
	$(M3) ingest minmod $(BUNDLED)

cube: ingest
	$(M3) cube build --out cube --no-progress

serve:
	$(M3) serve

lint: install
	$(BIN)/ruff check backend tests bench alembic

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest $(PYTEST_ARGS)

bench: install db
	$(BIN)/python bench/sites_query.py

clean-db:
	-$(M3) db stop
	rm -rf .m3/pg
