//! Query jobs: partition semantics, lifecycle, results paging, cancellation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

const DAY15_NEW: &str = "SELECT DATE '2024-01-15' AS dt, 100 AS n, 'new' AS s";

#[tokio::test]
async fn truncate_one_partition_keeps_the_others() {
    let env = Env::start().await;
    env.seeded_day_table("events").await;
    let job = env
        .run_query("j1", DAY15_NEW, Some("events$20240115"), "WRITE_TRUNCATE")
        .await;
    assert!(job["status"].get("errorResult").is_none(), "{job}");
    assert_eq!(job["configuration"]["jobType"], "QUERY");
    assert_eq!(
        job["jobReference"],
        json!({"projectId": P, "jobId": "j1", "location": "US"})
    );
    assert_eq!(
        env.emu.partition_ids(P, DS, "events").unwrap(),
        ["20240114", "20240115", "20240116"]
    );
    assert_eq!(
        ns(&env.rows("events$20240115")),
        [("100".into(), "new".into())]
    );
    assert_eq!(ns(&env.rows("events$20240114")), [("1".into(), "a".into())]);
    assert_eq!(ns(&env.rows("events$20240116")), [("4".into(), "d".into())]);
    let stats = &job["statistics"];
    for k in ["creationTime", "startTime", "endTime"] {
        assert!(
            stats[k].as_str().unwrap().parse::<i64>().is_ok(),
            "{k}: {stats}"
        );
    }
    assert_eq!(stats["query"]["statementType"], "SELECT");
    assert_eq!(
        stats["query"]["totalBytesBilled"], "0",
        "no table referenced"
    );
}

#[tokio::test]
async fn append_and_empty_on_a_partition() {
    let env = Env::start().await;
    env.seeded_day_table("events").await;
    let job = env
        .run_query("a1", DAY15_NEW, Some("events$20240115"), "WRITE_APPEND")
        .await;
    assert!(job["status"].get("errorResult").is_none(), "{job}");
    assert_eq!(env.rows("events$20240115").len(), 3);
    let job = env
        .run_query("e1", DAY15_NEW, Some("events$20240115"), "WRITE_EMPTY")
        .await;
    assert_eq!(error_reason(&job), "duplicate", "{job}");
    assert_eq!(env.rows("events$20240115").len(), 3);
    let job = env
        .run_query(
            "e2",
            "SELECT DATE '2024-01-20' AS dt, 7 AS n, 'z' AS s",
            Some("events$20240120"),
            "WRITE_EMPTY",
        )
        .await;
    assert!(job["status"].get("errorResult").is_none(), "{job}");
    assert_eq!(ns(&env.rows("events$20240120")), [("7".into(), "z".into())]);
}

#[tokio::test]
async fn rows_outside_the_partition_fail_and_change_nothing() {
    let env = Env::start().await;
    env.seeded_day_table("events").await;
    let sql = "SELECT DATE '2024-01-15' AS dt, 1 AS n, 'x' AS s UNION ALL SELECT DATE '2024-01-16', 2, 'y'";
    let job = env
        .run_query("spill", sql, Some("events$20240115"), "WRITE_TRUNCATE")
        .await;
    assert_eq!(error_reason(&job), "invalid");
    assert_eq!(job["status"]["errors"][0]["reason"], "invalid");
    let msg = job["status"]["errorResult"]["message"].as_str().unwrap();
    assert!(
        msg.contains(
            "Some rows belong to different partitions rather than destination partition 20240115"
        ),
        "{msg}"
    );
    assert_eq!(
        ns(&env.rows("events$20240115")),
        [("2".into(), "b".into()), ("3".into(), "c".into())]
    );
}

#[tokio::test]
async fn undecorated_truncate_replaces_whole_table() {
    let env = Env::start().await;
    env.seeded_day_table("events").await;
    let job = env
        .run_query("all", DAY15_NEW, Some("events"), "WRITE_TRUNCATE")
        .await;
    assert!(job["status"].get("errorResult").is_none(), "{job}");
    assert_eq!(
        env.emu.partition_ids(P, DS, "events").unwrap(),
        ["20240115"]
    );
    assert_eq!(env.rows("events").len(), 1);
}

#[tokio::test]
async fn decorator_errors() {
    let env = Env::start().await;
    env.seeded_day_table("events").await;
    env.create_table(
        "flat",
        json!({"schema": {"fields": [{"name": "n", "type": "INTEGER"}]}}),
    )
    .await;
    let job = env
        .run_query(
            "np",
            "SELECT 1 AS n",
            Some("flat$20240115"),
            "WRITE_TRUNCATE",
        )
        .await;
    assert_eq!(error_reason(&job), "invalid");
    let msg = job["status"]["errorResult"]["message"].as_str().unwrap();
    assert!(
        msg.contains("Cannot read partition information from a table that is not partitioned"),
        "{msg}"
    );

    for (i, bad) in ["2024011", "202401150", "20241315", "abc", "2024-01-15"]
        .iter()
        .enumerate()
    {
        let job = env
            .run_query(
                &format!("bad{i}"),
                DAY15_NEW,
                Some(&format!("events${bad}")),
                "WRITE_TRUNCATE",
            )
            .await;
        assert_eq!(error_reason(&job), "invalid", "decorator {bad}: {job}");
    }
    assert_eq!(env.rows("events").len(), 4);

    // A job's timePartitioning must match the table's.
    let mut body = query_job("tp", DAY15_NEW, Some("events$20240115"), "WRITE_TRUNCATE");
    body["configuration"]["query"]["timePartitioning"] = json!({"type": "MONTH", "field": "dt"});
    env.insert_job(body).await;
    let job = env.wait_done("tp").await;
    let msg = job["status"]["errorResult"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("Incompatible table partitioning specification"),
        "{msg}"
    );
    let mut body = query_job("tp2", DAY15_NEW, Some("events$20240115"), "WRITE_TRUNCATE");
    body["configuration"]["query"]["timePartitioning"] = json!({"type": "DAY", "field": "dt"});
    env.insert_job(body).await;
    assert!(
        env.wait_done("tp2").await["status"]
            .get("errorResult")
            .is_none()
    );
}

#[tokio::test]
async fn hour_month_year_range_and_null_decorators() {
    let env = Env::start().await;
    let ts_schema =
        json!({"fields": [{"name": "ts", "type": "TIMESTAMP"}, {"name": "n", "type": "INTEGER"}]});
    env.create_table(
        "hourly",
        json!({"schema": ts_schema, "timePartitioning": {"type": "HOUR", "field": "ts"}}),
    )
    .await;
    let date_schema =
        json!({"fields": [{"name": "dt", "type": "DATE"}, {"name": "n", "type": "INTEGER"}]});
    env.create_table(
        "monthly",
        json!({"schema": date_schema, "timePartitioning": {"type": "MONTH", "field": "dt"}}),
    )
    .await;
    env.create_table(
        "yearly",
        json!({"schema": date_schema, "timePartitioning": {"type": "YEAR", "field": "dt"}}),
    )
    .await;
    env.create_table(
        "ranged",
        json!({"schema": {"fields": [{"name": "k", "type": "INTEGER"}]},
               "rangePartitioning": {"field": "k", "range": {"start": "0", "end": "100", "interval": "10"}}}),
    )
    .await;

    let ok = |job: &Value| assert!(job["status"].get("errorResult").is_none(), "{job}");
    ok(&env
        .run_query(
            "h",
            "SELECT TIMESTAMP '2024-01-15 10:30:00+00' AS ts, 1 AS n",
            Some("hourly$2024011510"),
            "WRITE_TRUNCATE",
        )
        .await);
    assert_eq!(
        env.emu.partition_ids(P, DS, "hourly").unwrap(),
        ["2024011510"]
    );
    let job = env
        .run_query(
            "h2",
            "SELECT TIMESTAMP '2024-01-15 11:30:00+00' AS ts, 1 AS n",
            Some("hourly$2024011510"),
            "WRITE_TRUNCATE",
        )
        .await;
    assert_eq!(error_reason(&job), "invalid");

    ok(&env
        .run_query(
            "m",
            "SELECT DATE '2024-01-31' AS dt, 1 AS n",
            Some("monthly$202401"),
            "WRITE_TRUNCATE",
        )
        .await);
    assert_eq!(env.emu.partition_ids(P, DS, "monthly").unwrap(), ["202401"]);
    assert_eq!(
        error_reason(
            &env.run_query(
                "m2",
                "SELECT DATE '2024-01-31' AS dt, 1 AS n",
                Some("monthly$20240131"),
                "WRITE_TRUNCATE"
            )
            .await
        ),
        "invalid"
    );

    ok(&env
        .run_query(
            "y",
            "SELECT DATE '2024-06-01' AS dt, 1 AS n",
            Some("yearly$2024"),
            "WRITE_TRUNCATE",
        )
        .await);
    assert_eq!(env.emu.partition_ids(P, DS, "yearly").unwrap(), ["2024"]);

    ok(&env
        .run_query("r", "SELECT 45 AS k", Some("ranged$40"), "WRITE_TRUNCATE")
        .await);
    assert_eq!(env.emu.partition_ids(P, DS, "ranged").unwrap(), ["40"]);
    assert_eq!(
        error_reason(
            &env.run_query("r2", "SELECT 45 AS k", Some("ranged$45"), "WRITE_TRUNCATE")
                .await
        ),
        "invalid"
    );
    ok(&env
        .run_query(
            "r3",
            "SELECT 500 AS k",
            Some("ranged$__UNPARTITIONED__"),
            "WRITE_TRUNCATE",
        )
        .await);
    ok(&env
        .run_query(
            "r4",
            "SELECT CAST(NULL AS INT64) AS k",
            Some("ranged$__NULL__"),
            "WRITE_TRUNCATE",
        )
        .await);
    assert_eq!(
        env.emu.partition_ids(P, DS, "ranged").unwrap(),
        ["40", "__NULL__", "__UNPARTITIONED__"]
    );
}

#[tokio::test]
async fn duplicate_unknown_and_malformed_jobs() {
    let env = Env::start().await;
    let (s, _) = env
        .insert_job(query_job("dup", "SELECT 1 AS x", None, ""))
        .await;
    assert_eq!(s, 200);
    let (s, v) = env
        .insert_job(query_job("dup", "SELECT 1 AS x", None, ""))
        .await;
    assert_eq!(s, 409);
    assert_eq!(v["error"]["errors"][0]["reason"], "duplicate");
    assert_eq!(v["error"]["message"], "Already Exists: Job p:US.dup");
    assert_eq!(v["error"]["status"], "ALREADY_EXISTS");

    let (s, v) = env.get("/jobs/nope").await;
    assert_eq!(s, 404);
    assert_eq!(v["error"]["errors"][0]["reason"], "notFound");
    let (s, _) = env.get("/jobs/dup?location=EU").await;
    assert_eq!(s, 404, "a different explicit location is a 404");
    let (s, _) = env.get("/jobs/dup?location=US").await;
    assert_eq!(s, 200);
    let (s, _) = env.get("/queries/nope").await;
    assert_eq!(s, 404);

    let (s, v) = env
        .insert_job(json!({"jobReference": {"jobId": "noconf"}}))
        .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["errors"][0]["reason"], "invalid");
    let (s, _) = env
        .insert_job(query_job("bad id!", "SELECT 1", None, ""))
        .await;
    assert_eq!(s, 400);

    // jobs.insert without a jobId generates one.
    let (s, v) = env
        .insert_job(
            json!({"configuration": {"query": {"query": "SELECT 1 AS x", "useLegacySql": false}}}),
        )
        .await;
    assert_eq!(s, 200);
    assert!(!v["jobReference"]["jobId"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn failing_sql_ends_done_with_the_sql_reason() {
    let env = Env::start().await;
    let (s, _) = env
        .insert_job(query_job("q", "SELECT * FROM ds.missing_table", None, ""))
        .await;
    assert_eq!(s, 200, "BigQuery validates asynchronously");
    let job = env.wait_done("q").await;
    assert!(!error_reason(&job).is_empty(), "{job}");
    let (s, v) = env.get("/queries/q").await;
    assert!(s >= 400, "getQueryResults of a failed job is an error: {v}");
    // Legacy SQL (the REST default) is refused with a hint.
    let (_, _) = env.insert_job(json!({"jobReference": {"jobId": "legacy"}, "configuration": {"query": {"query": "SELECT 1"}}})).await;
    let job = env.wait_done("legacy").await;
    assert_eq!(error_reason(&job), "invalidQuery");
}

#[tokio::test]
async fn lifecycle_with_delay_and_labels() {
    let env = Env::start().await;
    env.emu.set_job_delay(Duration::from_millis(300));
    let mut body = query_job("slow", "SELECT 1 AS x", None, "");
    body["configuration"]["labels"] = json!({"run": "r1"});
    body["configuration"]["query"]["priority"] = json!("BATCH");
    body["jobReference"]["location"] = json!("EU");
    let (s, v) = env.insert_job(body).await;
    assert_eq!(s, 200);
    assert_ne!(v["status"]["state"], "DONE");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, v) = env.get("/jobs/slow").await;
    assert_eq!(v["status"]["state"], "RUNNING");
    assert!(v["statistics"]["startTime"].is_string());
    assert_eq!(v["configuration"]["labels"], json!({"run": "r1"}));
    assert_eq!(v["jobReference"]["location"], "EU");
    assert_eq!(env.emu.stats().jobs_by_state.get("RUNNING"), Some(&1));
    let job = env.wait_done("slow").await;
    let start: i64 = job["statistics"]["startTime"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let end: i64 = job["statistics"]["endTime"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(end - start >= 250, "delay spent RUNNING: {start}..{end}");
    assert_eq!(env.emu.stats().jobs_by_state.get("DONE"), Some(&1));
}

#[tokio::test]
async fn cancel_stops_the_job_and_writes_nothing() {
    let env = Env::start().await;
    env.seeded_day_table("events").await;
    env.emu.set_job_delay(Duration::from_millis(2000));
    env.insert_job(query_job(
        "c1",
        DAY15_NEW,
        Some("events$20240115"),
        "WRITE_TRUNCATE",
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (s, v) = env.post("/jobs/c1/cancel", json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(v["kind"], "bigquery#jobCancelResponse");
    let t0 = Instant::now();
    let job = env.wait_done("c1").await;
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "cancel interrupts the delay"
    );
    assert_eq!(error_reason(&job), "stopped");
    assert_eq!(env.rows("events$20240115").len(), 2);
    assert_eq!(env.emu.stats().jobs_cancelled, 1);
}

#[tokio::test]
async fn get_query_results_long_poll_and_paging() {
    let env = Env::start().await;
    env.emu.set_job_delay(Duration::from_millis(600));
    let sql =
        "SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5";
    env.insert_job(query_job("pg", sql, None, "")).await;
    let t0 = Instant::now();
    let (s, v) = env.get("/queries/pg?timeoutMs=100").await;
    assert_eq!(s, 200);
    assert_eq!(v["jobComplete"], false);
    assert!(v.get("rows").is_none());
    assert!(t0.elapsed() >= Duration::from_millis(90));
    let (s, v) = env.get("/queries/pg?timeoutMs=5000&maxResults=2").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["jobComplete"], true);
    assert_eq!(v["totalRows"], "5");
    assert_eq!(v["schema"]["fields"][0]["name"], "n");
    let mut seen: Vec<String> = Vec::new();
    let mut page = v;
    loop {
        for r in page["rows"].as_array().unwrap() {
            seen.push(r["f"][0]["v"].as_str().unwrap().to_string());
        }
        let Some(tok) = page["pageToken"].as_str().map(str::to_string) else {
            break;
        };
        page = env
            .get(&format!("/queries/pg?maxResults=2&pageToken={tok}"))
            .await
            .1;
    }
    seen.sort();
    assert_eq!(seen, ["1", "2", "3", "4", "5"]);
    let (_, v) = env.get("/queries/pg?startIndex=4&maxResults=10").await;
    assert_eq!(v["rows"].as_array().unwrap().len(), 1);
    assert!(v.get("pageToken").is_none());

    // Anonymous results are also readable via tabledata.list of the job's destinationTable.
    let (_, job) = env.get("/jobs/pg").await;
    let dest = &job["configuration"]["query"]["destinationTable"];
    let (s, v) = env
        .get(&format!(
            "/datasets/{}/tables/{}/data",
            dest["datasetId"].as_str().unwrap(),
            dest["tableId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["totalRows"], "5");
}

#[tokio::test]
async fn jobs_query_sync_and_timeout() {
    let env = Env::start().await;
    let (s, v) = env
        .post(
            "/queries",
            json!({"query": "SELECT @d AS dt, 'x' AS s", "useLegacySql": false, "parameterMode": "NAMED",
                   "queryParameters": [{"name": "d", "parameterType": {"type": "DATE"}, "parameterValue": {"value": "2024-01-15"}}]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["kind"], "bigquery#queryResponse");
    assert_eq!(v["jobComplete"], true);
    assert_eq!(v["rows"][0]["f"][0]["v"], "2024-01-15");
    assert_eq!(v["schema"]["fields"][0]["type"], "DATE");
    let job_id = v["jobReference"]["jobId"].as_str().unwrap().to_string();
    assert_eq!(env.get(&format!("/jobs/{job_id}")).await.0, 200);

    env.emu.set_job_delay(Duration::from_millis(500));
    let (s, v) = env
        .post(
            "/queries",
            json!({"query": "SELECT 1 AS x", "useLegacySql": false, "timeoutMs": 50}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["jobComplete"], false);
    let job_id = v["jobReference"]["jobId"].as_str().unwrap();
    let (_, v) = env.get(&format!("/queries/{job_id}?timeoutMs=5000")).await;
    assert_eq!(v["jobComplete"], true);
    assert_eq!(v["rows"][0]["f"][0]["v"], "1");
}

#[tokio::test]
async fn dry_run_and_maximum_bytes_billed() {
    let env = Env::start().await;
    env.seeded_day_table("events").await;
    let mut body = query_job("dry", "SELECT n FROM ds.events", None, "");
    body["configuration"]["dryRun"] = json!(true);
    let (s, v) = env.insert_job(body).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"]["state"], "DONE");
    assert!(
        v["statistics"]["totalBytesProcessed"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert_eq!(env.get("/jobs/dry").await.0, 404, "dry runs are not stored");

    let mut body = query_job("cap", "SELECT n FROM ds.events", None, "");
    body["configuration"]["query"]["maximumBytesBilled"] = json!("1000");
    env.insert_job(body).await;
    let job = env.wait_done("cap").await;
    assert_eq!(error_reason(&job), "bytesBilledLimitExceeded", "{job}");

    let job = env
        .run_query("billed", "SELECT n FROM ds.events", None, "")
        .await;
    assert_eq!(
        job["statistics"]["query"]["totalBytesBilled"],
        (10 * 1024 * 1024).to_string(),
        "10 MiB minimum per table"
    );
}

#[tokio::test]
async fn concurrency_violations_are_counted() {
    let env = Env::start().await;
    env.seeded_day_table("events").await;
    env.emu.set_job_delay(Duration::from_millis(300));
    env.insert_job(query_job(
        "c15",
        DAY15_NEW,
        Some("events$20240115"),
        "WRITE_TRUNCATE",
    ))
    .await;
    env.insert_job(query_job(
        "c16",
        "SELECT DATE '2024-01-16' AS dt, 1 AS n, 'q' AS s",
        Some("events$20240116"),
        "WRITE_TRUNCATE",
    ))
    .await;
    env.wait_done("c15").await;
    env.wait_done("c16").await;
    assert_eq!(
        env.emu.stats().concurrency_violations,
        0,
        "different partitions may run together"
    );
    env.insert_job(query_job(
        "d1",
        DAY15_NEW,
        Some("events$20240115"),
        "WRITE_TRUNCATE",
    ))
    .await;
    env.insert_job(query_job(
        "d2",
        DAY15_NEW,
        Some("events$20240115"),
        "WRITE_TRUNCATE",
    ))
    .await;
    env.wait_done("d1").await;
    env.wait_done("d2").await;
    assert_eq!(env.emu.stats().concurrency_violations, 1);
    let (_, v) = env.control_get("/stats").await;
    assert_eq!(v["concurrencyViolations"], 1);
    assert!(v["requests"]["jobs.insert"].as_u64().unwrap() >= 4);
}

#[tokio::test]
async fn concurrent_reader_never_sees_a_mixed_or_empty_partition() {
    let env = Env::start().await;
    env.seeded_day_table("events").await;
    let sets = [
        "SELECT DATE '2024-01-15' AS dt, 1 AS n, 'A' AS s UNION ALL SELECT DATE '2024-01-15', 2, 'A' UNION ALL SELECT DATE '2024-01-15', 3, 'A'",
        "SELECT DATE '2024-01-15' AS dt, 1 AS n, 'B' AS s UNION ALL SELECT DATE '2024-01-15', 2, 'B'",
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let url = env.url(&format!("/datasets/{DS}/tables/events$20240115/data"));
    let http = env.http.clone();
    let flag = Arc::clone(&stop);
    let reader = tokio::spawn(async move {
        let mut reads = 0;
        while !flag.load(Ordering::Relaxed) {
            let v: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
            let rows = v["rows"].as_array().cloned().unwrap_or_default();
            let tags: Vec<&str> = rows
                .iter()
                .map(|r| r["f"][2]["v"].as_str().unwrap())
                .collect();
            let ok = (tags.len() == 2 && tags.iter().all(|t| *t == "b" || *t == "c"))
                || (tags.len() == 3 && tags.iter().all(|t| *t == "A"))
                || (tags.len() == 2 && tags.iter().all(|t| *t == "B"));
            assert!(ok, "inconsistent partition read: {tags:?}");
            reads += 1;
        }
        reads
    });
    for i in 0..30 {
        let job = env
            .run_query(
                &format!("t{i}"),
                sets[i % 2],
                Some("events$20240115"),
                "WRITE_TRUNCATE",
            )
            .await;
        assert!(job["status"].get("errorResult").is_none(), "{job}");
    }
    stop.store(true, Ordering::Relaxed);
    let reads = reader.await.unwrap();
    assert!(reads > 5, "reader ran ({reads} reads)");
    assert_eq!(env.rows("events$20240114").len(), 1);
}
