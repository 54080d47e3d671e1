"""Reading results: paging through query results and tables, and the Python types of values."""

from __future__ import annotations

import datetime as dt

from google.cloud import bigquery
from google.cloud.bigquery import ScalarQueryParameter

from bqconf import JOB_TIMEOUT_S, create_source_table, query_rows

ELEVEN_ROWS = [{"day": f"2024-01-{d:02d}", "user": f"user{d:02d}", "n": d} for d in range(1, 12)]


def test_query_results_page_through_eleven_rows_three_at_a_time(client, dataset):
    src = create_source_table(client, dataset, ELEVEN_ROWS)

    rows = client.query(f"SELECT user, n FROM `{src}` ORDER BY n").result(page_size=3, timeout=JOB_TIMEOUT_S)
    pages = [[row["n"] for row in page] for page in rows.pages]

    assert pages == [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11]]
    assert rows.total_rows == 11


def test_list_rows_pages_through_a_table_four_at_a_time(client, dataset):
    src = create_source_table(client, dataset, ELEVEN_ROWS)
    table = client.get_table(src)

    rows = client.list_rows(table, page_size=4)
    pages = [[row["n"] for row in page] for page in rows.pages]

    # tabledata.list promises no order, only that every row comes exactly once.
    assert [len(p) for p in pages] == [4, 4, 3]
    assert sorted(n for p in pages for n in p) == list(range(1, 12))
    assert rows.total_rows == 11
    assert len(list(client.list_rows(table, max_results=5))) == 5


def test_query_values_arrive_as_python_types(client, dataset):
    src = create_source_table(
        client,
        dataset,
        [
            {"day": "2024-01-15", "user": "alice", "n": 1},
            {"day": "2024-01-16", "user": "bob", "n": None},
        ],
    )
    ts = dt.datetime(2024, 1, 15, 10, 20, 30, 123456, tzinfo=dt.timezone.utc)
    sql = f"""
        SELECT COUNT(*) AS c, MIN(day) AS first_day, MAX(n) AS max_n,
               @ts AS ts_param, TIMESTAMP '2024-01-15 10:20:30.123456+00:00' AS ts_literal,
               @d AS d_param, CAST(NULL AS STRING) AS nothing, 1.5 AS f, TRUE AS b
        FROM `{src}`
    """
    params = [ScalarQueryParameter("ts", "TIMESTAMP", ts), ScalarQueryParameter("d", "DATE", dt.date(2024, 1, 17))]

    [row] = query_rows(client, sql, params)

    assert row["c"] == 2 and type(row["c"]) is int
    assert row["first_day"] == dt.date(2024, 1, 15) and type(row["first_day"]) is dt.date
    assert row["max_n"] == 1 and type(row["max_n"]) is int
    for name in ("ts_param", "ts_literal"):
        assert row[name] == ts, name
        assert row[name].utcoffset() == dt.timedelta(0), name
        assert row[name].microsecond == 123456, name
    assert row["d_param"] == dt.date(2024, 1, 17) and type(row["d_param"]) is dt.date
    assert row["nothing"] is None
    assert row["f"] == 1.5 and type(row["f"]) is float
    assert row["b"] is True


def test_null_column_values_read_back_as_none(client, dataset):
    src = create_source_table(client, dataset, [{"day": "2024-01-16", "user": "bob", "n": None}])

    [listed] = list(client.list_rows(client.get_table(src)))
    [queried] = query_rows(
        client, f"SELECT n FROM `{src}` WHERE user = @u", [ScalarQueryParameter("u", "STRING", "bob")]
    )

    assert listed["n"] is None
    assert listed["day"] == dt.date(2024, 1, 16)
    assert queried["n"] is None


def test_timestamps_streamed_into_a_table_read_back_with_microseconds(client, dataset):
    audit = client.create_table(
        bigquery.Table(
            f"{dataset.project}.{dataset.dataset_id}.audit",
            schema=[bigquery.SchemaField("partition", "STRING"), bigquery.SchemaField("at", "TIMESTAMP")],
        )
    )
    audit_id = f"{audit.project}.{audit.dataset_id}.{audit.table_id}"
    at = dt.datetime(2024, 1, 15, 10, 20, 30, 123456, tzinfo=dt.timezone.utc)
    assert client.insert_rows_json(audit_id, [{"partition": "20240115", "at": "2024-01-15T10:20:30.123456Z"}]) == []

    [listed] = list(client.list_rows(audit))
    [queried] = query_rows(client, f"SELECT at FROM `{audit_id}` WHERE partition = '20240115'")

    for name, value in (("tabledata.list", listed["at"]), ("query", queried["at"])):
        assert value == at, name
        assert value.utcoffset() == dt.timedelta(0), name
        assert value.microsecond == 123456, name
