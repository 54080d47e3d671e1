"""Dry runs through the official client: totalBytesProcessed counts only the partitions a filter on the
partitioning column selects, as BigQuery bills them — so `bq-backfill plan --estimate` means something."""

from __future__ import annotations

import datetime as dt

from google.cloud import bigquery
from google.cloud.bigquery import ScalarQueryParameter

from bqconf import JOB_TIMEOUT_S, create_events_table, create_source_table, write_partition


def dry_run_bytes(client: bigquery.Client, sql: str, params=()) -> int:
    config = bigquery.QueryJobConfig(dry_run=True, use_query_cache=False, query_parameters=list(params))
    job = client.query(sql, job_config=config)
    assert job.state == "DONE"
    return job.total_bytes_processed


def seeded_events_table(client, dataset, rows) -> str:
    src = create_source_table(client, dataset, rows)
    t = create_events_table(client, dataset)
    t_id = f"{t.project}.{t.dataset_id}.{t.table_id}"
    job = write_partition(
        client, f"SELECT day, user, n FROM `{src}`", t_id, disposition=bigquery.WriteDisposition.WRITE_APPEND
    )
    job.result(timeout=JOB_TIMEOUT_S)
    return t_id


def test_a_filter_on_the_partitioning_column_prunes_partitions(client, dataset):
    days = [dt.date(2024, 1, d) for d in range(1, 11)]
    rows = [{"day": d.isoformat(), "user": f"u{i}", "n": i} for d in days for i in range(5)]
    t = seeded_events_table(client, dataset, rows)

    whole = dry_run_bytes(client, f"SELECT user, n FROM `{t}`")
    one = dry_run_bytes(
        client,
        f"SELECT user, n FROM `{t}` WHERE day = @d",
        [ScalarQueryParameter("d", "DATE", "2024-01-05")],
    )
    three = dry_run_bytes(
        client,
        f"SELECT user, n FROM `{t}` WHERE day >= @start AND day < @end",
        [ScalarQueryParameter("start", "DATE", "2024-01-02"), ScalarQueryParameter("end", "DATE", "2024-01-05")],
    )
    assert whole > 0
    assert one * 10 == whole, (one, whole)
    assert three == 3 * one, (three, one)
    # A filter on another column does not prune: every partition is read.
    assert dry_run_bytes(client, f"SELECT user FROM `{t}` WHERE n = 3") == whole
    # Nothing selected, nothing read.
    none = dry_run_bytes(
        client, f"SELECT user FROM `{t}` WHERE day = @d", [ScalarQueryParameter("d", "DATE", "2023-01-01")]
    )
    assert none == 0
