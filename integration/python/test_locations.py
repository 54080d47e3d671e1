"""Job locations: a job runs where its dataset is, and one outside the US/EU multi-regions is found only by
calls that name its location (BigQuery answers 404 notFound otherwise)."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from google.api_core.exceptions import NotFound
from google.cloud import bigquery
from google.cloud.bigquery import ScalarQueryParameter

from bqconf import JOB_TIMEOUT_S, create_events_table, create_source_table, list_partition, partition, write_partition

TOKYO = "asia-northeast1"
JAN15 = dt.date(2024, 1, 15)
ROWS = [
    {"day": "2024-01-15", "user": "alice", "n": 1},
    {"day": "2024-01-16", "user": "bob", "n": 2},
]
_seq = itertools.count(1)


@pytest.fixture
def tokyo(client) -> bigquery.Dataset:
    """A fresh dataset in asia-northeast1."""
    ds = bigquery.Dataset(f"{client.project}.tokyo_{next(_seq)}")
    ds.location = TOKYO
    return client.create_dataset(ds)


def test_a_dataset_keeps_its_location(client, tokyo):
    assert client.get_dataset(tokyo.dataset_id).location == TOKYO


def test_a_query_without_location_runs_in_its_datasets_location(client, tokyo):
    src = create_source_table(client, tokyo, ROWS)
    t = create_events_table(client, tokyo)
    t_id = f"{t.project}.{t.dataset_id}.{t.table_id}"
    sql = f"SELECT day, user, n FROM `{src}` WHERE day = @d"
    job = write_partition(client, sql, partition(t_id, JAN15), [ScalarQueryParameter("d", "DATE", JAN15)])
    job.result(timeout=JOB_TIMEOUT_S)

    assert job.location == TOKYO
    assert list_partition(client, t_id, JAN15) == [(JAN15, "alice", 1)]


def test_get_job_finds_a_tokyo_job_only_with_its_location(client, tokyo):
    src = create_source_table(client, tokyo, ROWS)
    job = client.query(f"SELECT COUNT(*) AS c FROM `{src}`")
    assert [r["c"] for r in job.result(timeout=JOB_TIMEOUT_S)] == [2]

    with pytest.raises(NotFound):
        client.get_job(job.job_id)
    with pytest.raises(NotFound):
        client.get_job(job.job_id, location="US")
    fetched = client.get_job(job.job_id, location=TOKYO)
    assert fetched.state == "DONE"
    assert fetched.location == TOKYO

    with pytest.raises(NotFound):
        client.cancel_job(job.job_id)
    assert client.cancel_job(job.job_id, location=TOKYO).state == "DONE"


def test_a_query_naming_another_location_fails_not_found(client, tokyo):
    src = create_source_table(client, tokyo, ROWS)
    job = client.query(f"SELECT n FROM `{src}`", location="US")

    with pytest.raises(NotFound, match=f"Dataset {tokyo.project}:{tokyo.dataset_id} was not found in location US"):
        job.result(timeout=JOB_TIMEOUT_S)
    assert job.location == "US"


def test_query_and_wait_without_location_reads_a_tokyo_dataset(client, tokyo):
    src = create_source_table(client, tokyo, ROWS)
    rows = client.query_and_wait(f"SELECT user FROM `{src}` ORDER BY user")
    assert [r["user"] for r in rows] == ["alice", "bob"]
