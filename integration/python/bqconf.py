"""Shared building blocks of the conformance scenarios: the events table and how to read it back."""

from __future__ import annotations

import datetime as dt

from google.cloud import bigquery

# Generous for an emulator on loopback; a job that needs longer is a failure worth reporting.
JOB_TIMEOUT_S = 30

EVENTS_SCHEMA = [
    bigquery.SchemaField("day", "DATE"),
    bigquery.SchemaField("user", "STRING"),
    bigquery.SchemaField("n", "INT64"),
]


def create_events_table(client: bigquery.Client, dataset: bigquery.Dataset, name: str = "t") -> bigquery.Table:
    """Creates `dataset.name` partitioned by day on column `day`."""
    table = bigquery.Table(f"{dataset.project}.{dataset.dataset_id}.{name}", schema=EVENTS_SCHEMA)
    table.time_partitioning = bigquery.TimePartitioning(type_=bigquery.TimePartitioningType.DAY, field="day")
    return client.create_table(table)


def create_source_table(client: bigquery.Client, dataset: bigquery.Dataset, rows: list[dict]) -> str:
    """Creates an unpartitioned `dataset.src` with the events schema, streams `rows` into it, returns its id."""
    table = client.create_table(bigquery.Table(f"{dataset.project}.{dataset.dataset_id}.src", schema=EVENTS_SCHEMA))
    table_id = f"{table.project}.{table.dataset_id}.{table.table_id}"
    errors = client.insert_rows_json(table_id, rows)
    assert errors == [], f"seeding {table_id} via insertAll failed: {errors}"
    return table_id


def partition(table_id: str, day: dt.date) -> str:
    """`project.dataset.table$YYYYMMDD`."""
    return f"{table_id}${day:%Y%m%d}"


def events(rows) -> list[tuple]:
    """(day, user, n) tuples in a stable order, for comparing row sets regardless of read order."""
    return sorted(((r["day"], r["user"], r["n"]) for r in rows), key=repr)


def list_partition(client: bigquery.Client, table_id: str, day: dt.date, **kwargs) -> list[tuple]:
    """The rows of one partition as `tabledata.list` on the decorated table returns them."""
    ref = bigquery.Table(partition(table_id, day), schema=EVENTS_SCHEMA)
    return events(client.list_rows(ref, **kwargs))


def query_rows(client: bigquery.Client, sql: str, params=()) -> list[bigquery.Row]:
    config = bigquery.QueryJobConfig(query_parameters=list(params))
    return list(client.query(sql, job_config=config).result(timeout=JOB_TIMEOUT_S))


def write_partition(
    client: bigquery.Client,
    sql: str,
    destination: str,
    params=(),
    disposition: str = bigquery.WriteDisposition.WRITE_TRUNCATE,
    job_id: str | None = None,
) -> bigquery.QueryJob:
    """Starts a query job writing into `destination` (a table or `table$partition`)."""
    config = bigquery.QueryJobConfig(
        destination=destination,
        write_disposition=disposition,
        query_parameters=list(params),
    )
    return client.query(sql, job_config=config, job_id=job_id)
