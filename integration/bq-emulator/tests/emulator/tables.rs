//! Datasets, tables and the error envelope.

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn dataset_insert_get_duplicate_and_missing() {
    let env = Env::start().await;
    let (s, v) = env
        .post(
            "/datasets",
            json!({"datasetReference": {"projectId": P, "datasetId": "other"}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["datasetReference"],
        json!({"projectId": P, "datasetId": "other"})
    );
    assert_eq!(v["id"], "p:other");
    let (s, v) = env.get("/datasets/other").await;
    assert_eq!(s, 200);
    assert!(v["creationTime"].as_str().unwrap().parse::<i64>().unwrap() > 1_600_000_000_000);

    let (s, v) = env
        .post(
            "/datasets",
            json!({"datasetReference": {"datasetId": "other"}}),
        )
        .await;
    assert_eq!(s, 409);
    assert_eq!(
        v,
        json!({"error": {"code": 409, "message": "Already Exists: Dataset p:other", "status": "ALREADY_EXISTS",
            "errors": [{"reason": "duplicate", "message": "Already Exists: Dataset p:other", "domain": "global"}]}})
    );
    let (s, v) = env.get("/datasets/nope").await;
    assert_eq!(s, 404);
    assert_eq!(v["error"]["status"], "NOT_FOUND");
    assert_eq!(v["error"]["errors"][0]["reason"], "notFound");
    assert_eq!(v["error"]["message"], "Not found: Dataset p:nope");
}

#[tokio::test]
async fn table_insert_get_echoes_partitioning_and_stats() {
    let env = Env::start().await;
    let mut spec = day_table_spec();
    spec["clustering"] = json!({"fields": ["s"]});
    spec["labels"] = json!({"team": "data"});
    let created = env.create_table("events", spec).await;
    assert_eq!(
        created["timePartitioning"],
        json!({"type": "DAY", "field": "dt"})
    );
    env.emu
        .insert_rows(
            P,
            DS,
            "events",
            vec![row(json!({"dt": "2024-01-15", "n": 1, "s": "x"}))],
        )
        .unwrap();
    let (s, v) = env.get(&format!("/datasets/{DS}/tables/events")).await;
    assert_eq!(s, 200);
    assert_eq!(v["kind"], "bigquery#table");
    assert_eq!(
        v["tableReference"],
        json!({"projectId": P, "datasetId": DS, "tableId": "events"})
    );
    assert_eq!(v["timePartitioning"], json!({"type": "DAY", "field": "dt"}));
    assert_eq!(v["clustering"], json!({"fields": ["s"]}));
    assert_eq!(v["labels"], json!({"team": "data"}));
    assert_eq!(v["numRows"], "1");
    // 8 (DATE) + 8 (INT64) + 2 + 1 (STRING "x")
    assert_eq!(v["numBytes"], "19");
    assert_eq!(v["schema"]["fields"][0]["name"], "dt");
    let created_ms: i64 = v["creationTime"].as_str().unwrap().parse().unwrap();
    let modified_ms: i64 = v["lastModifiedTime"].as_str().unwrap().parse().unwrap();
    assert!(modified_ms >= created_ms);

    let (s, v) = env
        .post(
            &format!("/datasets/{DS}/tables"),
            json!({"tableReference": {"tableId": "events"}}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["errors"][0]["reason"].as_str()),
        (409, Some("duplicate"))
    );

    let (s, v) = env.get(&format!("/datasets/{DS}/tables")).await;
    assert_eq!(s, 200);
    assert_eq!(v["tables"][0]["tableReference"]["tableId"], "events");
    assert_eq!(v["totalItems"], 1);

    let (s, _) = env.delete(&format!("/datasets/{DS}/tables/events")).await;
    assert_eq!(s, 204);
    let (s, v) = env.get(&format!("/datasets/{DS}/tables/events")).await;
    assert_eq!(s, 404);
    assert_eq!(v["error"]["message"], "Not found: Table p:ds.events");
}

#[tokio::test]
async fn ingestion_time_range_and_invalid_partitioning() {
    let env = Env::start().await;
    let v = env
        .create_table(
            "ingest",
            json!({"schema": {"fields": [{"name": "n", "type": "INTEGER"}]}, "timePartitioning": {"type": "HOUR"}}),
        )
        .await;
    assert_eq!(v["timePartitioning"], json!({"type": "HOUR"}));
    let v = env
        .create_table(
            "ranged",
            json!({"schema": {"fields": [{"name": "k", "type": "INTEGER"}]},
                   "rangePartitioning": {"field": "k", "range": {"start": 0, "end": 100, "interval": 10}}}),
        )
        .await;
    assert_eq!(
        v["rangePartitioning"],
        json!({"field": "k", "range": {"start": "0", "end": "100", "interval": "10"}})
    );

    let (s, v) = env
        .post(
            &format!("/datasets/{DS}/tables"),
            json!({"tableReference": {"tableId": "bad"}, "schema": {"fields": [{"name": "s", "type": "STRING"}]},
                   "timePartitioning": {"type": "DAY", "field": "s"}}),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["errors"][0]["reason"], "invalid");
    let (s, _) = env
        .post(
            &format!("/datasets/{DS}/tables"),
            json!({"tableReference": {"tableId": "t$2024"}}),
        )
        .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn missing_dataset_and_unknown_path() {
    let env = Env::start().await;
    let (s, v) = env
        .post(
            "/datasets/none/tables",
            json!({"tableReference": {"tableId": "t"}}),
        )
        .await;
    assert_eq!(s, 404);
    assert_eq!(v["error"]["message"], "Not found: Dataset p:none");
    let (s, v) = env.get("/nonsense").await;
    assert_eq!(s, 404);
    assert_eq!(v["error"]["errors"][0]["domain"], "global");
}
