"""Job lifecycle: jobs.get statistics, cancellation, failed queries, duplicate job ids."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from google.api_core.exceptions import BadRequest, Conflict, NotFound
from google.cloud import bigquery
from google.cloud.bigquery import ScalarQueryParameter

from bqconf import (
    JOB_TIMEOUT_S,
    create_events_table,
    create_source_table,
    list_partition,
    partition,
    write_partition,
)

JAN15 = dt.date(2024, 1, 15)
SOURCE_ROWS = [
    {"day": "2024-01-15", "user": "alice", "n": 1},
    {"day": "2024-01-15", "user": "bob", "n": 2},
    {"day": "2024-01-16", "user": "dave", "n": 4},
]


def test_get_job_reports_a_finished_query_with_its_statistics(client, dataset):
    src = create_source_table(client, dataset, SOURCE_ROWS)
    t = create_events_table(client, dataset)
    t_id = f"{t.project}.{t.dataset_id}.{t.table_id}"
    sql = f"SELECT day, user, n FROM `{src}` WHERE day = @d"
    job = write_partition(client, sql, partition(t_id, JAN15), [ScalarQueryParameter("d", "DATE", JAN15)])
    job.result(timeout=JOB_TIMEOUT_S)

    fetched = client.get_job(job.job_id)

    assert isinstance(fetched, bigquery.QueryJob)
    assert fetched.job_id == job.job_id
    assert fetched.state == "DONE"
    assert fetched.error_result is None
    assert fetched.query == sql
    assert fetched.statement_type == "SELECT"
    assert fetched.destination.table_id == "t$20240115"
    assert fetched.write_disposition == "WRITE_TRUNCATE"
    assert isinstance(fetched.total_bytes_processed, int)
    assert fetched.total_bytes_processed > 0
    for stamp in (fetched.created, fetched.started, fetched.ended):
        assert isinstance(stamp, dt.datetime) and stamp.tzinfo is not None
    assert fetched.created <= fetched.started <= fetched.ended
    assert fetched.ended <= dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5)


def test_cancelled_job_ends_stopped_and_writes_nothing(slow_client, slow_dataset):
    src = create_source_table(slow_client, slow_dataset, SOURCE_ROWS)
    t = create_events_table(slow_client, slow_dataset)
    t_id = f"{t.project}.{t.dataset_id}.{t.table_id}"
    sql = f"SELECT day, user, n FROM `{src}` WHERE day = @d"
    job = write_partition(slow_client, sql, partition(t_id, JAN15), [ScalarQueryParameter("d", "DATE", JAN15)])
    assert job.state in ("PENDING", "RUNNING"), "the slow emulator must leave the job unfinished"

    slow_client.cancel_job(job.job_id)
    deadline = time.monotonic() + 15
    fetched = slow_client.get_job(job.job_id)
    while fetched.state != "DONE" and time.monotonic() < deadline:
        time.sleep(0.2)
        fetched = slow_client.get_job(job.job_id)

    assert fetched.state == "DONE", "a cancelled job must reach DONE well before its 60 s run time"
    assert fetched.error_result is not None
    assert fetched.error_result["reason"] == "stopped"
    assert list_partition(slow_client, t_id, JAN15) == []


def test_failing_query_raises_bad_request_and_records_the_error_result(client, dataset):
    src = create_source_table(client, dataset, SOURCE_ROWS)

    job = client.query(f"SELECT no_such_column FROM `{src}`")
    with pytest.raises(BadRequest) as failure:
        job.result(timeout=JOB_TIMEOUT_S)

    assert "no_such_column" in str(failure.value)
    # getQueryResults may report the failure before this job object saw DONE; ask jobs.get.
    fetched = client.get_job(job.job_id)
    assert fetched.state == "DONE"
    assert fetched.error_result["reason"] == "invalidQuery"
    assert "no_such_column" in fetched.error_result["message"]


def test_duplicate_job_id_is_a_conflict_and_leaves_the_first_job(client, dataset):
    job_id = f"conformance_{dataset.dataset_id}"
    # job_retry=None: a job with a caller-chosen id cannot be re-run under the same id.
    first = client.query("SELECT 1 AS x", job_id=job_id, job_retry=None)
    assert [tuple(r.values()) for r in first.result(timeout=JOB_TIMEOUT_S)] == [(1,)]

    with pytest.raises(Conflict) as conflict:
        client.query("SELECT 2 AS x", job_id=job_id, job_retry=None)

    assert conflict.value.code == 409
    assert [e.get("reason") for e in conflict.value.errors] == ["duplicate"]
    fetched = client.get_job(job_id)
    assert fetched.query == "SELECT 1 AS x"
    assert fetched.state == "DONE"
    assert fetched.error_result is None


def test_get_job_of_an_unknown_id_is_not_found(client):
    with pytest.raises(NotFound) as missing:
        client.get_job("no_such_job_in_this_project")

    assert [e.get("reason") for e in missing.value.errors] == ["notFound"]
