"""DML INSERT through the official client: jobs.insert query jobs and jobs.query, the affected-row count,
rows visible to later queries, and BigQuery's errors for an unknown column, a wrong type or count."""

from __future__ import annotations

import datetime as dt

import pytest
from google.api_core.exceptions import BadRequest
from google.cloud import bigquery
from google.cloud.bigquery import ScalarQueryParameter

from bqconf import JOB_TIMEOUT_S, query_rows

LOG_SCHEMA = [
    bigquery.SchemaField("partition_id", "STRING"),
    bigquery.SchemaField("job_id", "STRING"),
    bigquery.SchemaField("n", "INT64"),
    bigquery.SchemaField("done_at", "TIMESTAMP"),
]


def create_log(client: bigquery.Client, dataset: bigquery.Dataset) -> str:
    table = client.create_table(bigquery.Table(f"{dataset.project}.{dataset.dataset_id}.log", schema=LOG_SCHEMA))
    return f"{table.project}.{table.dataset_id}.{table.table_id}"


def dml(client: bigquery.Client, sql: str, params=(), api_method: str = "INSERT") -> bigquery.QueryJob:
    config = bigquery.QueryJobConfig(query_parameters=list(params))
    job = client.query(sql, job_config=config, api_method=api_method)
    job.result(timeout=JOB_TIMEOUT_S)
    return job


def test_insert_values_with_named_parameters_through_a_query_job(client, dataset):
    log = create_log(client, dataset)
    before = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)

    job = dml(
        client,
        f"INSERT INTO `{log}` (partition_id, job_id, done_at) VALUES (@p, @j, CURRENT_TIMESTAMP()), ('b', NULL, NULL)",
        [ScalarQueryParameter("p", "STRING", "20240115"), ScalarQueryParameter("j", "STRING", "job-1")],
    )

    assert job.statement_type == "INSERT"
    assert job.num_dml_affected_rows == 2
    assert job.dml_stats.inserted_row_count == 2
    assert job.destination is None
    rows = query_rows(client, f"SELECT partition_id, job_id, n, done_at FROM `{log}` ORDER BY partition_id")
    assert [(r.partition_id, r.job_id, r.n) for r in rows] == [("20240115", "job-1", None), ("b", None, None)]
    assert rows[0].done_at >= before


def test_insert_through_jobs_query_and_the_rows_are_counted_by_later_queries(client, dataset):
    log = create_log(client, dataset)
    for i in range(3):
        job = dml(
            client,
            f"INSERT INTO {dataset.dataset_id}.log (partition_id, n) VALUES (@p, @n)",
            [ScalarQueryParameter("p", "STRING", f"p{i}"), ScalarQueryParameter("n", "INT64", i)],
            api_method="QUERY",
        )
        assert job.num_dml_affected_rows == 1

    done = query_rows(
        client,
        f"SELECT COUNT(*) AS c, SUM(n) AS s FROM `{log}` WHERE partition_id IN (@a, @b, 'zz')",
        [ScalarQueryParameter("a", "STRING", "p0"), ScalarQueryParameter("b", "STRING", "p2")],
    )
    assert (done[0].c, done[0].s) == (2, 2)


def test_insert_select_appends_a_query_result(client, dataset):
    log = create_log(client, dataset)
    dml(client, f"INSERT INTO `{log}` (partition_id, n) VALUES ('a', 1), ('b', 2)")

    job = dml(client, f"INSERT INTO `{log}` (partition_id, n) SELECT CONCAT(partition_id, '2'), n * 10 FROM `{log}`")

    assert job.num_dml_affected_rows == 2
    rows = query_rows(client, f"SELECT partition_id, n FROM `{log}` ORDER BY partition_id")
    assert [(r.partition_id, r.n) for r in rows] == [("a", 1), ("a2", 10), ("b", 2), ("b2", 20)]


@pytest.mark.parametrize(
    "values, message",
    [
        ("(nope) VALUES ('x')", "Column nope is not present in table"),
        ("(n) VALUES ('not a number')", "Value has type STRING which cannot be inserted into column n, which has type INT64"),
        ("(partition_id, n) VALUES ('x')", "Inserted row has wrong column count; Has 1, 2 expected"),
    ],
)
def test_insert_errors_like_bigquery_and_writes_nothing(client, dataset, values, message):
    log = create_log(client, dataset)

    with pytest.raises(BadRequest) as err:
        dml(client, f"INSERT INTO `{log}` {values}")

    assert message in str(err.value)
    assert query_rows(client, f"SELECT COUNT(*) AS c FROM `{log}`")[0].c == 0
