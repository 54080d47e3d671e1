"""The real bq-backfill binary against the emulator, then the audit log's `_latest` view read by the official client.

The README's two operator queries must run verbatim against the view and give the right answer: after a complete run
`status | count` is exactly `SUCCEEDED | N` and the never-succeeded list is empty; after a run whose every partition
fails, both say so.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from google.cloud import bigquery

DAYS = ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]


def _binary() -> str:
    binary = os.environ.get("BQ_BACKFILL_BIN")
    if not binary or not os.access(binary, os.X_OK):
        pytest.exit("BQ_BACKFILL_BIN is not an executable; hint: run `make test-python`", returncode=2)
    return binary


def _backfill(emulator, descriptor: dict) -> tuple[int, list[dict]]:
    env = {**os.environ, "BIGQUERY_EMULATOR_HOST": emulator.base_url, "RUST_LOG": "warn"}
    env.pop("GOOGLE_CLOUD_PROJECT", None)
    proc = subprocess.run(
        [_binary(), "run"],
        input=json.dumps(descriptor),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events and events[-1]["event"] == "run_finished", proc.stderr
    return proc.returncode, events


@pytest.fixture
def tables(client: bigquery.Client, dataset: bigquery.Dataset):
    """A raw table with one row per day and an empty day-partitioned destination."""
    raw = client.create_table(
        bigquery.Table(
            f"{dataset.project}.{dataset.dataset_id}.raw",
            schema=[bigquery.SchemaField("ts", "TIMESTAMP"), bigquery.SchemaField("n", "INT64")],
        )
    )
    errors = client.insert_rows_json(raw, [{"ts": f"{d}T12:00:00Z", "n": i} for i, d in enumerate(DAYS)])
    assert errors == []
    dest = bigquery.Table(
        f"{dataset.project}.{dataset.dataset_id}.daily",
        schema=[bigquery.SchemaField("day", "DATE"), bigquery.SchemaField("total", "INT64")],
    )
    dest.time_partitioning = bigquery.TimePartitioning(type_=bigquery.TimePartitioningType.DAY, field="day")
    client.create_table(dest)
    return dataset


def _descriptor(ds: bigquery.Dataset, job: str, query: str) -> dict:
    return {
        "job": job,
        "project": ds.project,
        "destination": f"{ds.project}.{ds.dataset_id}.daily",
        "partitions": {"granularity": "day", "start": DAYS[0], "end": "2024-01-04"},
        "source": {"query": query},
        "checkpoint": {"table": f"{ds.project}.{ds.dataset_id}.audit"},
        "throttle": {"pause_seconds": 0, "pause_ratio": 0},
        "retry": {"max_attempts": 1, "initial_backoff_seconds": 0.01, "deadline_seconds": 5},
    }


GOOD = (
    f"SELECT DATE(ts) AS day, SUM(n) AS total FROM `{{raw}}` "
    "WHERE ts >= @partition_start AND ts < @partition_end GROUP BY day"
)
# Every row lands outside the partition being written: BigQuery fails each job.
BAD = "SELECT DATE '2000-01-01' AS day, 1 AS total WHERE @partition_id IS NOT NULL"


def test_the_readme_queries_on_the_latest_view(client: bigquery.Client, emulator, tables):
    ds = tables
    raw = f"{ds.project}.{ds.dataset_id}.raw"
    code, events = _backfill(emulator, _descriptor(ds, "good_job", GOOD.replace("{raw}", raw)))
    assert code == 0, events[-1]
    code, events = _backfill(emulator, {**_descriptor(ds, "bad_job", BAD), "on_failure": "continue"})
    assert code == 1, events[-1]
    assert events[-1]["failed"] == 3

    view = client.get_table(f"{ds.project}.{ds.dataset_id}.audit_latest")
    assert view.table_type == "VIEW"
    assert "ROW_NUMBER()" in view.view_query

    latest = f"`{ds.project}.{ds.dataset_id}.audit_latest`"
    counts = {
        job: sorted(
            tuple(r.values())
            for r in client.query(f"SELECT status, COUNT(*) FROM {latest} WHERE job = '{job}' GROUP BY status").result()
        )
        for job in ("good_job", "bad_job")
    }
    assert counts == {"good_job": [("SUCCEEDED", 3)], "bad_job": [("FAILED", 3)]}

    never = f"SELECT partition_id FROM {latest} WHERE job = @job GROUP BY partition_id HAVING COUNTIF(status = 'SUCCEEDED') = 0"

    def never_succeeded(job: str) -> list[str]:
        config = bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter("job", "STRING", job)])
        return sorted(r["partition_id"] for r in client.query(never, job_config=config).result())

    assert never_succeeded("good_job") == []
    assert never_succeeded("bad_job") == ["20240101", "20240102", "20240103"]

    # One row per partition, with its latest attempt and error.
    rows = list(client.query(f"SELECT * FROM {latest} WHERE job = 'bad_job' ORDER BY partition_id").result())
    assert [r["partition_id"] for r in rows] == ["20240101", "20240102", "20240103"]
    assert all(r["status"] == "FAILED" and r["attempts"] == 1 and r["error_message"] for r in rows)
