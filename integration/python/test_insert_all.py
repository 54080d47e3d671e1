"""Streaming inserts (tabledata.insertAll) as the backfiller's audit log uses them."""

from __future__ import annotations

import datetime as dt

from bqconf import create_events_table, events, query_rows

JAN15 = dt.date(2024, 1, 15)


def test_insert_all_with_the_same_row_ids_twice_keeps_one_copy(client, dataset):
    t = create_events_table(client, dataset)
    t_id = f"{t.project}.{t.dataset_id}.{t.table_id}"
    rows = [
        {"day": "2024-01-15", "user": "alice", "n": 1},
        {"day": "2024-01-15", "user": "bob", "n": 2},
    ]

    assert client.insert_rows_json(t_id, rows, row_ids=["run-1/alice", "run-1/bob"]) == []
    # A client retrying after a lost response sends the identical request again.
    assert client.insert_rows_json(t_id, rows, row_ids=["run-1/alice", "run-1/bob"]) == []
    # One new id next to an already used one: only the new row is added.
    more = [{"day": "2024-01-15", "user": "carol", "n": 3}, rows[0]]
    assert client.insert_rows_json(t_id, more, row_ids=["run-1/carol", "run-1/alice"]) == []

    expected = [(JAN15, "alice", 1), (JAN15, "bob", 2), (JAN15, "carol", 3)]
    assert events(client.list_rows(t)) == expected
    assert events(query_rows(client, f"SELECT day, user, n FROM `{t_id}`")) == expected


def test_insert_all_with_an_invalid_row_reports_it_and_inserts_nothing(client, dataset):
    t = create_events_table(client, dataset)
    t_id = f"{t.project}.{t.dataset_id}.{t.table_id}"
    rows = [
        {"day": "2024-01-15", "user": "alice", "n": 1},
        {"day": "2024-01-15", "user": "bob", "n": "not-a-number"},
    ]

    errors = client.insert_rows_json(t_id, rows, row_ids=["a", "b"])

    by_index = {e["index"]: [x["reason"] for x in e["errors"]] for e in errors}
    # Without skipInvalidRows the whole request is rejected: the bad row is `invalid`, the good one `stopped`.
    assert by_index == {1: ["invalid"], 0: ["stopped"]}, errors
    assert list(client.list_rows(t)) == []
