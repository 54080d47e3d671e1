# bq-backfill — the two commands that matter:
#   make demo   local emulator + a year of sample data + a full backfill, twice
#   make test   every test: Rust unit/scenario tests, the official Python client's conformance run,
#               the orchestrator examples under real Airflow 2.10 and 3.x and real Dagster, fmt + clippy,
#               and the static release binary's check
#   make release  the shipped binary, static and stripped, at dist/bq-backfill
#   make bench    bq-backfill vs a hand-written Python loop on the emulator -> docs/benchmarks.md
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

.PHONY: all build test test-rust test-python test-orchestrators test-release release demo bench bench-emulator lint fmt clean-demo venv orchestrator-venvs

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

test: test-rust test-python test-orchestrators lint test-release

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

# `make bench`: bq-backfill against the hand-written Python loop (official client) on the emulator,
# side by side, written to docs/benchmarks.md. Only the two timed binaries are built, in the
# `bench-fast` profile (Cargo.toml says why). `make bench-emulator`: the emulator's own start-up and
# throughput (its load generator is an example, which builds DataFusion again with the dev features).
BENCH_PROFILE ?= bench-fast
BENCH_ARGS ?=
bench: venv
	$(CARGO) build --locked --profile $(BENCH_PROFILE) -p bq-backfill -p bq-emulator --bins
	$(PYTHON) integration/bench/bench.py --bin-dir $(CURDIR)/target/$(BENCH_PROFILE) \
		--python $(CURDIR)/$(VENV)/bin/python --out docs/benchmarks.md $(BENCH_ARGS)

bench-emulator:
	$(CARGO) build --locked --profile $(BENCH_PROFILE) -p bq-emulator --bins
	@bash integration/bench/run.sh "$(CURDIR)/target/$(BENCH_PROFILE)"

clean-demo:
	rm -rf $(DEMO_DIR)
