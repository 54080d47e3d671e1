//! Job locations: a job runs where its datasets are, and one outside the US/EU multi-regions is
//! reached only by calls that name its location (BigQuery answers 404 otherwise).

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

const TOKYO: &str = "asia-northeast1";

/// `tokyo.events` (day-partitioned, one row) in asia-northeast1, beside the US dataset `ds`.
fn tokyo_dataset(env: &Env) {
    env.emu.create_dataset_in(P, "tokyo", TOKYO);
    env.emu
        .create_table(P, "tokyo", "events", day_table_spec())
        .unwrap();
    env.emu
        .insert_rows(
            P,
            "tokyo",
            "events",
            vec![row(json!({"dt": "2024-01-15", "n": 1, "s": "a"}))],
        )
        .unwrap();
}

fn tokyo_query(job_id: &str, location: Option<&str>, sql: &str) -> Value {
    let mut reference = json!({"projectId": P, "jobId": job_id});
    if let Some(l) = location {
        reference["location"] = json!(l);
    }
    json!({"jobReference": reference, "configuration": {"query": {
        "query": sql,
        "useLegacySql": false,
        "destinationTable": {"projectId": P, "datasetId": "tokyo", "tableId": "copy$20240115"},
        "writeDisposition": "WRITE_TRUNCATE",
        "createDisposition": "CREATE_IF_NEEDED",
        "timePartitioning": {"type": "DAY", "field": "dt"},
    }}})
}

/// Polls jobs.get with `location` until the job is DONE.
async fn wait_done_in(env: &Env, job_id: &str, location: &str) -> Value {
    for _ in 0..2000 {
        let (s, v) = env
            .get(&format!("/jobs/{job_id}?location={location}"))
            .await;
        assert_eq!(s, 200, "jobs.get: {v}");
        if v["status"]["state"] == "DONE" {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("job {job_id} never finished");
}

async fn status(env: &Env, method: reqwest::Method, path: &str) -> u16 {
    let resp = env
        .http
        .request(method, env.url(path))
        .send()
        .await
        .unwrap();
    resp.status().as_u16()
}

#[tokio::test]
async fn a_regional_job_is_reached_only_with_its_location() {
    let env = Env::start().await;
    tokyo_dataset(&env);
    env.emu.set_job_delay(Duration::from_millis(300));
    let sql = "SELECT dt, n, s FROM tokyo.events";
    let (s, v) = env.insert_job(tokyo_query("j", None, sql)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["jobReference"]["location"], TOKYO,
        "placed with its datasets"
    );

    use reqwest::Method;
    assert_eq!(status(&env, Method::GET, "/jobs/j").await, 404);
    assert_eq!(status(&env, Method::GET, "/jobs/j?location=US").await, 404);
    assert_eq!(
        status(&env, Method::GET, "/queries/j?timeoutMs=0").await,
        404
    );
    assert_eq!(status(&env, Method::POST, "/jobs/j/cancel").await, 404);
    let (s, v) = env.get("/jobs/j?location=asia-northeast1").await;
    assert_eq!((s, &v["status"]["state"]), (200, &json!("RUNNING")), "{v}");
    let (s, v) = env
        .get("/queries/j?location=ASIA-NORTHEAST1&timeoutMs=5000")
        .await;
    assert_eq!((s, &v["jobComplete"]), (200, &json!(true)), "{v}");
    assert_eq!(v["totalRows"], "1");
    assert!(
        env.emu.read_rows(P, DS, "copy").is_err(),
        "written in tokyo only"
    );
    assert_eq!(env.emu.read_rows(P, "tokyo", "copy").unwrap().len(), 1);

    let counted = env.emu.stats().job_calls_without_location;
    let expected = [
        ("jobs.cancel", 1),
        ("jobs.get", 1),
        ("jobs.getQueryResults", 1),
        ("jobs.insert", 1),
    ];
    let expected = expected
        .map(|(m, n)| (m.to_string(), n))
        .into_iter()
        .collect();
    assert_eq!(counted, expected);
}

#[tokio::test]
async fn a_job_naming_another_location_than_its_dataset_fails_not_found() {
    let env = Env::start().await;
    tokyo_dataset(&env);
    let sql = "SELECT dt, n, s FROM tokyo.events";
    let (s, v) = env.insert_job(tokyo_query("us_job", Some("US"), sql)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["jobReference"]["location"], "US");
    let job = env.wait_done("us_job").await;
    assert_eq!(error_reason(&job), "notFound");
    assert_eq!(
        job["status"]["errorResult"]["message"],
        "Not found: Dataset p:tokyo was not found in location US"
    );
    assert!(
        env.emu.read_rows(P, "tokyo", "copy").is_err(),
        "nothing written"
    );

    // Reading a US dataset from a Tokyo job fails the same way, even when the destination is in Tokyo.
    let sql = "SELECT DATE '2024-01-15' AS dt, n, s FROM ds.other";
    env.create_table("other", day_table_spec()).await;
    let (s, _) = env.insert_job(tokyo_query("mixed", None, sql)).await;
    assert_eq!(s, 200);
    let job = wait_done_in(&env, "mixed", TOKYO).await;
    assert_eq!(
        job["status"]["errorResult"]["message"],
        "Not found: Dataset p:ds was not found in location asia-northeast1"
    );
}

#[tokio::test]
async fn jobs_query_answers_in_the_dataset_location_in_one_call() {
    let env = Env::start().await;
    tokyo_dataset(&env);
    for location in [None, Some(TOKYO)] {
        let mut body = json!({"query": "SELECT n FROM tokyo.events", "useLegacySql": false});
        if let Some(l) = location {
            body["location"] = json!(l);
        }
        let (s, v) = env.post("/queries", body).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["jobComplete"], true);
        assert_eq!(v["jobReference"]["location"], TOKYO);
        assert_eq!(v["rows"][0]["f"][0]["v"], "1");
    }
    let counted = env.emu.stats().job_calls_without_location;
    assert_eq!(counted.get("jobs.query"), Some(&1));
}

#[tokio::test]
async fn multi_region_jobs_need_no_location() {
    let env = Env::start().await;
    env.emu.create_dataset_in(P, "eu_data", "EU");
    env.emu
        .create_table(P, "eu_data", "t", day_table_spec())
        .unwrap();
    let (s, v) = env
        .insert_job(query_job("eu_job", "SELECT n FROM eu_data.t", None, ""))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["jobReference"]["location"], "EU");
    let job = env.wait_done("eu_job").await;
    assert_eq!(error_reason(&job), "", "{job}");
    assert_eq!(
        status(&env, reqwest::Method::GET, "/jobs/eu_job?location=US").await,
        404
    );
}
