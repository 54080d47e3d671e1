//! Fault injection: each kind, through the library handle and the control API.

use std::time::{Duration, Instant};

use bq_emulator::JobMatcher;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn fail_next_answers_the_envelope_then_recovers() {
    let env = Env::start().await;
    env.emu
        .faults()
        .fail_next("tables.get", 2, 503, "backendError");
    env.create_table("t", json!({})).await;
    let path = format!("/datasets/{DS}/tables/t");
    for _ in 0..2 {
        let (s, v) = env.get(&path).await;
        assert_eq!(s, 503);
        assert_eq!(v["error"]["code"], 503);
        assert_eq!(v["error"]["status"], "UNAVAILABLE");
        assert_eq!(v["error"]["errors"][0]["reason"], "backendError");
        assert_eq!(v["error"]["errors"][0]["domain"], "global");
    }
    assert_eq!(env.get(&path).await.0, 200);
    let stats = env.emu.stats();
    assert_eq!(stats.requests["tables.get"], 3);
    assert_eq!(stats.faults_injected["fail"], 2);

    // Same through the control API, with "*".
    let (s, _) = env
        .control_post(
            "/faults/fail",
            json!({"method": "*", "count": 1, "status": 429, "reason": "rateLimitExceeded"}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, v) = env.get("/datasets/ds").await;
    assert_eq!(
        (s, v["error"]["errors"][0]["reason"].as_str()),
        (429, Some("rateLimitExceeded"))
    );
    assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(env.get("/datasets/ds").await.0, 200);
}

#[tokio::test]
async fn insert_after_create_leaves_the_job_behind() {
    let env = Env::start().await;
    env.emu.faults().fail_insert_after_create(1);
    let (s, v) = env
        .insert_job(query_job("uncertain", "SELECT 1 AS x", None, ""))
        .await;
    assert_eq!(s, 503);
    assert_eq!(v["error"]["errors"][0]["reason"], "backendError");
    let (s, v) = env
        .insert_job(query_job("uncertain", "SELECT 1 AS x", None, ""))
        .await;
    assert_eq!(s, 409, "the job exists: {v}");
    let job = env.wait_done("uncertain").await;
    assert!(job["status"].get("errorResult").is_none());
}

#[tokio::test]
async fn failing_jobs_by_prefix_and_next() {
    let env = Env::start().await;
    env.seeded_day_table("events").await;
    env.emu
        .faults()
        .fail_jobs(JobMatcher::IdPrefix("bf_".into()), "backendError", "boom");
    let job = env
        .run_query(
            "bf_1",
            "SELECT DATE '2024-01-15' AS dt, 9 AS n, 'z' AS s",
            Some("events$20240115"),
            "WRITE_TRUNCATE",
        )
        .await;
    assert_eq!(
        job["status"]["errorResult"],
        json!({"reason": "backendError", "message": "boom"})
    );
    assert_eq!(env.rows("events$20240115").len(), 2, "nothing written");
    let job = env.run_query("ok_1", "SELECT 1 AS x", None, "").await;
    assert!(job["status"].get("errorResult").is_none());

    let (s, _) = env
        .control_post(
            "/faults/job-error",
            json!({"next": 1, "reason": "invalidQuery", "message": "nope"}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        error_reason(&env.run_query("n1", "SELECT 1 AS x", None, "").await),
        "invalidQuery"
    );
    assert!(
        env.run_query("n2", "SELECT 1 AS x", None, "").await["status"]
            .get("errorResult")
            .is_none()
    );
    env.emu.faults().clear();
    assert!(
        env.run_query("bf_2", "SELECT 1 AS x", None, "").await["status"]
            .get("errorResult")
            .is_none()
    );
}

#[tokio::test]
async fn delayed_responses() {
    let env = Env::start().await;
    env.emu
        .faults()
        .delay("datasets.get", 1, Duration::from_millis(1500));
    let t0 = Instant::now();
    assert_eq!(env.get("/datasets/ds").await.0, 200);
    assert!(t0.elapsed() >= Duration::from_millis(1500));
    // Only the next request was delayed (a wide margin for a loaded machine).
    let t0 = Instant::now();
    env.get("/datasets/ds").await;
    assert!(t0.elapsed() < Duration::from_millis(1500));
    let (s, _) = env
        .control_post(
            "/faults/delay",
            json!({"method": "datasets.get", "delayMs": 200}),
        )
        .await;
    assert_eq!(s, 200);
    let t0 = Instant::now();
    env.get("/datasets/ds").await;
    assert!(t0.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn dropped_connections() {
    let env = Env::start().await;
    env.emu.faults().drop_next("jobs.insert", 1);
    let err = env
        .http
        .post(env.url("/jobs"))
        .json(&query_job("dropped", "SELECT 1 AS x", None, ""))
        .send()
        .await;
    assert!(err.is_err(), "connection closed without response: {err:?}");
    assert_eq!(
        env.get("/jobs/dropped").await.0,
        404,
        "a dropped request is not handled"
    );
    let (s, _) = env
        .insert_job(query_job("dropped", "SELECT 1 AS x", None, ""))
        .await;
    assert_eq!(s, 200);
    assert_eq!(env.emu.stats().faults_injected["drop"], 1);
    let (s, _) = env
        .control_post("/faults/drop", json!({"method": "datasets.get"}))
        .await;
    assert_eq!(s, 200);
    assert!(env.http.get(env.url("/datasets/ds")).send().await.is_err());
    assert_eq!(env.get("/datasets/ds").await.0, 200);
}

#[tokio::test]
async fn random_transient_failures_are_seeded() {
    async fn statuses(seed: u64) -> Vec<u16> {
        let env = Env::start().await;
        env.emu
            .faults()
            .transient_failure_rate_for(&["datasets.get"], 0.3, seed);
        let mut out = Vec::new();
        for _ in 0..100 {
            out.push(env.get("/datasets/ds").await.0);
        }
        // Other methods are unaffected.
        assert_eq!(env.get(&format!("/datasets/{DS}/tables")).await.0, 200);
        out
    }
    let a = statuses(7).await;
    let b = statuses(7).await;
    assert_eq!(a, b, "same seed, same failures");
    let failures = a.iter().filter(|s| **s != 200).count();
    assert!((15..=45).contains(&failures), "about 30% fail: {failures}");
    assert!(a.iter().all(|s| [200, 429, 503].contains(s)));

    let env = Env::start().await;
    let (s, _) = env
        .control_post("/faults/random", json!({"rate": 1.0, "seed": 1}))
        .await;
    assert_eq!(s, 200);
    assert_ne!(env.get("/datasets/ds").await.0, 200);
    env.control_post("/faults/clear", json!({})).await;
    assert_eq!(env.get("/datasets/ds").await.0, 200);
}

#[tokio::test]
async fn stats_reset_and_job_listing() {
    let env = Env::start().await;
    env.run_query("j1", "SELECT 1 AS x", None, "").await;
    let (_, v) = env.control_get("/stats").await;
    assert_eq!(v["jobsCreated"], 1);
    assert_eq!(v["jobsByState"]["DONE"], 1);
    assert_eq!(v["jobsSucceeded"], 1);
    let (_, v) = env.control_get("/jobs").await;
    assert_eq!(v["jobs"][0]["jobId"], "j1");
    assert_eq!(v["jobs"][0]["state"], "DONE");
    env.control_post("/reset", json!({})).await;
    let stats = env.emu.stats();
    assert_eq!(stats.jobs_created, 0);
    assert!(stats.jobs_by_state.is_empty());
    assert!(stats.requests.is_empty());
    let (_, v) = env.control_post("/config", json!({"jobDelayMs": 5})).await;
    assert_eq!(v["jobDelayMs"], 5);
}

#[tokio::test]
async fn dropped_or_late_response_after_the_job_was_created() {
    let env = Env::start().await;
    env.emu.faults().drop_after("jobs.insert", 1);
    let sent = env
        .http
        .post(env.url("/jobs"))
        .json(&query_job("lost", "SELECT 1 AS x", None, ""))
        .send()
        .await;
    assert!(sent.is_err(), "no response: {sent:?}");
    assert_eq!(
        env.wait_done("lost").await["status"]["state"],
        "DONE",
        "the job was created"
    );

    let (s, _) = env
        .control_post(
            "/faults/delay",
            json!({"method": "jobs.insert", "delayMs": 400, "afterHandling": true}),
        )
        .await;
    assert_eq!(s, 200);
    let short = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let sent = short
        .post(env.url("/jobs"))
        .json(&query_job("late", "SELECT 1 AS x", None, ""))
        .send()
        .await;
    assert!(sent.is_err(), "client timed out");
    assert_eq!(env.wait_done("late").await["status"]["state"], "DONE");
    let (s, _) = env
        .insert_job(query_job("late", "SELECT 1 AS x", None, ""))
        .await;
    assert_eq!(s, 409);
}
