"""Partition-level writes: query and load jobs replacing exactly one day of a column-partitioned table."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from google.api_core.exceptions import BadRequest
from google.cloud import bigquery
from google.cloud.bigquery import ScalarQueryParameter

from bqconf import (
    JOB_TIMEOUT_S,
    create_events_table,
    create_source_table,
    events,
    list_partition,
    partition,
    query_rows,
    write_partition,
)

JAN14, JAN15, JAN16 = dt.date(2024, 1, 14), dt.date(2024, 1, 15), dt.date(2024, 1, 16)


def seeded_events_table(client, dataset, rows) -> tuple[str, str]:
    """Creates src (streamed `rows`) and the partitioned t filled from src by a query job; returns their ids.

    The target is filled by a job rather than insertAll so no test depends on how WRITE_TRUNCATE treats a
    streaming buffer.
    """
    src = create_source_table(client, dataset, rows)
    t = create_events_table(client, dataset)
    t_id = f"{t.project}.{t.dataset_id}.{t.table_id}"
    job = write_partition(
        client, f"SELECT day, user, n FROM `{src}`", t_id, disposition=bigquery.WriteDisposition.WRITE_APPEND
    )
    job.result(timeout=JOB_TIMEOUT_S)
    return src, t_id


def test_dataset_and_day_partitioned_table_are_created_as_specified(client, dataset):
    got_dataset = client.get_dataset(dataset.reference)
    assert got_dataset.dataset_id == dataset.dataset_id
    assert got_dataset.project == client.project

    create_events_table(client, dataset)
    table = client.get_table(f"{dataset.project}.{dataset.dataset_id}.t")

    assert [(f.name, f.field_type) for f in table.schema] == [
        ("day", "DATE"),
        ("user", "STRING"),
        ("n", "INTEGER"),
    ]
    assert table.time_partitioning is not None
    assert table.time_partitioning.type_ == "DAY"
    assert table.time_partitioning.field == "day"
    assert table.num_rows == 0


def test_query_job_truncating_one_partition_twice_leaves_one_copy_and_other_days_untouched(client, dataset):
    src, t = seeded_events_table(
        client,
        dataset,
        [
            {"day": "2024-01-14", "user": "zed", "n": 7},
            {"day": "2024-01-15", "user": "alice", "n": 1},
            {"day": "2024-01-15", "user": "bob", "n": 2},
            {"day": "2024-01-15", "user": "carol", "n": 3},
            # Already in the partition before the backfill; the replacement must remove it.
            {"day": "2024-01-15", "user": "stale", "n": -1},
            {"day": "2024-01-16", "user": "dave", "n": 4},
        ],
    )
    sql = f"SELECT day, user, n FROM `{src}` WHERE day = @d AND n >= @min_n"
    params = [ScalarQueryParameter("d", "DATE", JAN15), ScalarQueryParameter("min_n", "INT64", 0)]
    expected = [(JAN15, "alice", 1), (JAN15, "bob", 2), (JAN15, "carol", 3)]

    for attempt in (1, 2):
        job = write_partition(client, sql, partition(t, JAN15), params)
        result = job.result(timeout=JOB_TIMEOUT_S)

        assert job.state == "DONE", f"attempt {attempt}"
        assert job.error_result is None, f"attempt {attempt}: {job.error_result}"
        assert job.destination.table_id == "t$20240115"
        assert result.total_rows == 3, f"attempt {attempt}"
        assert list_partition(client, t, JAN15) == expected, f"attempt {attempt}: tabledata.list of t$20240115"
        queried = query_rows(client, f"SELECT day, user, n FROM `{t}` WHERE day = @d", [params[0]])
        assert events(queried) == expected, f"attempt {attempt}: query of day 2024-01-15"

    assert list_partition(client, t, JAN14) == [(JAN14, "zed", 7)]
    assert list_partition(client, t, JAN16) == [(JAN16, "dave", 4)]
    [total] = query_rows(client, f"SELECT COUNT(*) AS c FROM `{t}`")
    assert total["c"] == 5


def test_rows_outside_the_decorated_partition_fail_the_job_and_change_nothing(client, dataset):
    src, t = seeded_events_table(
        client,
        dataset,
        [
            {"day": "2024-01-15", "user": "alice", "n": 1},
            {"day": "2024-01-16", "user": "dave", "n": 4},
        ],
    )

    # Every source row goes to $20240115, including dave's row dated 2024-01-16.
    job = write_partition(client, f"SELECT day, user, n FROM `{src}`", partition(t, JAN15))
    with pytest.raises(BadRequest) as failure:
        job.result(timeout=JOB_TIMEOUT_S)

    assert "different partitions" in str(failure.value)
    # getQueryResults may report the failure before this job object saw DONE; ask jobs.get.
    job.reload()
    assert job.state == "DONE"
    assert job.error_result is not None
    assert job.error_result["reason"] == "invalid"
    assert "different partitions" in job.error_result["message"]
    assert list_partition(client, t, JAN15) == [(JAN15, "alice", 1)]
    assert list_partition(client, t, JAN16) == [(JAN16, "dave", 4)]


def test_json_load_from_gcs_wildcard_replaces_one_partition(client, dataset, emulator):
    _, t = seeded_events_table(
        client,
        dataset,
        [
            {"day": "2024-01-15", "user": "alice", "n": 1},
            {"day": "2024-01-16", "user": "stale", "n": 9},
        ],
    )
    folder = emulator.gcs_root / "bucket" / "path"
    folder.mkdir(parents=True)
    loaded = {
        "file.json": [
            {"day": "2024-01-16", "user": "erin", "n": 5},
            {"day": "2024-01-16", "user": "frank", "n": 6},
        ],
        "part-2.json": [{"day": "2024-01-16", "user": "gina", "n": 7}],
    }
    for name, rows in loaded.items():
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    # Neither matches gs://bucket/path/*.json; loading either would add rows or fail the job.
    (folder / "notes.txt").write_text("not json at all\n")
    outside = emulator.gcs_root / "bucket" / "other"
    outside.mkdir()
    (outside / "extra.json").write_text(json.dumps({"day": "2024-01-16", "user": "outsider", "n": 0}) + "\n")

    config = bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
        write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
    )
    job = client.load_table_from_uri("gs://bucket/path/*.json", partition(t, JAN16), job_config=config)
    job.result(timeout=JOB_TIMEOUT_S)

    assert job.state == "DONE"
    assert job.error_result is None
    assert job.output_rows == 3
    assert job.input_files == 2
    assert list_partition(client, t, JAN16) == [(JAN16, "erin", 5), (JAN16, "frank", 6), (JAN16, "gina", 7)]
    assert list_partition(client, t, JAN15) == [(JAN15, "alice", 1)]


def test_partition_decorator_on_an_unpartitioned_table_fails_and_changes_nothing(client, dataset):
    src = create_source_table(client, dataset, [{"day": "2024-01-15", "user": "alice", "n": 1}])

    job = write_partition(client, "SELECT DATE '2024-01-15' AS day, 'bob' AS user, 2 AS n", partition(src, JAN15))
    with pytest.raises(BadRequest) as failure:
        job.result(timeout=JOB_TIMEOUT_S)

    assert "partition" in str(failure.value).lower()
    assert events(client.list_rows(client.get_table(src))) == [(JAN15, "alice", 1)]
