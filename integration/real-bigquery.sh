#!/usr/bin/env bash
# Opt-in smoke test of bq-backfill against real BigQuery. Never run by CI or `make test`.
#
#   PROJECT=my-project [LOCATION=asia-northeast1] [BUCKET=gs://my-bucket/scratch] \
#     [BIN=dist/bq-backfill] [KEEP=1] integration/real-bigquery.sh
#
# Needs the Cloud SDK's `bq` (and `gcloud` when BUCKET is set), credentials that both `bq` and
# bq-backfill find (README, "Authentication"), and on PROJECT the roles bigquery.jobUser and
# bigquery.dataEditor (plus storage.objectAdmin on BUCKET). It costs next to nothing: a few
# tiny queries and one load job.
#
#   1. `bq mk`: a scratch dataset bq_backfill_smoke_<time>_<random> in LOCATION (default US)
#      holding a day-partitioned table `events`
#   2. a query backfill of 2024-01-01..03 (day D gets D rows), then the same run again: all skipped
#   3. with BUCKET: uploads a 4-row NDJSON file and backfills 2024-01-04 from a load job
#      (a regional dataset needs the bucket in its region); without BUCKET that step is skipped
#   4. checks the rows per partition and the audit log's `_latest` view with `bq query`
#   5. deletes the dataset (and the uploaded file) on exit, whatever happened; KEEP=1 keeps them
set -euo pipefail

PROJECT=${PROJECT:?set PROJECT to the Google Cloud project that runs the jobs}
LOCATION=${LOCATION:-US}
BUCKET=${BUCKET:-}
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../dist/bq-backfill}

die() { echo "real-bigquery: $*" >&2; exit 1; }
step() { echo "== $*"; }

# The values below end up in JSON and SQL text: accept only plain identifiers.
[[ "$PROJECT" =~ ^[a-z][a-z0-9.:-]{4,62}$ ]] || die "PROJECT=$PROJECT is not a project id"
[[ "$LOCATION" =~ ^[A-Za-z][A-Za-z0-9-]{1,30}$ ]] || die "LOCATION=$LOCATION is not a BigQuery location"
if [ -n "$BUCKET" ]; then
  [[ "$BUCKET" =~ ^gs://[a-z0-9][a-z0-9._-]{1,221}(/[A-Za-z0-9._/-]*)?$ ]] || die "BUCKET=$BUCKET is not gs://bucket[/prefix]"
  BUCKET=${BUCKET%/}
  command -v gcloud >/dev/null || die "BUCKET is set but gcloud (for \`gcloud storage cp\`) is not installed"
fi
command -v bq >/dev/null || die "the Cloud SDK's \`bq\` is not installed (https://cloud.google.com/sdk)"
command -v python3 >/dev/null || die "python3 is needed to read the event stream"
[ -x "$BIN" ] || die "$BIN is not an executable; run \`make release\` or set BIN"

DATASET="bq_backfill_smoke_$(date -u +%Y%m%d_%H%M%S)_$RANDOM"
EVENTS="$PROJECT.$DATASET.events"
AUDIT="$PROJECT.$DATASET.backfill_audit"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bq-backfill-smoke.XXXXXX")
CREATED=
UPLOADED=

bqx() { bq --headless --quiet --project_id="$PROJECT" --location="$LOCATION" "$@"; }

cleanup() {
  local rc=$?
  if [ "${KEEP:-}" = 1 ]; then
    echo "KEEP=1: left $PROJECT:$DATASET${UPLOADED:+ and $UPLOADED} and $WORK"
    exit "$rc"
  fi
  if [ -n "$UPLOADED" ]; then
    gcloud storage rm --quiet "$UPLOADED" >/dev/null 2>&1 || echo "could not delete $UPLOADED" >&2
  fi
  if [ -n "$CREATED" ]; then
    bqx rm -r -f -d "$PROJECT:$DATASET" || echo "could not delete dataset $PROJECT:$DATASET; delete it by hand" >&2
  fi
  rm -rf "$WORK"
  if [ "$rc" -eq 0 ]; then echo "== real-bigquery smoke test passed"; else echo "== real-bigquery smoke test FAILED (exit $rc)" >&2; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "bq-backfill: $("$BIN" --version)"
step "scratch dataset $PROJECT:$DATASET in $LOCATION (tables expire after a day in any case)"
bqx mk --dataset --default_table_expiration=86400 \
  --description="bq-backfill smoke test (integration/real-bigquery.sh); safe to delete" "$PROJECT:$DATASET"
CREATED=1
bqx mk --table --time_partitioning_type=DAY --time_partitioning_field=day \
  "$PROJECT:$DATASET.events" day:DATE,user:STRING,n:INTEGER

# Prints a descriptor: $1 job name, $2 start, $3 end, $4 the source as JSON (built by python3,
# so that quotes in the query are encoded correctly).
descriptor() {
  python3 - "$1" "$2" "$3" "$4" "$PROJECT" "$LOCATION" "$EVENTS" "$AUDIT" <<'PY'
import json, sys
job, start, end, source, project, location, events, audit = sys.argv[1:]
print(json.dumps({
    "version": 1,
    "job": job,
    "project": project,
    "location": location,
    "destination": events,
    "partitions": {"granularity": "day", "start": start, "end": end},
    "source": json.loads(source),
    "checkpoint": {"table": audit},
    "throttle": {"pause_seconds": 0, "pause_ratio": 0},
}, indent=2))
PY
}

# Runs bq-backfill on descriptor $1, the events into $2; checks exit 0 and run_finished's counts.
backfill() {
  local task=$1 events=$2 succeeded=$3 skipped=$4 rc=0
  "$BIN" run --task "$task" >"$events" 2>"$events.log" || rc=$?
  if [ "$rc" -ne 0 ]; then
    tail -20 "$events.log" >&2
    tail -1 "$events" >&2 || true
    die "bq-backfill exited $rc (events: $events)"
  fi
  python3 - "$events" "$succeeded" "$skipped" <<'PY'
import json, sys
path, succeeded, skipped = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
last = json.loads([l for l in open(path) if l.strip()][-1])
got = (last.get("event"), last.get("status"), last.get("succeeded"), last.get("skipped"))
want = ("run_finished", "succeeded", succeeded, skipped)
if got != want:
    sys.exit(f"run_finished {got}, expected {want}")
PY
}

# `bq query` as CSV rows without the header; $1 is the SQL.
rows() { bqx query --nouse_legacy_sql --format=csv "$1" | tail -n +2; }

# Day D of January gets D rows. Plain UNION ALL of literals, so that the local emulator runs the
# same text (this script was tried against it with a stand-in `bq`).
QUERY="SELECT day, user, n FROM ("
sep=
for d in 1 2 3; do
  for i in $(seq 1 "$d"); do
    QUERY+="$sep SELECT DATE '2024-01-0$d' AS day, 'user_$i' AS user, $i AS n"
    sep=" UNION ALL"
  done
done
QUERY+=") WHERE day = @partition_date"
SOURCE=$(python3 -c 'import json, sys; print(json.dumps({"query": sys.argv[1]}))' "$QUERY")
descriptor smoke_query 2024-01-01 2024-01-04 "$SOURCE" >"$WORK/query.json"
"$BIN" validate --task "$WORK/query.json" >/dev/null || die "the query descriptor does not validate"
step "query backfill of 2024-01-01..03"
backfill "$WORK/query.json" "$WORK/query1.jsonl" 3 0
step "the same backfill again: every partition skipped"
backfill "$WORK/query.json" "$WORK/query2.jsonl" 0 3

expected_partitions="20240101,1 20240102,2 20240103,3"
expected_audit="smoke_query,20240101,SUCCEEDED smoke_query,20240102,SUCCEEDED smoke_query,20240103,SUCCEEDED"
if [ -n "$BUCKET" ]; then
  step "load backfill of 2024-01-04 from $BUCKET"
  object="$BUCKET/$DATASET/dt=2024-01-04/rows.json"
  for i in 1 2 3 4; do echo "{\"day\": \"2024-01-04\", \"user\": \"loaded_$i\", \"n\": $i}"; done >"$WORK/rows.json"
  gcloud storage cp --quiet "$WORK/rows.json" "$object"
  UPLOADED=$object
  descriptor smoke_load 2024-01-04 2024-01-05 \
    "{\"load\": {\"uris\": [\"$BUCKET/$DATASET/dt={partition_date}/*.json\"], \"format\": \"NEWLINE_DELIMITED_JSON\"}}" \
    >"$WORK/load.json"
  backfill "$WORK/load.json" "$WORK/load1.jsonl" 1 0
  expected_partitions="$expected_partitions 20240104,4"
  expected_audit="smoke_load,20240104,SUCCEEDED $expected_audit"
else
  step "no BUCKET given: the load backfill is skipped (set BUCKET=gs://bucket/prefix to include it)"
fi

step "checking the table and the audit log with bq query"
got=$(rows "SELECT FORMAT_DATE('%Y%m%d', day) AS p, COUNT(*) AS n FROM \`$EVENTS\` GROUP BY p ORDER BY p" | tr '\n' ' ')
[ "${got% }" = "$expected_partitions" ] || die "rows per partition: got '${got% }', expected '$expected_partitions'"
echo "  rows per partition: $expected_partitions"
got=$(rows "SELECT job, partition_id, status FROM \`${AUDIT}_latest\` ORDER BY job, partition_id" | tr '\n' ' ')
[ "${got% }" = "$expected_audit" ] || die "audit log: got '${got% }', expected '$expected_audit'"
echo "  audit log (latest state): $expected_audit"
