#!/usr/bin/env bash
# `make demo`: the embedded default scenario, end to end, on this machine.
#   1. start the local BigQuery emulator
#   2. seed a year (2024) of synthetic raw events
#   3. backfill demo-project.analytics.events_daily, one day partition at a time
#   4. run the same backfill again: every partition is skipped, no job submitted
set -euo pipefail
BIN=${1:?usage: demo.sh BIN_DIR DEMO_DIR PORT}
DEMO=${2:-.demo}
PORT=${3:-9050}
HERE=$(cd "$(dirname "$0")" && pwd)
rm -rf "$DEMO" && mkdir -p "$DEMO"

"$BIN/bq-emulator" serve --port "$PORT" 2>"$DEMO/emulator.log" &
EMU=$!
trap 'kill $EMU 2>/dev/null; wait $EMU 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  grep -q "listening on" "$DEMO/emulator.log" 2>/dev/null && break
  kill -0 $EMU 2>/dev/null || { cat "$DEMO/emulator.log"; echo "emulator failed to start" >&2; exit 1; }
  sleep 0.1
done
echo "== emulator listening on 127.0.0.1:$PORT"

echo "== seeding a year of raw events (2024)"
"$BIN/bq-emulator" seed-demo --url "http://127.0.0.1:$PORT" --start 2024-01-01 --end 2025-01-01

export BIGQUERY_EMULATOR_HOST="127.0.0.1:$PORT"
summarize() { python3 "$HERE/summarize_events.py" "$@"; }

echo "== run 1: backfill events_daily (2024 has 366 days: 366 partitions)"
set +e
"$BIN/bq-backfill" run --task "$HERE/events_daily.json" 2>"$DEMO/run1.log" | tee "$DEMO/run1.jsonl" | summarize --live
rc=${PIPESTATUS[0]}
set -e
echo "   exit code: $rc (log: $DEMO/run1.log, events: $DEMO/run1.jsonl)"
[ "$rc" -eq 0 ] || { tail -20 "$DEMO/run1.log"; exit "$rc"; }

echo "== run 2: the same backfill again — every partition is already done"
python3 -c 'import sys, urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1], method="POST"))' \
  "http://127.0.0.1:$PORT/_emulator/reset"
"$BIN/bq-backfill" run --task "$HERE/events_daily.json" 2>"$DEMO/run2.log" >"$DEMO/run2.jsonl"
summarize "$DEMO/run2.jsonl"
python3 - "$PORT" <<'PY'
import json, sys, urllib.request
stats = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/_emulator/stats"))
inserts = stats.get("requests", {}).get("jobs.insert", 0)
print(f"   BigQuery jobs.insert calls during run 2: {inserts}")
PY
echo "== the audit log's view (bq-backfill status), last line:"
"$BIN/bq-backfill" status --format json --task "$HERE/events_daily.json" 2>/dev/null | tail -1 | sed 's/^/   /'
echo "== done. Full event streams and logs are in $DEMO/"
