"""What write-audit-publish needs from the emulator: a staging table that expires, checks that read it by
path with partition parameters, and a copy job publishing one partition of it into the destination."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from google.api_core.exceptions import NotFound
from google.cloud import bigquery
from google.cloud.bigquery import ScalarQueryParameter

from bqconf import JOB_TIMEOUT_S, create_events_table, list_partition, partition, query_rows, write_partition

JAN15, JAN16 = dt.date(2024, 1, 15), dt.date(2024, 1, 16)


def fill(client, table_id: str, day: dt.date, users: list[str]) -> None:
    """Replaces `table$day` with one row per user."""
    sql = " UNION ALL ".join(f"SELECT @day AS day, @u{i} AS user, 1 AS n" for i in range(len(users)))
    params = [ScalarQueryParameter("day", "DATE", day)]
    params += [ScalarQueryParameter(f"u{i}", "STRING", u) for i, u in enumerate(users)]
    write_partition(client, sql, partition(table_id, day), params=params).result(timeout=JOB_TIMEOUT_S)


def test_a_table_past_its_expiration_time_is_gone_and_can_be_created_again(client, dataset):
    table = create_events_table(client, dataset, "stage")
    table.expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)
    client.update_table(table, ["expires"])
    assert client.get_table(table.reference).expires is not None

    time.sleep(1.2)
    with pytest.raises(NotFound):
        client.get_table(table.reference)
    assert [t.table_id for t in client.list_tables(dataset)] == []
    again = create_events_table(client, dataset, "stage")
    assert again.expires is None


def test_a_table_expiring_later_is_kept_and_reports_its_expiration(client, dataset):
    table = bigquery.Table(f"{dataset.project}.{dataset.dataset_id}.later", schema=create_events_table(client, dataset).schema)
    table.expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=7)
    created = client.create_table(table)
    got = client.get_table(created.reference)
    assert abs((got.expires - table.expires).total_seconds()) < 1


def test_copy_job_publishes_one_partition_and_leaves_the_others(client, dataset):
    dest = create_events_table(client, dataset, "dest")
    stage = create_events_table(client, dataset, "dest__bqb_stage")
    dest_id = f"{dest.project}.{dest.dataset_id}.{dest.table_id}"
    stage_id = f"{stage.project}.{stage.dataset_id}.{stage.table_id}"
    fill(client, dest_id, JAN15, ["old-a", "old-b"])
    fill(client, dest_id, JAN16, ["old-c"])
    fill(client, stage_id, JAN15, ["new-a"])
    fill(client, stage_id, JAN16, ["new-b", "new-b"])

    # A check reads the staging table by path, the partition as a parameter.
    dupes = query_rows(
        client,
        f"SELECT user, COUNT(*) AS c FROM `{stage_id}` WHERE day = @partition_date GROUP BY user HAVING COUNT(*) > 1",
        [ScalarQueryParameter("partition_date", "DATE", JAN16)],
    )
    assert [(r["user"], r["c"]) for r in dupes] == [("new-b", 2)]

    config = bigquery.CopyJobConfig(write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE)
    config.create_disposition = bigquery.CreateDisposition.CREATE_NEVER
    job = client.copy_table(partition(stage_id, JAN15), partition(dest_id, JAN15), job_config=config)
    job.result(timeout=JOB_TIMEOUT_S)

    assert list_partition(client, dest_id, JAN15) == [(JAN15, "new-a", 1)]
    assert list_partition(client, dest_id, JAN16) == [(JAN16, "old-c", 1)]
