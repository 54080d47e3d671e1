"""The common hand-written backfill loop, with the official `google-cloud-bigquery` client.

This is the baseline `make bench` compares bq-backfill with: what a data engineer writes when asked to
"backfill this table one partition at a time, and make it restartable". Per partition:

1. an "already done?" query on its own log table (`SELECT COUNT(*) ... WHERE partition_id = @partition_id`);
2. a query job into `table$PARTITION` with WRITE_TRUNCATE and the partition bounds as query parameters;
3. wait for it (`.result()`);
4. a DML checkpoint `INSERT INTO log (partition_id, job_id, done_at) VALUES (@partition_id, @job_id,
   CURRENT_TIMESTAMP())`, also waited for.

It prints one JSON line on stdout at the end: {"partitions": N, "skipped": K, "seconds": S}.

    python reference_loop.py --endpoint http://127.0.0.1:PORT --project P --destination P.ds.t \
        --log P.ops.ref_log --granularity day --start 2024-01-01 --count 366 --query 'SELECT ...'
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time

from google.api_core.exceptions import NotFound
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

STEP = {"day": dt.timedelta(days=1), "hour": dt.timedelta(hours=1)}
DECORATOR = {"day": "%Y%m%d", "hour": "%Y%m%d%H"}


def partitions(granularity: str, start: str, count: int):
    """(partition_id, start, end) for `count` partitions from `start` (a date or an RFC 3339 time)."""
    first = dt.datetime.fromisoformat(start.replace("Z", "+00:00"))
    if first.tzinfo is None:
        first = first.replace(tzinfo=dt.timezone.utc)
    step = STEP[granularity]
    for i in range(count):
        lo = first + i * step
        yield lo.strftime(DECORATOR[granularity]), lo, lo + step


def ensure_log(client: bigquery.Client, log: str) -> None:
    try:
        client.get_table(log)
    except NotFound:
        schema = [
            bigquery.SchemaField("partition_id", "STRING"),
            bigquery.SchemaField("job_id", "STRING"),
            bigquery.SchemaField("done_at", "TIMESTAMP"),
        ]
        client.create_table(bigquery.Table(log, schema=schema))


def backfill(client: bigquery.Client, args) -> dict:
    ensure_log(client, args.log)
    done_sql = f"SELECT COUNT(*) AS n FROM `{args.log}` WHERE partition_id = @partition_id"
    checkpoint_sql = (
        f"INSERT INTO `{args.log}` (partition_id, job_id, done_at) "
        "VALUES (@partition_id, @job_id, CURRENT_TIMESTAMP())"
    )
    total = skipped = 0
    for pid, lo, hi in partitions(args.granularity, args.start, args.count):
        total += 1
        pid_param = bigquery.ScalarQueryParameter("partition_id", "STRING", pid)
        done = client.query(done_sql, job_config=bigquery.QueryJobConfig(query_parameters=[pid_param]))
        if next(iter(done.result())).n > 0:
            skipped += 1
            continue
        config = bigquery.QueryJobConfig(
            destination=f"{args.destination}${pid}",
            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
            query_parameters=[
                bigquery.ScalarQueryParameter("partition_start", "TIMESTAMP", lo),
                bigquery.ScalarQueryParameter("partition_end", "TIMESTAMP", hi),
            ],
        )
        job = client.query(args.query, job_config=config)
        job.result()
        params = [pid_param, bigquery.ScalarQueryParameter("job_id", "STRING", job.job_id)]
        client.query(checkpoint_sql, job_config=bigquery.QueryJobConfig(query_parameters=params)).result()
    return {"partitions": total, "skipped": skipped}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--endpoint", required=True)
    p.add_argument("--project", required=True)
    p.add_argument("--destination", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--granularity", choices=sorted(STEP), required=True)
    p.add_argument("--start", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--query", required=True)
    args = p.parse_args()
    client = bigquery.Client(
        project=args.project,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": args.endpoint},
    )
    began = time.monotonic()
    out = backfill(client, args)
    out["seconds"] = round(time.monotonic() - began, 3)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
