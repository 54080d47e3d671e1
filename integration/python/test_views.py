"""Logical views through the official client: the `_latest` view bq-backfill creates beside its audit table."""

from __future__ import annotations

import pytest
from google.api_core import exceptions
from google.cloud import bigquery

from bqconf import query_rows

AUDIT_SCHEMA = [
    bigquery.SchemaField("job", "STRING"),
    bigquery.SchemaField("partition_id", "STRING"),
    bigquery.SchemaField("status", "STRING"),
    bigquery.SchemaField("attempt", "INT64"),
    bigquery.SchemaField("bq_job_id", "STRING"),
    bigquery.SchemaField("run_id", "STRING"),
    bigquery.SchemaField("error_reason", "STRING"),
    bigquery.SchemaField("error_message", "STRING"),
    bigquery.SchemaField("recorded_at", "TIMESTAMP"),
    bigquery.SchemaField("fingerprint", "STRING"),
    bigquery.SchemaField("rows_written", "INT64"),
]

LATEST_SQL = """SELECT job, partition_id, status, attempt, attempts, bq_job_id, run_id, fingerprint, rows_written,
       error_reason, error_message, recorded_at
FROM (
  SELECT job, partition_id, status, attempt, bq_job_id, run_id, fingerprint, rows_written,
         error_reason, error_message, recorded_at,
         MAX(attempt) OVER (PARTITION BY job, partition_id) AS attempts,
         ROW_NUMBER() OVER (PARTITION BY job, partition_id ORDER BY recorded_at DESC) AS rn
  FROM `{audit}`
) AS latest
WHERE rn = 1"""


def _row(job: str, pid: str, status: str, attempt: int, at: str) -> dict:
    return {"job": job, "partition_id": pid, "status": status, "attempt": attempt,
            "bq_job_id": f"bf_{pid}_{attempt}", "run_id": "r1", "recorded_at": at, "fingerprint": "fp"}


def _audit_with_view(client: bigquery.Client, dataset: bigquery.Dataset) -> tuple[str, str]:
    """Creates `audit` with a few attempts and its `audit_latest` view; returns both ids."""
    audit_id = f"{dataset.project}.{dataset.dataset_id}.audit"
    table = bigquery.Table(audit_id, schema=AUDIT_SCHEMA)
    table.time_partitioning = bigquery.TimePartitioning(field="recorded_at")
    client.create_table(table)
    rows = [
        _row("x", "20240101", "RUNNING", 1, "2024-02-01T10:00:00Z"),
        _row("x", "20240101", "SUCCEEDED", 1, "2024-02-01T10:01:00Z"),
        _row("x", "20240102", "FAILED", 1, "2024-02-01T10:02:00Z"),
        _row("x", "20240102", "FAILED", 2, "2024-02-01T10:04:00Z"),
    ]
    assert client.insert_rows_json(audit_id, rows) == []
    view_id = f"{audit_id}_latest"
    view = bigquery.Table(view_id)
    view.view_query = LATEST_SQL.format(audit=audit_id)
    client.create_table(view)
    return audit_id, view_id


def test_a_view_reports_its_type_query_and_schema(client, dataset):
    audit_id, view_id = _audit_with_view(client, dataset)

    got = client.get_table(view_id)
    assert got.table_type == "VIEW"
    assert got.view_query == LATEST_SQL.format(audit=audit_id)
    assert got.view_use_legacy_sql is False
    assert [f.name for f in got.schema][:5] == ["job", "partition_id", "status", "attempt", "attempts"]
    assert got.created is not None
    listed = {t.table_id: t.table_type for t in client.list_tables(dataset)}
    assert listed == {"audit": "TABLE", "audit_latest": "VIEW"}


def test_queries_over_the_view_read_the_latest_rows_at_query_time(client, dataset):
    audit_id, view_id = _audit_with_view(client, dataset)
    by_status = f"SELECT status, COUNT(*) AS n FROM `{view_id}` WHERE job = @job GROUP BY status ORDER BY status"
    job = [bigquery.ScalarQueryParameter("job", "STRING", "x")]

    assert [tuple(r.values()) for r in query_rows(client, by_status, job)] == [("FAILED", 1), ("SUCCEEDED", 1)]
    latest = query_rows(client, f"SELECT partition_id, attempt, attempts FROM `{view_id}` ORDER BY partition_id")
    assert [tuple(r.values()) for r in latest] == [("20240101", 1, 1), ("20240102", 2, 2)]

    # A row streamed after the view was created is what the view shows next.
    assert client.insert_rows_json(audit_id, [_row("x", "20240102", "SUCCEEDED", 3, "2024-02-01T12:00:00Z")]) == []
    unfinished = (
        f"SELECT partition_id FROM `{view_id}` WHERE job = @job "
        "GROUP BY partition_id HAVING COUNTIF(status = 'SUCCEEDED') = 0"
    )
    assert query_rows(client, unfinished, job) == []
    assert [tuple(r.values()) for r in query_rows(client, by_status, job)] == [("SUCCEEDED", 2)]


def test_rows_cannot_be_streamed_into_or_listed_from_a_view(client, dataset):
    _, view_id = _audit_with_view(client, dataset)

    with pytest.raises(exceptions.BadRequest, match="VIEW"):
        client.insert_rows_json(view_id, [{"job": "x"}])
    with pytest.raises(exceptions.BadRequest, match="Cannot list a table of type VIEW."):
        list(client.list_rows(view_id, selected_fields=[bigquery.SchemaField("job", "STRING")]))


def test_a_view_can_be_deleted(client, dataset):
    audit_id, view_id = _audit_with_view(client, dataset)

    client.delete_table(view_id)
    with pytest.raises(exceptions.NotFound):
        client.get_table(view_id)
    assert client.get_table(audit_id).table_type == "TABLE"
