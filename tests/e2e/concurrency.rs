//! `concurrency`: partitions in several slots at once, with every rule of a
//! single slot kept, and the partition-write limit across slots.

use std::time::{Duration, Instant};

use bq_emulator::demo;
use serde_json::{Value, json};

use crate::harness::*;

/// The backfill's partition jobs (not audit queries or lease claims).
fn partition_jobs(env: &Env) -> Vec<Value> {
    env.emu
        .jobs()
        .into_iter()
        .filter(|j| s(&j["jobId"]).starts_with("bqb_events_daily_2024"))
        .collect()
}

/// The most partition jobs that were running at the same moment.
fn max_overlap(jobs: &[Value]) -> usize {
    let ms = |v: &Value| v.as_i64().unwrap_or_else(|| panic!("a time in ms: {v}"));
    let mut edges: Vec<(i64, i32)> = jobs
        .iter()
        .flat_map(|j| [(ms(&j["startTime"]), 1), (ms(&j["endTime"]), -1)])
        .collect();
    // At the same instant, an end comes before a start.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_slots_run_four_partitions_at_once_and_the_table_is_exact() {
    let env = Env::demo("2024-02-01", "2024-02-17").await;
    env.slow_partition_jobs(Duration::from_millis(700));
    let d = env.descriptor("2024-02-01", "2024-02-17", json!({}));
    let r = env.run(&d, &["run", "--concurrency", "4"]);
    r.expect_code(0);
    assert_eq!(r.finished()["succeeded"], 16);
    assert_eq!(
        env.daily(),
        demo::expected_daily(date("2024-02-01"), date("2024-02-17"))
    );
    let latest = env.latest_status();
    assert_eq!(latest.len(), 16);
    assert!(latest.values().all(|s| s == "SUCCEEDED"), "{latest:?}");
    let jobs = partition_jobs(&env);
    assert_eq!(jobs.len(), 16, "one job per partition");
    assert_eq!(max_overlap(&jobs), 4, "four slots, never more");
    assert_eq!(env.emu.stats().concurrency_violations, 0);
    // The plan order is kept as far as slots allow: the first four started first.
    let started = r.partitions("partition_started");
    let mut first_four = started[..4].to_vec();
    first_four.sort();
    assert_eq!(first_four, ["20240201", "20240202", "20240203", "20240204"]);

    // The descriptor's `concurrency` does the same; a rerun skips everything.
    let d8 = env.descriptor("2024-02-01", "2024-02-17", json!({"concurrency": 8}));
    let r = env.run(&d8, &[]);
    r.expect_code(0);
    assert_eq!(r.of("partition_skipped").len(), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_cancels_the_job_in_every_slot_within_3_seconds() {
    let env = Env::demo("2024-02-01", "2024-02-07").await;
    env.slow_partition_jobs(Duration::from_secs(30));
    let d = env.descriptor("2024-02-01", "2024-02-07", json!({"concurrency": 3}));
    let mut child = env.spawn(&d, &[]);
    // Wait until three jobs are running.
    let deadline = Instant::now() + Duration::from_secs(20);
    while partition_jobs(&env)
        .iter()
        .filter(|j| j["state"] == "RUNNING")
        .count()
        < 3
    {
        assert!(Instant::now() < deadline, "three slots started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let t0 = Instant::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert_eq!(status.code(), Some(143));
    let r = wait(child);
    assert_eq!(r.finished()["status"], "cancelled");
    assert_eq!(r.finished()["cancelled"], 3);
    let jobs = partition_jobs(&env);
    assert_eq!(jobs.len(), 3, "no fourth job after the signal");
    assert!(
        jobs.iter().all(|j| j["errorResult"]["reason"] == "stopped"),
        "{jobs:?}"
    );
    let latest = env.latest_status();
    assert_eq!(
        latest.values().filter(|s| *s == "CANCELLED").count(),
        3,
        "{latest:?}"
    );
    assert!(
        env.rows(demo::ANALYTICS_DATASET, demo::DAILY_TABLE)
            .is_empty()
    );
    // The next run replaces them and finishes.
    env.normal_speed();
    env.run(&d, &[]).expect_code(0);
    assert_eq!(
        env.daily(),
        demo::expected_daily(date("2024-02-01"), date("2024-02-07"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ten_second_window_starts_more_partition_jobs_than_the_limit() {
    let env = Env::demo("2024-02-01", "2024-02-04").await;
    let d = env.descriptor(
        "2024-02-01",
        "2024-02-04",
        json!({"concurrency": 3, "throttle": {"pause_seconds": 0, "pause_ratio": 0, "partition_writes_per_10s": 2}}),
    );
    let r = env.run(&d, &[]);
    r.expect_code(0);
    let mut created: Vec<i64> = partition_jobs(&env)
        .iter()
        .map(|j| j["creationTime"].as_i64().unwrap())
        .collect();
    created.sort();
    assert_eq!(created.len(), 3);
    assert!(
        created[1] - created[0] < 5_000,
        "two start at once: {created:?}"
    );
    assert!(
        created[2] - created[0] >= 9_900,
        "the third waits for the window: {created:?}"
    );
}
