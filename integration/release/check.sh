#!/usr/bin/env bash
# `make test-release`: the shipped binary is static and works from an empty environment.
#   1. no program interpreter and no shared-library dependencies (file, readelf, ldd)
#   2. `env -i bq-backfill --version` prints the version and the git commit
#   3. `env -i BIGQUERY_EMULATOR_HOST=... bq-backfill run` backfills three days into a local
#      emulator, then a second run (through the name `localhost`, so DNS is resolved without
#      glibc's NSS) skips all three
set -euo pipefail
BIN=${1:?usage: check.sh DIST_BIN EMULATOR_BIN}
EMU_BIN=${2:?usage: check.sh DIST_BIN EMULATOR_BIN}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TASK="$ROOT/examples/events_daily.json"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bq-release-check.XXXXXX")
EMU_PID=
cleanup() {
  if [ -n "$EMU_PID" ]; then
    kill "$EMU_PID" 2>/dev/null || true
    wait "$EMU_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "release check FAILED: $*" >&2; exit 1; }
ok() { echo "  ok: $*"; }

[ -x "$BIN" ] || fail "$BIN is not an executable; hint: run \`make release\`"
[ -x "$EMU_BIN" ] || fail "$EMU_BIN is not an executable; hint: run \`make build\`"
echo "== release check of $BIN ($(stat -c %s "$BIN") bytes)"

# 1. Static: no INTERP header and no NEEDED entry (readelf decides); `file` and `ldd` agree
#    when they are installed.
command -v readelf >/dev/null || fail "readelf (binutils) is not installed"
if readelf -lW "$BIN" | grep -q 'INTERP'; then
  fail "it has a program interpreter: $(readelf -lW "$BIN" | grep -A1 INTERP)"
fi
ok "readelf: no INTERP program header"
needed=$(readelf -dW "$BIN" | grep '(NEEDED)' || true)
[ -z "$needed" ] || fail "it needs shared libraries:
$needed"
ok "readelf: no NEEDED shared library"
if command -v file >/dev/null; then
  kind=$(file -b "$BIN")
  case "$kind" in
    *"statically linked"* | *"static-pie linked"*) ok "file: $kind" ;;
    *) fail "file does not call it static: $kind" ;;
  esac
else
  echo "  (file is not installed: its check is skipped)"
fi
if command -v ldd >/dev/null; then
  lddout=$(ldd "$BIN" 2>&1 || true)
  case "$lddout" in
    *"statically linked"* | *"not a dynamic executable"*) ok "ldd: $(echo "$lddout" | tr -s ' \t' ' ')" ;;
    *) fail "ldd lists dependencies: $lddout" ;;
  esac
fi
if readelf -SW "$BIN" | grep -q '\.debug_'; then fail "it is not stripped (has .debug_* sections)"; fi
ok "stripped"

# 2. --version from an empty environment.
version=$(env -i "$BIN" --version) || fail "env -i $BIN --version failed"
[[ "$version" =~ ^bq-backfill\ [0-9]+\.[0-9]+\.[0-9]+\ \(commit\ ([0-9a-f]{7,}|unknown)\)$ ]] \
  || fail "--version printed: $version"
ok "env -i --version: $version"

# 3. A small backfill against a local emulator, from an empty environment.
"$EMU_BIN" serve --port 0 2>"$WORK/emulator.log" &
EMU_PID=$!
addr=
for _ in $(seq 1 300); do
  addr=$(sed -n 's/.*listening on \([0-9.]*:[0-9]*\).*/\1/p' "$WORK/emulator.log" | head -1)
  [ -n "$addr" ] && break
  kill -0 "$EMU_PID" 2>/dev/null || { cat "$WORK/emulator.log" >&2; fail "the emulator exited"; }
  sleep 0.1
done
[ -n "$addr" ] || fail "the emulator did not start listening"
"$EMU_BIN" seed-demo --url "http://$addr" --start 2024-01-01 --end 2024-01-04 2>"$WORK/seed.log" \
  || { cat "$WORK/seed.log" >&2; fail "seeding the demo failed"; }

# Checks that the last stdout line of a run is run_finished with the expected status and counts.
expect_finished() {
  python3 - "$@" <<'PY'
import json, sys
path, succeeded, skipped = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
lines = [l for l in open(path) if l.strip()]
if not lines:
    sys.exit(f"no event on stdout ({path})")
last = json.loads(lines[-1])
got = (last.get("event"), last.get("status"), last.get("succeeded"), last.get("skipped"))
want = ("run_finished", "succeeded", succeeded, skipped)
if got != want:
    sys.exit(f"last event {got} != {want}: {lines[-1].strip()}")
PY
}

backfill() {
  local host=$1 name=$2
  local rc=0
  env -i BIGQUERY_EMULATOR_HOST="$host" "$BIN" run --task "$TASK" --start 2024-01-01 --end 2024-01-04 \
    >"$WORK/$name.jsonl" 2>"$WORK/$name.log" || rc=$?
  if [ "$rc" -ne 0 ]; then
    tail -20 "$WORK/$name.log" >&2
    fail "$name: exit $rc"
  fi
}
backfill "$addr" run1
expect_finished "$WORK/run1.jsonl" 3 0 || fail "run1 (env -i, $addr)"
ok "env -i run against $addr: 3 partitions succeeded"
backfill "localhost:${addr##*:}" run2
expect_finished "$WORK/run2.jsonl" 0 3 || fail "run2 (env -i, localhost)"
ok "env -i run against localhost:${addr##*:}: 3 partitions skipped"
echo "== release check passed"
