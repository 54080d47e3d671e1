//! Load jobs from the GCS root and copy jobs between partitions.

use bq_emulator::Config;
use serde_json::{Value, json};

use crate::common::*;

fn load_job(job_id: &str, uris: &[&str], dest: &str, format: &str, write: &str) -> Value {
    json!({
        "jobReference": {"projectId": P, "jobId": job_id},
        "configuration": {"load": {
            "sourceUris": uris,
            "sourceFormat": format,
            "destinationTable": {"projectId": P, "datasetId": DS, "tableId": dest},
            "writeDisposition": write,
        }},
    })
}

async fn env_with_gcs() -> (Env, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("bucket/events/dt=2024-01-15");
    std::fs::create_dir_all(&part).unwrap();
    std::fs::write(part.join("a.json"), "{\"dt\":\"2024-01-15\",\"n\":1,\"s\":\"x\"}\n{\"dt\":\"2024-01-15\",\"n\":2,\"s\":\"y\"}\n").unwrap();
    std::fs::write(
        part.join("b.json"),
        "{\"dt\":\"2024-01-15\",\"n\":3,\"s\":\"z\"}\n",
    )
    .unwrap();
    std::fs::write(
        part.join("c.csv"),
        "dt,n,s\n2024-01-15,10,p\n2024-01-15,11,q\n",
    )
    .unwrap();
    let env = Env::with(Config {
        gcs_root: Some(dir.path().to_path_buf()),
        ..Config::default()
    })
    .await;
    (env, dir)
}

#[tokio::test]
async fn load_wildcard_json_into_a_partition() {
    let (env, _dir) = env_with_gcs().await;
    env.seeded_day_table("events").await;
    let (s, v) = env
        .insert_job(load_job(
            "l1",
            &["gs://bucket/events/dt=2024-01-15/*.json"],
            "events$20240115",
            "NEWLINE_DELIMITED_JSON",
            "WRITE_TRUNCATE",
        ))
        .await;
    assert_eq!(s, 200, "{v}");
    let job = env.wait_done("l1").await;
    assert!(job["status"].get("errorResult").is_none(), "{job}");
    assert_eq!(job["configuration"]["jobType"], "LOAD");
    assert_eq!(job["statistics"]["load"]["outputRows"], "3");
    assert_eq!(job["statistics"]["load"]["inputFiles"], "2");
    let mut got = ns(&env.rows("events$20240115"));
    got.sort();
    assert_eq!(
        got,
        [
            ("1".into(), "x".into()),
            ("2".into(), "y".into()),
            ("3".into(), "z".into())
        ]
    );
    assert_eq!(
        env.rows("events$20240114").len(),
        1,
        "other partitions untouched"
    );

    // Rows of another day into this partition fail and change nothing.
    let (_, _) = env
        .insert_job(load_job(
            "l2",
            &["gs://bucket/events/dt=2024-01-15/*.json"],
            "events$20240116",
            "NEWLINE_DELIMITED_JSON",
            "WRITE_TRUNCATE",
        ))
        .await;
    assert_eq!(error_reason(&env.wait_done("l2").await), "invalid");
    assert_eq!(env.rows("events$20240116").len(), 1);
}

#[tokio::test]
async fn load_csv_with_schema_creates_the_table() {
    let (env, _dir) = env_with_gcs().await;
    let mut job = load_job(
        "csv",
        &["gs://bucket/events/dt=2024-01-15/c.csv"],
        "fresh",
        "CSV",
        "WRITE_APPEND",
    );
    job["configuration"]["load"]["skipLeadingRows"] = json!(1);
    job["configuration"]["load"]["schema"] = day_table_spec()["schema"].clone();
    job["configuration"]["load"]["timePartitioning"] = json!({"type": "DAY", "field": "dt"});
    env.insert_job(job).await;
    let job = env.wait_done("csv").await;
    assert!(job["status"].get("errorResult").is_none(), "{job}");
    assert_eq!(job["statistics"]["load"]["outputRows"], "2");
    assert_eq!(env.emu.partition_ids(P, DS, "fresh").unwrap(), ["20240115"]);
    assert_eq!(
        ns(&env.rows("fresh")),
        [("10".into(), "p".into()), ("11".into(), "q".into())]
    );
}

#[tokio::test]
async fn load_of_a_missing_uri_is_not_found() {
    let (env, _dir) = env_with_gcs().await;
    env.seeded_day_table("events").await;
    env.insert_job(load_job(
        "nf",
        &["gs://bucket/events/dt=2099-01-01/*.json"],
        "events",
        "NEWLINE_DELIMITED_JSON",
        "WRITE_APPEND",
    ))
    .await;
    let job = env.wait_done("nf").await;
    assert_eq!(error_reason(&job), "notFound");
    assert!(
        job["status"]["errorResult"]["message"]
            .as_str()
            .unwrap()
            .contains("gs://bucket/events/dt=2099-01-01/*.json")
    );
}

#[tokio::test]
async fn copy_between_decorated_partitions() {
    let env = Env::start().await;
    env.seeded_day_table("src").await;
    env.create_table("dst", day_table_spec()).await;
    env.emu
        .insert_rows(
            P,
            DS,
            "dst",
            vec![
                row(json!({"dt": "2024-01-15", "n": 99, "s": "old"})),
                row(json!({"dt": "2024-01-16", "n": 98, "s": "keep"})),
            ],
        )
        .unwrap();
    let copy = |id: &str, src: &str, dst: &str| {
        json!({"jobReference": {"projectId": P, "jobId": id}, "configuration": {"copy": {
            "sourceTables": [{"projectId": P, "datasetId": DS, "tableId": src}],
            "destinationTable": {"projectId": P, "datasetId": DS, "tableId": dst},
            "writeDisposition": "WRITE_TRUNCATE"}}})
    };
    env.insert_job(copy("c1", "src$20240115", "dst$20240115"))
        .await;
    let job = env.wait_done("c1").await;
    assert!(job["status"].get("errorResult").is_none(), "{job}");
    assert_eq!(job["configuration"]["jobType"], "COPY");
    assert_eq!(job["statistics"]["copy"]["copiedRows"], "2");
    assert_eq!(
        ns(&env.rows("dst$20240115")),
        [("2".into(), "b".into()), ("3".into(), "c".into())]
    );
    assert_eq!(
        ns(&env.rows("dst$20240116")),
        [("98".into(), "keep".into())]
    );

    env.insert_job(copy("c2", "src$20240115", "dst$20240116"))
        .await;
    assert_eq!(error_reason(&env.wait_done("c2").await), "invalid");

    // A copy into a missing table creates it with the source's partitioning.
    env.insert_job(copy("c3", "src", "clone")).await;
    assert!(
        env.wait_done("c3").await["status"]
            .get("errorResult")
            .is_none()
    );
    let (_, t) = env.get(&format!("/datasets/{DS}/tables/clone")).await;
    assert_eq!(t["timePartitioning"], json!({"type": "DAY", "field": "dt"}));
    assert_eq!(t["numRows"], "4");
}

/// `ds.<name>(k INTEGER, s STRING)`, range-partitioned on k: [0, 100) step 10.
async fn ranged_table(env: &Env, name: &str, rows: &[(i64, &str)]) {
    env.create_table(
        name,
        json!({"schema": {"fields": [{"name": "k", "type": "INTEGER"}, {"name": "s", "type": "STRING"}]},
               "rangePartitioning": {"field": "k", "range": {"start": "0", "end": "100", "interval": "10"}}}),
    )
    .await;
    if !rows.is_empty() {
        env.emu
            .insert_rows(
                P,
                DS,
                name,
                rows.iter()
                    .map(|(k, s)| row(json!({"k": k, "s": s})))
                    .collect(),
            )
            .unwrap();
    }
}

/// (k, s) of a table or partition, sorted.
fn ks(env: &Env, table: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = env
        .rows(table)
        .iter()
        .map(|r| {
            let k = match &r["k"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k, r["s"].as_str().unwrap_or_default().to_string())
        })
        .collect();
    v.sort();
    v
}

fn pairs(v: &[(i64, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = v
        .iter()
        .map(|(k, s)| (k.to_string(), s.to_string()))
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn write_truncate_replaces_exactly_one_integer_range_partition() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("bucket/ranged");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(
        files.join("k40.json"),
        "{\"k\":41,\"s\":\"load\"}\n{\"k\":49,\"s\":\"load\"}\n",
    )
    .unwrap();
    std::fs::write(
        files.join("mixed.json"),
        "{\"k\":42,\"s\":\"in\"}\n{\"k\":50,\"s\":\"out\"}\n",
    )
    .unwrap();
    let env = Env::with(Config {
        gcs_root: Some(dir.path().to_path_buf()),
        ..Config::default()
    })
    .await;
    let before = [(5, "a"), (40, "old"), (45, "old"), (50, "b"), (120, "u")];
    ranged_table(&env, "r", &before).await;
    let untouched = |env: &Env| {
        assert_eq!(ks(env, "r$0"), pairs(&[(5, "a")]));
        assert_eq!(ks(env, "r$50"), pairs(&[(50, "b")]));
        assert_eq!(ks(env, "r$__UNPARTITIONED__"), pairs(&[(120, "u")]));
    };
    let ok = |job: &Value| assert!(job["status"].get("errorResult").is_none(), "{job}");

    // Query.
    ok(&env
        .run_query(
            "q1",
            "SELECT 43 AS k, 'query' AS s",
            Some("r$40"),
            "WRITE_TRUNCATE",
        )
        .await);
    assert_eq!(ks(&env, "r$40"), pairs(&[(43, "query")]));
    untouched(&env);
    let job = env
        .run_query(
            "q2",
            "SELECT 44 AS k, 'in' AS s UNION ALL SELECT 51 AS k, 'out' AS s",
            Some("r$40"),
            "WRITE_TRUNCATE",
        )
        .await;
    assert_eq!(
        error_reason(&job),
        "invalid",
        "a row outside $40 fails the job"
    );
    assert_eq!(
        ks(&env, "r$40"),
        pairs(&[(43, "query")]),
        "and changes nothing"
    );

    // Load.
    env.insert_job(load_job(
        "l1",
        &["gs://bucket/ranged/k40.json"],
        "r$40",
        "NEWLINE_DELIMITED_JSON",
        "WRITE_TRUNCATE",
    ))
    .await;
    ok(&env.wait_done("l1").await);
    assert_eq!(ks(&env, "r$40"), pairs(&[(41, "load"), (49, "load")]));
    untouched(&env);
    env.insert_job(load_job(
        "l2",
        &["gs://bucket/ranged/mixed.json"],
        "r$40",
        "NEWLINE_DELIMITED_JSON",
        "WRITE_TRUNCATE",
    ))
    .await;
    assert_eq!(error_reason(&env.wait_done("l2").await), "invalid");
    assert_eq!(ks(&env, "r$40"), pairs(&[(41, "load"), (49, "load")]));

    // Copy from the same partition of another table.
    ranged_table(&env, "src", &[(40, "copy"), (47, "copy"), (60, "other")]).await;
    let copy = |id: &str, src: &str, dst: &str| {
        json!({"jobReference": {"projectId": P, "jobId": id}, "configuration": {"copy": {
            "sourceTables": [{"projectId": P, "datasetId": DS, "tableId": src}],
            "destinationTable": {"projectId": P, "datasetId": DS, "tableId": dst},
            "writeDisposition": "WRITE_TRUNCATE"}}})
    };
    env.insert_job(copy("c1", "src$40", "r$40")).await;
    ok(&env.wait_done("c1").await);
    assert_eq!(ks(&env, "r$40"), pairs(&[(40, "copy"), (47, "copy")]));
    untouched(&env);
    env.insert_job(copy("c2", "src$60", "r$40")).await;
    assert_eq!(error_reason(&env.wait_done("c2").await), "invalid");
    assert_eq!(ks(&env, "r$40"), pairs(&[(40, "copy"), (47, "copy")]));

    // Negative starts and misaligned decorators.
    env.create_table(
        "neg",
        json!({"schema": {"fields": [{"name": "k", "type": "INTEGER"}, {"name": "s", "type": "STRING"}]},
               "rangePartitioning": {"field": "k", "range": {"start": "-20", "end": "20", "interval": "10"}}}),
    )
    .await;
    ok(&env
        .run_query(
            "n1",
            "SELECT -15 AS k, 'neg' AS s",
            Some("neg$-20"),
            "WRITE_TRUNCATE",
        )
        .await);
    assert_eq!(ks(&env, "neg$-20"), pairs(&[(-15, "neg")]));
    let job = env
        .run_query(
            "n2",
            "SELECT -5 AS k, 'x' AS s",
            Some("neg$-5"),
            "WRITE_TRUNCATE",
        )
        .await;
    assert_eq!(
        error_reason(&job),
        "invalid",
        "$-5 is not a partition start"
    );
}
