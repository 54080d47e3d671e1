//! A backfill whose datasets live in a single region (asia-northeast1): BigQuery finds such jobs
//! only when every job call names the location, so the run needs `--location`.

use bq_emulator::demo;
use serde_json::json;

use crate::harness::*;

const TOKYO: &str = "asia-northeast1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_in_tokyo_names_the_location_on_every_job_call() {
    let env = Env::demo_in(TOKYO, "2024-01-01", "2024-01-04").await;
    let d = env.descriptor("2024-01-01", "2024-01-04", json!({}));

    let r = env.run(&d, &["--location", TOKYO]);

    r.expect_code(0);
    assert_eq!(r.finished()["status"], "succeeded");
    assert_eq!(
        r.partitions("partition_succeeded"),
        ["20240101", "20240102", "20240103"]
    );
    assert_eq!(
        env.daily(),
        demo::expected_daily(date("2024-01-01"), date("2024-01-04"))
    );
    assert_eq!(
        env.latest_status().values().collect::<Vec<_>>(),
        ["SUCCEEDED"; 3]
    );
    let stats = env.emu.stats();
    assert!(env.stat("jobs.insert") >= 3 && env.stat("jobs.getQueryResults") >= 3);
    assert_eq!(
        stats.job_calls_without_location,
        Default::default(),
        "every jobs.* call named the location"
    );
    for job in env.emu.jobs() {
        assert_eq!(job["location"], TOKYO, "{job}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_in_tokyo_without_location_fails_with_the_hint_and_resumes_with_it() {
    let env = Env::demo_in(TOKYO, "2024-01-01", "2024-01-03").await;
    let d = env.descriptor("2024-01-01", "2024-01-03", json!({}));

    let r = env.run(&d, &[]);

    r.expect_code(78);
    let error = &r.finished()["error"];
    assert_eq!(r.finished()["status"], "error");
    assert!(s(&error["message"]).contains("Not found: Job"), "{error}");
    assert!(s(&error["hint"]).contains("--location"), "{error}");

    // The first job was submitted (BigQuery placed it with its datasets) but could not be
    // followed; the run that names the location takes it over and finishes.
    let r = env.run(&d, &["--location", TOKYO]);
    r.expect_code(0);
    assert_eq!(
        env.daily(),
        demo::expected_daily(date("2024-01-01"), date("2024-01-03"))
    );
    assert_eq!(env.emu.stats().concurrency_violations, 0);
}
