# The two commands: `make demo` runs the whole service, `make test` runs every test.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
M3 := $(BIN)/m3
STAMP := $(VENV)/.installed

# Real data first by reliability: the MRDS California subset, then every other bundled source.
BUNDLED := data/raw/minmod/usgs_mrds_california.tar.xz data/raw/minmod

.PHONY: demo test system system-test install install-scale frontend db ingest cube layers serve lint typecheck pytest evaluate-quick bench clean-db

demo: system install frontend db ingest cube layers serve

test: system-test install frontend db lint typecheck pytest evaluate-quick

system:
	@scripts/system-packages.sh demo

system-test:
	@scripts/system-packages.sh test

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=25.1"
	$(BIN)/python -m pip install -q -e ".[serve,train]" --group dev
	touch $(STAMP)

# The scale extra (Ray) for tests/scale's two-node cluster: CI (.ci/run) installs it; make demo and make test do not.
SCALE_STAMP := $(VENV)/.installed-scale

install-scale: $(SCALE_STAMP)

$(SCALE_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e ".[serve,train,scale]" --group dev
	touch $(SCALE_STAMP)

db: install
	$(M3) db start
	$(M3) db upgrade

ingest: db
	$(M3) ingest minmod $(BUNDLED)

cube: ingest
	$(M3) cube build --out cube --no-progress

# Whole-map layers and flagged clusters from the committed demo model (skipped when already current).
LAYERS_STAMP := layers/.demo-$(shell sha256sum runs/demo/model.onnx 2>/dev/null | cut -c1-12)

layers: $(LAYERS_STAMP)

$(LAYERS_STAMP): cube
	$(M3) infer --masks 8 --no-progress
	mkdir -p layers && touch $(LAYERS_STAMP)

frontend: frontend/node_modules/.package-lock.json

frontend/node_modules/.package-lock.json: frontend/package.json frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund

# The admin token: generated once into a git-ignored file (the admin routes are off without one).
ADMIN_TOKEN_FILE := .m3/admin-token

$(ADMIN_TOKEN_FILE):
	@mkdir -p $(@D) && umask 077 && $(BIN)/python -c "import secrets; print(secrets.token_urlsafe(32))" > $@

serve: $(ADMIN_TOKEN_FILE)
	@echo "admin token in $(ADMIN_TOKEN_FILE) (curl -H \"Authorization: Bearer \$$(cat $(ADMIN_TOKEN_FILE))\" ...)"
	M3_ADMIN_TOKEN=$${M3_ADMIN_TOKEN:-$$(cat $(ADMIN_TOKEN_FILE))} $(M3) serve

lint: install
	$(BIN)/ruff check backend model tests bench alembic

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest $(PYTEST_ARGS)

# The whole evaluation protocol at a tiny size (docs/evaluation.md): a smoke test of the protocol, not a result.
QUICK := runs/protocol-quick

evaluate-quick: cube
	rm -rf $(QUICK)
	$(M3) protocol --config configs/protocol-quick.yaml --out $(QUICK) --no-progress
	@for part in "## Model card" "## Spatial cross-validation" "## Leave one state out" "## Unsurveyed states"; do \
	  grep -q "$$part" $(QUICK)/report.md || { echo "evaluate-quick: '$$part' missing from $(QUICK)/report.md" >&2; exit 1; }; \
	done
	@test -s $(QUICK)/calibration.json || { echo "evaluate-quick: $(QUICK)/calibration.json missing" >&2; exit 1; }
	@echo "evaluate-quick: the protocol ran end to end; report in $(QUICK)/report.md"

bench: install db
	$(BIN)/python bench/sites_query.py

clean-db:
	-$(M3) db stop
	rm -rf .m3/pg
