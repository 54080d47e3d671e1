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
TASK="$HERE/events_daily.json"

# At a terminal the run draws a progress bar on stderr; elsewhere (CI) its log
# goes to a file and only the closing summary line is shown.
backfill() {  # backfill NAME: events to $DEMO/NAME.jsonl
  local rc=0
  if [ -t 2 ]; then
    "$BIN/bq-backfill" run --task "$TASK" >"$DEMO/$1.jsonl" || rc=$?
  else
    "$BIN/bq-backfill" run --task "$TASK" >"$DEMO/$1.jsonl" 2>"$DEMO/$1.log" || rc=$?
    tail -1 "$DEMO/$1.log" | sed 's/^/   /'
  fi
  echo "   exit code: $rc; events: $DEMO/$1.jsonl, last line:"
  tail -1 "$DEMO/$1.jsonl" | cut -c1-240 | sed 's/^/   /'
  return "$rc"
}

echo "== plan: what a run would do (the query is dry-run first)"
"$BIN/bq-backfill" plan --task "$TASK" | sed 's/^/   /'

echo "== run 1: backfill events_daily (2024 has 366 days: 366 partitions)"
backfill run1

echo "== run 2: the same backfill again — every partition is already done"
python3 -c 'import sys, urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1], method="POST"))' \
  "http://127.0.0.1:$PORT/_emulator/reset"
backfill run2
python3 - "$PORT" <<'PY'
import json, sys, urllib.request
stats = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/_emulator/stats"))
inserts = stats.get("requests", {}).get("jobs.insert", 0)
print(f"   BigQuery jobs.insert calls during run 2: {inserts}")
PY
echo "== status: the audit log's view, with the calendar"
"$BIN/bq-backfill" status --task "$TASK" | sed 's/^/   /'
echo "== done. Event streams and logs are in $DEMO/"
