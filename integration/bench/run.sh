#!/usr/bin/env bash
# Benchmarks bq-emulator on this machine, loopback only and bounded in count and time:
#   1. start-up: spawn `bq-emulator serve` -> its `listening on` line, median of BENCH_STARTS starts
#   2. throughput: BENCH_REQUESTS tables.get/jobs.get requests over BENCH_CONCURRENCY keep-alive connections
#   3. latency p50/p99 of those requests
# Usage: integration/bench/run.sh BIN_DIR      (BIN_DIR holds bq-emulator, e.g. target/release)
# Exits non-zero when a target is missed or the benchmark cannot run.
set -euo pipefail

BIN_DIR=${1:?usage: integration/bench/run.sh BIN_DIR (e.g. target/release)}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
EMULATOR="$BIN_DIR/bq-emulator"

STARTS=${BENCH_STARTS:-15}
REQUESTS=${BENCH_REQUESTS:-20000}
CONCURRENCY=${BENCH_CONCURRENCY:-8}
STARTUP_TARGET_MS=${BENCH_STARTUP_TARGET_MS:-100}
RPS_TARGET=${BENCH_RPS_TARGET:-2000}
TIME_LIMIT_S=${BENCH_TIME_LIMIT_S:-300}

if [[ ! -x "$EMULATOR" ]]; then
  echo "run.sh: no executable $EMULATOR; hint: cargo build --release -p bq-emulator" >&2
  exit 2
fi
BIN_DIR=$(cd "$BIN_DIR" && pwd)
EMULATOR="$BIN_DIR/bq-emulator"

# The load generator is an example of the emulator crate, built with the same profile into the same target dir.
PROFILE=$(basename "$BIN_DIR")
PROFILE_FLAG=()
[[ "$PROFILE" != debug ]] && PROFILE_FLAG=(--profile "$PROFILE")
(cd "$ROOT" && CARGO_TARGET_DIR=$(dirname "$BIN_DIR") ${CARGO:-cargo} build --quiet -p bq-emulator --example bench "${PROFILE_FLAG[@]}")
BENCH="$BIN_DIR/examples/bench"

STARTUP_CMD=("$BENCH" startup --bin "$EMULATOR" --runs "$STARTS")
LOAD_CMD=("$BENCH" load --bin "$EMULATOR" --requests "$REQUESTS" --concurrency "$CONCURRENCY")
STARTUP_OUT=$(timeout "$TIME_LIMIT_S" "${STARTUP_CMD[@]}")
LOAD_OUT=$(timeout "$TIME_LIMIT_S" "${LOAD_CMD[@]}")

field() { # field KEY TEXT -> the value of KEY=value in TEXT
  sed -n "s/^$1=//p" <<<"$2"
}
verdict() { # verdict VALUE OP TARGET -> PASS/FAIL
  awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN { ok = (op == "<") ? (v < t) : (v >= t); print ok ? "PASS" : "FAIL" }'
}

median_ms=$(field startup_median_ms "$STARTUP_OUT")
rps=$(field load_rps "$LOAD_OUT")
startup_result=$(verdict "$median_ms" "<" "$STARTUP_TARGET_MS")
rps_result=$(verdict "$rps" ">=" "$RPS_TARGET")
cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n1)

echo "bq-emulator benchmark"
echo "  machine : $(nproc) CPUs, ${cpu:-unknown CPU}, $(uname -sr), loopback only"
echo "  binary  : $EMULATOR ($PROFILE)"
echo "  commands: ${STARTUP_CMD[*]}"
echo "            ${LOAD_CMD[*]}"
echo
printf '  %-46s %-14s %-12s %s\n' metric value target result
printf '  %-46s %-14s %-12s %s\n' "start-up median ($STARTS starts)" "$median_ms ms" "< $STARTUP_TARGET_MS ms" "$startup_result"
printf '  %-46s %-14s %-12s %s\n' "  min / max" "$(field startup_min_ms "$STARTUP_OUT") / $(field startup_max_ms "$STARTUP_OUT") ms" "" ""
printf '  %-46s %-14s %-12s %s\n' "throughput ($REQUESTS req, $CONCURRENCY conns)" "$rps req/s" ">= $RPS_TARGET" "$rps_result"
printf '  %-46s %-14s %-12s %s\n' "latency p50" "$(field latency_p50_ms "$LOAD_OUT") ms" "" "info"
printf '  %-46s %-14s %-12s %s\n' "latency p99" "$(field latency_p99_ms "$LOAD_OUT") ms" "" "info"
printf '  %-46s %-14s %-12s %s\n' "latency max" "$(field latency_max_ms "$LOAD_OUT") ms" "" "info"
printf '  %-46s %-14s\n' "server count tables.get / jobs.get (+warm-up)" \
  "$(field server_counted_tables_get "$LOAD_OUT") / $(field server_counted_jobs_get "$LOAD_OUT")"
echo "  start-up runs (ms): $(field startup_ms_each "$STARTUP_OUT")"

[[ "$startup_result" == PASS && "$rps_result" == PASS ]]
