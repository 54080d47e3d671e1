# bq-backfill — the two commands that matter:
#   make demo   local emulator + a year of sample data + a full backfill, twice
#   make test   every test: Rust unit/scenario tests, the official Python client's conformance run, fmt + clippy,
#               and the static release binary's check
#   make release  the shipped binary, static and stripped, at dist/bq-backfill
#
# Everything is installed from scratch by these targets (cargo crates, a Python
# venv from PyPI), so a fresh machine needs only rustup's toolchain and python3.

SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
VENV := .venv
DEMO_DIR := .demo
DEMO_PORT ?= 9050
# The shipped binary: x86_64 Linux, glibc linked in statically (the only target installed here).
DIST_TARGET := x86_64-unknown-linux-gnu
DIST_BIN := dist/bq-backfill

.PHONY: all build test test-rust test-python test-release release demo bench lint fmt clean-demo venv

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

test: test-rust test-python lint test-release

test-rust:
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --no-fail-fast

test-python: venv build
	BQ_EMULATOR_BIN=$(CURDIR)/target/debug/bq-emulator BQ_BACKFILL_BIN=$(CURDIR)/target/debug/bq-backfill $(VENV)/bin/python -m pytest -q integration/python

# Only the bq-backfill package, in the `dist` profile (thin LTO, stripped), with static glibc.
# RUSTFLAGS with --target reaches the target crates only: build scripts and proc macros stay
# dynamic host programs, and nothing of the emulator or the test binaries is rebuilt.
release:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --locked --profile dist -p bq-backfill --target $(DIST_TARGET)
	mkdir -p $(dir $(DIST_BIN))
	cp target/$(DIST_TARGET)/dist/bq-backfill $(DIST_BIN)
	@echo "$(DIST_BIN): $$(stat -c %s $(DIST_BIN)) bytes"

# The release binary is static and backfills from an empty environment (emulator: the debug build).
test-release: release build
	bash integration/release/check.sh $(CURDIR)/$(DIST_BIN) $(CURDIR)/target/debug/bq-emulator

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
