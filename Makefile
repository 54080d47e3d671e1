# bq-backfill — the two commands that matter:
#   make demo   local emulator + a year of sample data + a full backfill, twice
#   make test   every test: Rust unit/scenario tests, the official Python client's conformance run, fmt + clippy
#
# Everything is installed from scratch by these targets (cargo crates, a Python
# venv from PyPI), so a fresh machine needs only rustup's toolchain and python3.

SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
VENV := .venv
DEMO_DIR := .demo
DEMO_PORT ?= 9050

.PHONY: all build test test-rust test-python demo bench lint fmt clean-demo venv

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

test: test-rust test-python lint

test-rust:
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --no-fail-fast

test-python: venv build
	BQ_EMULATOR_BIN=$(CURDIR)/target/debug/bq-emulator BQ_BACKFILL_BIN=$(CURDIR)/target/debug/bq-backfill $(VENV)/bin/python -m pytest -q integration/python

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
