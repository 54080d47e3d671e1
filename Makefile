# bq-backfill — the two commands that matter:
#   make demo   local emulator + a year of sample data + a full backfill, twice
#   make test   every test: Rust unit/scenario tests, the official Python client's conformance run,
#               the orchestrator examples under real Airflow 2.10 and 3.x and real Dagster, fmt + clippy
#
# Everything is installed from scratch by these targets (cargo crates, a Python
# venv from PyPI), so a fresh machine needs only rustup's toolchain and python3.

SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
VENV := .venv
DEMO_DIR := .demo
DEMO_PORT ?= 9050

.PHONY: all build test test-rust test-python test-orchestrators demo bench lint fmt clean-demo venv orchestrator-venvs

all: build

build:
	$(CARGO) build --workspace --bins

# The Python venv with the official BigQuery client, pinned for the conformance test.
$(VENV)/.installed: integration/python/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r integration/python/requirements.txt
	touch $@

venv: $(VENV)/.installed

# One venv per orchestrator, from PyPI (.venv-airflow2, .venv-airflow3, .venv-dagster), each from its
# integration/orchestrators/requirements-NAME.txt; rebuilt from scratch when that file changes.
ORCH := integration/orchestrators
ORCH_VENVS := .venv-airflow2/.installed .venv-airflow3/.installed .venv-dagster/.installed
.venv-%/.installed: $(ORCH)/requirements-%.txt
	rm -rf .venv-$*
	$(PYTHON) -m venv .venv-$*
	.venv-$*/bin/pip install --quiet --upgrade pip
	.venv-$*/bin/pip install --quiet -r $<
	touch $@

orchestrator-venvs: $(ORCH_VENVS)

test: test-rust test-python test-orchestrators lint

test-rust:
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --no-fail-fast

test-python: venv build
	BQ_EMULATOR_BIN=$(CURDIR)/target/debug/bq-emulator BQ_BACKFILL_BIN=$(CURDIR)/target/debug/bq-backfill $(VENV)/bin/python -m pytest -q integration/python

# The examples/ for Airflow (2.10 and 3.x), Dagster and GitHub Actions, run as their orchestrators run them.
ORCH_PYTEST = BQ_EMULATOR_BIN=$(CURDIR)/target/debug/bq-emulator BQ_BACKFILL_BIN=$(CURDIR)/target/debug/bq-backfill \
	python -m pytest -q -c $(ORCH)/pytest.ini
test-orchestrators: orchestrator-venvs build
	PATH=$(CURDIR)/.venv-airflow2/bin:$$PATH $(ORCH_PYTEST) $(ORCH)/test_airflow.py
	PATH=$(CURDIR)/.venv-airflow3/bin:$$PATH $(ORCH_PYTEST) $(ORCH)/test_airflow.py
	PATH=$(CURDIR)/.venv-dagster/bin:$$PATH $(ORCH_PYTEST) $(ORCH)/test_dagster.py $(ORCH)/test_github_workflow.py

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# The embedded default: start the emulator, seed 2024, backfill events_daily,
# then run again to show every partition skipped.
demo: build
	@bash examples/demo.sh "$(CURDIR)/target/debug" "$(DEMO_DIR)" "$(DEMO_PORT)"

bench:
	$(CARGO) build --workspace --release --bins
	@bash integration/bench/run.sh "$(CURDIR)/target/release"

clean-demo:
	rm -rf $(DEMO_DIR)
