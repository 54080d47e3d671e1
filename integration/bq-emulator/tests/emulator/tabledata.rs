//! tabledata.insertAll and tabledata.list.

use serde_json::json;

use crate::common::*;

fn insert_body(rows: serde_json::Value) -> serde_json::Value {
    json!({"kind": "bigquery#tableDataInsertAllRequest", "rows": rows})
}

#[tokio::test]
async fn insert_all_routes_rows_and_dedups_insert_ids() {
    let env = Env::start().await;
    env.create_table("events", day_table_spec()).await;
    let path = format!("/datasets/{DS}/tables/events/insertAll");
    let rows = json!([
        {"insertId": "r1", "json": {"dt": "2024-01-15", "n": 1, "s": "a"}},
        {"insertId": "r2", "json": {"dt": "2024-01-16", "n": "2", "s": "b"}},
        {"json": {"dt": null, "n": 3, "s": "c"}},
    ]);
    let (s, v) = env.post(&path, insert_body(rows.clone())).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v, json!({"kind": "bigquery#tableDataInsertAllResponse"}));
    // A retry with the same insertIds adds nothing for r1/r2 (the row without insertId is added again).
    let (s, _) = env.post(&path, insert_body(rows)).await;
    assert_eq!(s, 200);
    assert_eq!(
        env.emu.partition_ids(P, DS, "events").unwrap(),
        ["20240115", "20240116", "__NULL__"]
    );
    assert_eq!(env.rows("events$20240115").len(), 1);
    assert_eq!(env.rows("events$20240116").len(), 1);
    assert_eq!(env.rows("events$__NULL__").len(), 2);
}

#[tokio::test]
async fn insert_all_row_errors_skip_invalid_and_unknown_values() {
    let env = Env::start().await;
    env.create_table("events", day_table_spec()).await;
    let path = format!("/datasets/{DS}/tables/events/insertAll");
    let rows = json!([
        {"json": {"dt": "2024-01-15", "n": 1, "s": "a"}},
        {"json": {"dt": "2024-01-15", "n": "not a number", "s": "b"}},
        {"json": {"dt": "2024-01-15", "n": 3, "s": "c", "extra": 1}},
    ]);
    let (s, v) = env.post(&path, insert_body(rows.clone())).await;
    assert_eq!(s, 200);
    let errs = v["insertErrors"].as_array().unwrap();
    assert_eq!(errs.len(), 3, "{v}");
    assert_eq!(errs[0]["errors"][0]["reason"], "stopped");
    assert_eq!(errs[1]["errors"][0]["reason"], "invalid");
    assert_eq!(errs[2]["errors"][0]["reason"], "invalid");
    assert!(
        env.rows("events").is_empty(),
        "nothing inserted without skipInvalidRows"
    );

    let mut body = insert_body(rows.clone());
    body["skipInvalidRows"] = json!(true);
    let (_, v) = env.post(&path, body).await;
    assert_eq!(v["insertErrors"].as_array().unwrap().len(), 2);
    assert_eq!(ns(&env.rows("events")), [("1".into(), "a".into())]);

    let mut body = insert_body(rows);
    body["skipInvalidRows"] = json!(true);
    body["ignoreUnknownValues"] = json!(true);
    let (_, v) = env.post(&path, body).await;
    assert_eq!(v["insertErrors"].as_array().unwrap().len(), 1);
    assert_eq!(v["insertErrors"][0]["index"], 1);
    assert_eq!(env.rows("events").len(), 3);
}

#[tokio::test]
async fn ingestion_time_rows_land_in_the_current_partition() {
    let env = Env::start().await;
    env.create_table(
        "ingest",
        json!({"schema": {"fields": [{"name": "n", "type": "INTEGER"}]}, "timePartitioning": {"type": "DAY"}}),
    )
    .await;
    let (s, _) = env
        .post(
            &format!("/datasets/{DS}/tables/ingest/insertAll"),
            insert_body(json!([{"json": {"n": 1}}])),
        )
        .await;
    assert_eq!(s, 200);
    let today = chrono::Utc::now().format("%Y%m%d").to_string();
    assert_eq!(env.emu.partition_ids(P, DS, "ingest").unwrap(), [today]);
}

#[tokio::test]
async fn tabledata_list_pages_and_decorators() {
    let env = Env::start().await;
    env.seeded_day_table("events").await;
    let base = format!("/datasets/{DS}/tables/events/data");
    let (s, v) = env.get(&format!("{base}?maxResults=3")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["kind"], "bigquery#tableDataList");
    assert_eq!(v["totalRows"], "4");
    assert_eq!(v["rows"].as_array().unwrap().len(), 3);
    assert_eq!(
        v["rows"][0]["f"],
        json!([{"v": "2024-01-14"}, {"v": "1"}, {"v": "a"}])
    );
    let tok = v["pageToken"].as_str().unwrap();
    let (_, v) = env
        .get(&format!("{base}?maxResults=3&pageToken={tok}"))
        .await;
    assert_eq!(v["rows"].as_array().unwrap().len(), 1);
    assert_eq!(v["rows"][0]["f"][1]["v"], "4");
    assert!(v.get("pageToken").is_none());
    let (_, v) = env.get(&format!("{base}?startIndex=1&maxResults=1")).await;
    assert_eq!(v["rows"][0]["f"][1]["v"], "2");
    let (_, v) = env
        .get(&format!("/datasets/{DS}/tables/events%2420240115/data"))
        .await;
    assert_eq!(v["totalRows"], "2");
    let (s, _) = env
        .get(&format!("/datasets/{DS}/tables/missing/data"))
        .await;
    assert_eq!(s, 404);
}
