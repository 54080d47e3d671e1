//! Logical views: creation, metadata, querying through them and what BigQuery refuses on them.

use bq_emulator::{Config, Emulator};
use serde_json::{Value, json};

use crate::common::*;

/// The view bq-backfill creates next to its audit table (`ds.audit` substituted).
const LATEST_SQL: &str = "SELECT job, partition_id, status, attempt, attempts, bq_job_id, run_id, fingerprint, rows_written,
       error_reason, error_message, recorded_at
FROM (
  SELECT job, partition_id, status, attempt, bq_job_id, run_id, fingerprint, rows_written,
         error_reason, error_message, recorded_at,
         MAX(attempt) OVER (PARTITION BY job, partition_id) AS attempts,
         ROW_NUMBER() OVER (PARTITION BY job, partition_id ORDER BY recorded_at DESC) AS rn
  FROM `p.ds.audit`
) AS latest
WHERE rn = 1";

fn audit_spec() -> Value {
    let cols = [
        ("job", "STRING"),
        ("partition_id", "STRING"),
        ("status", "STRING"),
        ("attempt", "INT64"),
        ("bq_job_id", "STRING"),
        ("run_id", "STRING"),
        ("error_reason", "STRING"),
        ("error_message", "STRING"),
        ("recorded_at", "TIMESTAMP"),
        ("fingerprint", "STRING"),
        ("rows_written", "INT64"),
    ];
    let fields: Vec<Value> = cols
        .iter()
        .map(|(n, t)| json!({"name": n, "type": t}))
        .collect();
    json!({"schema": {"fields": fields}, "timePartitioning": {"type": "DAY", "field": "recorded_at"}})
}

fn audit_row(job: &str, pid: &str, status: &str, attempt: i64, at: &str) -> Value {
    json!({"job": job, "partition_id": pid, "status": status, "attempt": attempt,
           "bq_job_id": format!("bf_{pid}_{attempt}"), "run_id": "r1", "recorded_at": at,
           "fingerprint": "fp", "rows_written": if status == "SUCCEEDED" { json!(10) } else { Value::Null },
           "error_reason": if status == "FAILED" { json!("invalid") } else { Value::Null }})
}

async fn seeded_audit(env: &Env) {
    env.create_table("audit", audit_spec()).await;
    let rows = [
        audit_row("x", "20240101", "RUNNING", 1, "2024-02-01 10:00:00+00"),
        audit_row("x", "20240101", "SUCCEEDED", 1, "2024-02-01 10:01:00+00"),
        audit_row("x", "20240102", "RUNNING", 1, "2024-02-01 10:00:00+00"),
        audit_row("x", "20240102", "FAILED", 1, "2024-02-01 10:02:00+00"),
        audit_row("x", "20240102", "RUNNING", 2, "2024-02-01 10:03:00+00"),
        audit_row("x", "20240102", "FAILED", 2, "2024-02-01 10:04:00+00"),
        audit_row("y", "20240101", "SUCCEEDED", 1, "2024-02-01 11:00:00+00"),
    ];
    env.emu
        .insert_rows(
            P,
            DS,
            "audit",
            rows.iter().map(|r| row(r.clone())).collect(),
        )
        .unwrap();
}

async fn create_view(env: &Env, name: &str, sql: &str) -> Resp {
    env.post(
        &format!("/datasets/{DS}/tables"),
        json!({"tableReference": {"projectId": P, "datasetId": DS, "tableId": name},
               "view": {"query": sql, "useLegacySql": false}}),
    )
    .await
}

/// jobs.query with named parameters; answers the status and the rows as wire values.
async fn query(env: &Env, sql: &str, params: Value) -> (u16, Value, Vec<Vec<Value>>) {
    let (s, v) = env
        .post(
            "/queries",
            json!({"query": sql, "useLegacySql": false, "parameterMode": "NAMED",
                   "queryParameters": params, "timeoutMs": 10000}),
        )
        .await;
    let rows = v["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    r["f"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|c| c["v"].clone())
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    (s, v, rows)
}

fn string_param(name: &str, value: &str) -> Value {
    json!({"name": name, "parameterType": {"type": "STRING"}, "parameterValue": {"value": value}})
}

fn sorted(mut rows: Vec<Vec<Value>>) -> Vec<Vec<Value>> {
    rows.sort_by_key(|r| r.iter().map(|v| v.to_string()).collect::<Vec<_>>());
    rows
}

#[tokio::test]
async fn view_insert_get_list_duplicate_delete() {
    let env = Env::start().await;
    seeded_audit(&env).await;
    let (s, created) = create_view(&env, "audit_latest", LATEST_SQL).await;
    assert_eq!(s, 200, "{created}");
    assert_eq!(created["type"], "VIEW");
    let (s, v) = env
        .get(&format!("/datasets/{DS}/tables/audit_latest"))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["type"], "VIEW");
    assert_eq!(
        v["view"],
        json!({"query": LATEST_SQL, "useLegacySql": false})
    );
    assert_eq!(v["id"], "p:ds.audit_latest");
    assert!(v.get("timePartitioning").is_none());
    assert!(v["creationTime"].as_str().unwrap().parse::<i64>().unwrap() > 1_600_000_000_000);
    let names: Vec<(&str, &str)> = v["schema"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("job", "STRING"),
            ("partition_id", "STRING"),
            ("status", "STRING"),
            ("attempt", "INTEGER"),
            ("attempts", "INTEGER"),
            ("bq_job_id", "STRING"),
            ("run_id", "STRING"),
            ("fingerprint", "STRING"),
            ("rows_written", "INTEGER"),
            ("error_reason", "STRING"),
            ("error_message", "STRING"),
            ("recorded_at", "TIMESTAMP"),
        ]
    );

    let (s, list) = env.get(&format!("/datasets/{DS}/tables")).await;
    assert_eq!(s, 200);
    let entry = list["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tableReference"]["tableId"] == "audit_latest")
        .unwrap()
        .clone();
    assert_eq!(entry["type"], "VIEW");
    assert_eq!(entry["view"], json!({"useLegacySql": false}));

    let (s, v) = create_view(&env, "audit_latest", LATEST_SQL).await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["error"]["errors"][0]["reason"], "duplicate");
    assert_eq!(
        v["error"]["message"],
        "Already Exists: Table p:ds.audit_latest"
    );

    let (s, _) = env
        .delete(&format!("/datasets/{DS}/tables/audit_latest"))
        .await;
    assert_eq!(s, 204);
    let (s, _) = env
        .get(&format!("/datasets/{DS}/tables/audit_latest"))
        .await;
    assert_eq!(s, 404);
    let (s, _, rows) = query(&env, "SELECT COUNT(*) FROM `p.ds.audit`", json!([])).await;
    assert_eq!(s, 200);
    assert_eq!(
        rows,
        [[json!("7")]],
        "deleting the view leaves its table alone"
    );
}

#[tokio::test]
async fn view_creation_validates_the_query() {
    let env = Env::start().await;
    seeded_audit(&env).await;
    let (s, v) = create_view(&env, "v", "SELECT FROM WHERE").await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["errors"][0]["reason"], "invalidQuery");
    let (s, v) = create_view(&env, "v", "SELECT * FROM `p.ds.nope`").await;
    assert_eq!(s, 404, "{v}");
    assert_eq!(v["error"]["errors"][0]["reason"], "notFound");
    assert_eq!(
        v["error"]["message"],
        "Not found: Table p:ds.nope was not found in location US"
    );
    let (s, v) = create_view(&env, "v", "SELECT no_such_column FROM `p.ds.audit`").await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["message"], "Unrecognized name: no_such_column");
    let (s, v) = create_view(&env, "v", "SELECT * FROM audit").await;
    assert_eq!(s, 400, "a view has no default dataset: {v}");
    let (s, v) = env
        .post(
            &format!("/datasets/{DS}/tables"),
            json!({"tableReference": {"tableId": "v"}, "view": {"query": "SELECT 1 AS x"}}),
        )
        .await;
    assert_eq!(s, 400, "absent useLegacySql means legacy SQL: {v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("useLegacySql")
    );
    let (s, v) = env
        .post(
            &format!("/datasets/{DS}/tables"),
            json!({"tableReference": {"tableId": "v"}, "view": {"query": "SELECT 1 AS x", "useLegacySql": false},
                   "timePartitioning": {"type": "DAY"}}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = env
        .post(
            "/datasets/nope/tables",
            json!({"tableReference": {"tableId": "v"}, "view": {"query": "SELECT 1 AS x", "useLegacySql": false}}),
        )
        .await;
    assert_eq!(s, 404, "{v}");
    let (s, _) = env.get(&format!("/datasets/{DS}/tables/v")).await;
    assert_eq!(s, 404, "no failed attempt left a view behind");
}

#[tokio::test]
async fn operator_queries_over_the_latest_view_see_current_rows() {
    let env = Env::start().await;
    seeded_audit(&env).await;
    let (s, v) = create_view(&env, "audit_latest", LATEST_SQL).await;
    assert_eq!(s, 200, "{v}");

    let (s, v, rows) = query(
        &env,
        "SELECT job, partition_id, status, attempt, attempts FROM `p.ds.audit_latest` ORDER BY job, partition_id",
        json!([]),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        rows,
        [
            ["x", "20240101", "SUCCEEDED", "1", "1"]
                .map(|s| json!(s))
                .to_vec(),
            ["x", "20240102", "FAILED", "2", "2"]
                .map(|s| json!(s))
                .to_vec(),
            ["y", "20240101", "SUCCEEDED", "1", "1"]
                .map(|s| json!(s))
                .to_vec(),
        ]
    );
    assert_eq!(
        v["schema"]["fields"][3],
        json!({"name": "attempt", "type": "INTEGER", "mode": "NULLABLE"})
    );

    let by_status =
        "SELECT status, COUNT(*) FROM `p.ds.audit_latest` WHERE job = 'x' GROUP BY status";
    let (s, v, rows) = query(&env, by_status, json!([])).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        sorted(rows),
        [
            [json!("FAILED"), json!("1")],
            [json!("SUCCEEDED"), json!("1")]
        ]
    );
    let unfinished = "SELECT partition_id FROM `p.ds.audit_latest` WHERE job = 'x' GROUP BY partition_id HAVING COUNTIF(status = 'SUCCEEDED') = 0";
    let (s, v, rows) = query(&env, unfinished, json!([])).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(rows, [[json!("20240102")]]);

    let (s, v, rows) = query(
        &env,
        &by_status.replace("'x'", "@job"),
        json!([string_param("job", "y")]),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(rows, [[json!("SUCCEEDED"), json!("1")]]);
    let (s, v, rows) = query(
        &env,
        &unfinished.replace("'x'", "@job"),
        json!([string_param("job", "x")]),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(rows, [[json!("20240102")]]);

    // Rows streamed after the view was created are read: the view is evaluated at query time.
    env.emu
        .insert_rows(
            P,
            DS,
            "audit",
            vec![
                row(audit_row(
                    "x",
                    "20240102",
                    "RUNNING",
                    3,
                    "2024-02-01 12:00:00+00",
                )),
                row(audit_row(
                    "x",
                    "20240102",
                    "SUCCEEDED",
                    3,
                    "2024-02-01 12:01:00+00",
                )),
            ],
        )
        .expect("rows inserted");
    let (s, v, rows) = query(&env, unfinished, json!([])).await;
    assert_eq!(s, 200, "{v}");
    assert!(rows.is_empty(), "{rows:?}");
    let (_, _, rows) = query(&env, by_status, json!([])).await;
    assert_eq!(rows, [[json!("SUCCEEDED"), json!("2")]]);

    // Inside a subquery, and a view over the view.
    let (s, v, rows) = query(
        &env,
        "SELECT COUNT(*) AS n FROM (SELECT partition_id FROM `p.ds.audit_latest` WHERE job = @job) AS s",
        json!([string_param("job", "x")]),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(rows, [[json!("2")]]);
    let (s, v) = create_view(
        &env,
        "succeeded",
        "SELECT job, partition_id FROM `p.ds.audit_latest` WHERE status = 'SUCCEEDED'",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v, rows) = query(
        &env,
        "SELECT job, COUNT(*) FROM p.ds.succeeded GROUP BY job ORDER BY job",
        json!([]),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(rows, [[json!("x"), json!("2")], [json!("y"), json!("1")]]);
    assert_eq!(
        v["totalBytesProcessed"].as_str().map(|s| s != "0"),
        Some(true),
        "reading a view reads its tables: {v}"
    );
}

#[tokio::test]
async fn writes_listing_and_copies_of_a_view_are_refused() {
    let env = Env::start().await;
    seeded_audit(&env).await;
    let (s, v) = create_view(&env, "audit_latest", LATEST_SQL).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = env
        .post(
            &format!("/datasets/{DS}/tables/audit_latest/insertAll"),
            json!({"rows": [{"json": {"job": "x"}}]}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["errors"][0]["reason"], "invalid");
    let (s, v) = env
        .get(&format!("/datasets/{DS}/tables/audit_latest/data"))
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["errors"][0]["reason"], "invalid");
    assert_eq!(v["error"]["message"], "Cannot list a table of type VIEW.");

    let job = env
        .run_query(
            "into_view",
            "SELECT 'x' AS job",
            Some("audit_latest"),
            "WRITE_APPEND",
        )
        .await;
    assert_eq!(error_reason(&job), "invalid", "{job}");
    let (s, v) = env
        .insert_job(
            json!({"jobReference": {"projectId": P, "jobId": "copy_view"},
            "configuration": {"copy": {
                "sourceTable": {"projectId": P, "datasetId": DS, "tableId": "audit_latest"},
                "destinationTable": {"projectId": P, "datasetId": DS, "tableId": "copied"}}}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let job = env.wait_done("copy_view").await;
    assert_eq!(error_reason(&job), "invalid", "{job}");
    let (s, v) = env
        .delete(&format!("/datasets/{DS}/tables/audit_latest$20240101"))
        .await;
    assert_eq!(s, 400, "a view has no partitions: {v}");

    let (s, v, _) = query(
        &env,
        "SELECT * FROM `p.ds.audit_latest$20240101`",
        json!([]),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let (_, _, rows) = query(&env, "SELECT COUNT(*) FROM `p.ds.audit_latest`", json!([])).await;
    assert_eq!(rows, [[json!("3")]], "nothing was written through the view");
}

#[tokio::test]
async fn a_view_whose_table_was_dropped_fails_at_query_time() {
    let env = Env::start().await;
    seeded_audit(&env).await;
    let (s, _) = create_view(&env, "audit_latest", LATEST_SQL).await;
    assert_eq!(s, 200);
    let (s, _) = env.delete(&format!("/datasets/{DS}/tables/audit")).await;
    assert_eq!(s, 204);
    let (s, v, _) = query(&env, "SELECT * FROM `p.ds.audit_latest`", json!([])).await;
    assert_eq!(s, 404, "{v}");
    assert_eq!(v["error"]["errors"][0]["reason"], "notFound");
}

#[tokio::test]
async fn views_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: Some(dir.path().to_path_buf()),
        ..Config::default()
    };
    {
        let env = Env::with(config.clone()).await;
        seeded_audit(&env).await;
        let (s, v) = create_view(&env, "audit_latest", LATEST_SQL).await;
        assert_eq!(s, 200, "{v}");
        env.emu.shutdown().await;
    }
    let emu = Emulator::start(config).await.unwrap();
    let env = Env {
        emu,
        http: reqwest::Client::new(),
    };
    let (s, v) = env
        .get(&format!("/datasets/{DS}/tables/audit_latest"))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["type"], "VIEW");
    assert_eq!(v["view"]["query"], LATEST_SQL);
    assert_eq!(v["schema"]["fields"].as_array().unwrap().len(), 12);
    let (s, v, rows) = query(
        &env,
        "SELECT partition_id FROM `p.ds.audit_latest` WHERE job = @job GROUP BY partition_id HAVING COUNTIF(status = 'SUCCEEDED') = 0",
        json!([string_param("job", "x")]),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(rows, [[json!("20240102")]]);
}
