//! Surviving faults: transient API errors, failed jobs, kills, signals,
//! overlapping runners and the time budget.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use bq_emulator::{JobMatcher, demo};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::harness::*;

fn jobs_of(env: &Env) -> Vec<Value> {
    env.emu.jobs()
}

/// Partition jobs (not lease claims) the emulator has seen.
fn partition_jobs(env: &Env) -> Vec<Value> {
    jobs_of(env)
        .into_iter()
        .filter(|j| s(&j["jobId"]).starts_with("bqb_") && !s(&j["jobId"]).contains("_lease_"))
        .collect()
}

/// Read events from a running child until `pred` matches one; returns the lines read.
fn read_until(reader: &mut impl BufRead, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut seen = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            return seen;
        }
        let v: Value = serde_json::from_str(line.trim_end()).unwrap();
        let hit = pred(&v);
        seen.push(v);
        if hit {
            return seen;
        }
    }
}

/// A running binary, stopped reading at its first `partition_started`.
struct Started {
    child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
    /// The BigQuery job ID of that first partition.
    job_id: String,
}

/// Spawn a run of `d` and wait until its first partition job is submitted.
fn spawn_until_started(env: &Env, d: &Value) -> Started {
    spawn_until_started_with(env, d, &[])
}

/// [`spawn_until_started`] with command-line `args`.
fn spawn_until_started_with(env: &Env, d: &Value, args: &[&str]) -> Started {
    let mut child = env.spawn(d, args);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let seen = read_until(&mut out, |e| e["event"] == "partition_started");
    let job_id = s(&seen.last().expect("a partition started")["bq_job_id"]);
    Started { child, out, job_id }
}

/// The destination holds exactly the expected days, every partition's latest
/// audit row is SUCCEEDED, and no partition ever had two jobs at once.
fn assert_converged(env: &Env, start: &str, end: &str) {
    assert_eq!(env.daily(), demo::expected_daily(date(start), date(end)));
    let latest = env.latest_status();
    assert!(latest.values().all(|s| s == "SUCCEEDED"), "{latest:?}");
    assert_eq!(
        env.emu.stats().concurrency_violations,
        0,
        "no partition ever had two jobs running at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_api_failures_are_retried_with_events_and_no_duplicate_jobs() {
    let env = Env::demo("2024-01-01", "2024-01-05").await;
    let f = env.emu.faults();
    f.fail_next("jobs.insert", 2, 503, "backendError");
    f.fail_next("tabledata.insertAll", 1, 500, "internalError");
    f.fail_next("jobs.get", 1, 429, "rateLimitExceeded");
    f.drop_next("jobs.getQueryResults", 1);
    let d = env.descriptor("2024-01-01", "2024-01-05", json!({}));
    let r = env.run(&d, &[]);
    r.expect_code(0);
    let retries = r.of("retry_scheduled");
    assert!(
        retries.len() >= 3,
        "each retry is announced: {:?}",
        r.stdout
    );
    assert!(
        retries
            .iter()
            .any(|e| e["operation"] == "jobs.insert" && s(&e["reason"]).contains("backendError"))
    );
    assert!(
        retries
            .iter()
            .all(|e| e["delay_seconds"].as_f64().unwrap() >= 0.0 && e["next_at"].is_string())
    );
    assert_eq!(
        env.daily(),
        demo::expected_daily(date("2024-01-01"), date("2024-01-05"))
    );
    assert_eq!(
        partition_jobs(&env).len(),
        4,
        "one job per partition despite the retries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_whose_outcome_was_unknown_attaches_to_the_job_it_created() {
    let env = Env::demo("2024-01-01", "2024-01-03").await;
    env.emu.faults().fail_insert_after_create(1);
    let d = env.descriptor("2024-01-01", "2024-01-03", json!({}));
    let r = env.run(&d, &[]);
    r.expect_code(0);
    assert_eq!(
        partition_jobs(&env).len(),
        2,
        "the retried insert met 409 and attached"
    );
    assert_eq!(
        env.daily(),
        demo::expected_daily(date("2024-01-01"), date("2024-01-03"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_ending_with_a_transient_reason_is_retried_under_a_new_job_id() {
    let env = Env::demo("2024-01-01", "2024-01-04").await;
    env.emu.faults().fail_jobs(
        JobMatcher::FirstContaining("20240102".into()),
        "backendError",
        "injected transient failure",
    );
    let d = env.descriptor("2024-01-01", "2024-01-04", json!({}));
    let r = env.run(&d, &[]);
    r.expect_code(0);
    let failed = r.of("partition_failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(
        (
            failed[0]["retryable"].as_bool(),
            failed[0]["will_retry"].as_bool()
        ),
        (Some(true), Some(true))
    );
    let started: Vec<&Value> = r
        .of("partition_started")
        .into_iter()
        .filter(|e| e["partition"] == "20240102")
        .collect();
    assert_eq!(started.len(), 2);
    assert_ne!(started[0]["bq_job_id"], started[1]["bq_job_id"]);
    assert_eq!(
        started[1]["attempt"].as_u64(),
        Some(started[0]["attempt"].as_u64().unwrap() + 1)
    );
    assert_eq!(env.latest_status()["20240102"], "SUCCEEDED");
    assert_eq!(
        env.daily(),
        demo::expected_daily(date("2024-01-01"), date("2024-01-04"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_jobs_back_off_without_using_up_the_attempts() {
    let env = Env::demo("2024-01-01", "2024-01-04").await;
    // Four jobs in a row for 2024-01-02 meet the per-table rate limit, one
    // more fails with an ordinary transient error: with max_attempts 2 the
    // partition still succeeds, because only the backendError counts.
    for _ in 0..4 {
        env.emu.faults().fail_jobs(
            JobMatcher::FirstContaining("20240102".into()),
            "jobRateLimitExceeded",
            "Exceeded rate limits: too many table update operations for this table",
        );
    }
    env.emu.faults().fail_jobs(
        JobMatcher::FirstContaining("20240102".into()),
        "backendError",
        "injected transient failure",
    );
    let d = env.descriptor(
        "2024-01-01",
        "2024-01-04",
        json!({"retry": {"max_attempts": 2}}),
    );
    let r = env.run(&d, &[]);
    r.expect_code(0);
    let reasons: Vec<(String, bool)> = r
        .of("partition_failed")
        .iter()
        .map(|e| (s(&e["reason"]), e["will_retry"].as_bool().unwrap()))
        .collect();
    let limited = ("jobRateLimitExceeded".to_string(), true);
    assert_eq!(
        reasons,
        [
            limited.clone(),
            limited.clone(),
            limited.clone(),
            limited,
            ("backendError".to_string(), true)
        ]
    );
    let retries = r.of("retry_scheduled");
    assert_eq!(retries.len(), 5);
    assert!(
        s(&retries[0]["reason"]).contains("rate limit"),
        "{retries:?}"
    );
    let attempts: Vec<u64> = r
        .of("partition_started")
        .iter()
        .filter(|e| e["partition"] == "20240102")
        .map(|e| e["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2, 3, 4, 5, 6], "each try is a new job ID");
    let audit: Vec<String> = env
        .audit()
        .into_iter()
        .filter(|row| row["partition_id"] == "20240102" && row["status"] == "FAILED")
        .map(|row| s(&row["error_reason"]))
        .collect();
    assert_eq!(audit.len(), 5, "every failed job is in the audit log");
    assert_eq!(env.latest_status()["20240102"], "SUCCEEDED");
    assert_eq!(
        env.daily(),
        demo::expected_daily(date("2024-01-01"), date("2024-01-04"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_that_outlasts_the_retry_deadline_fails_the_partition() {
    let env = Env::demo("2024-01-01", "2024-01-03").await;
    env.emu.faults().fail_jobs(
        JobMatcher::IdContains("20240101".into()),
        "rateLimitExceeded",
        "Exceeded rate limits: too many concurrent queries",
    );
    let d = env.descriptor(
        "2024-01-01",
        "2024-01-03",
        json!({"on_failure": "continue", "retry": {"deadline_seconds": 0.3}}),
    );
    let began = Instant::now();
    let r = env.run(&d, &[]);
    r.expect_code(1);
    let failed = r.of("partition_failed");
    assert!(failed.len() >= 2, "retried at least once: {failed:?}");
    assert!(failed.iter().all(|e| e["reason"] == "rateLimitExceeded"));
    let (last, rest) = failed.split_last().unwrap();
    assert!(rest.iter().all(|e| e["will_retry"] == true));
    assert_eq!(last["will_retry"], false, "the deadline ends the retries");
    assert!(began.elapsed() < Duration::from_secs(15));
    assert_eq!(env.latest_status()["20240101"], "FAILED");
    assert_eq!(env.latest_status()["20240102"], "SUCCEEDED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_error_fails_at_once_with_bigquerys_message() {
    let env = Env::demo("2024-01-01", "2024-01-02").await;
    let d = env.descriptor(
        "2024-01-01",
        "2024-01-02",
        json!({"source": {"query": "SELECT DATE(event_ts) AS day FROM `demo-project.raw.no_such_table` WHERE event_ts >= @partition_start"}}),
    );
    let r = env.run(&d, &[]);
    r.expect_code(1);
    let failed = r.of("partition_failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["reason"], "notFound");
    assert!(s(&failed[0]["message"]).contains("no_such_table"));
    assert_eq!(failed[0]["will_retry"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_outside_the_partition_fail_the_job_and_leave_the_partition_alone() {
    let env = Env::demo("2024-01-01", "2024-01-03").await;
    let d = env.descriptor("2024-01-01", "2024-01-03", json!({}));
    env.run(&d, &[]).expect_code(0);
    let before = env.daily();
    // A query that ignores the partition window writes other days' rows too.
    let bad = env.descriptor(
        "2024-01-01",
        "2024-01-03",
        json!({"job": "bad_window", "source": {"query": "SELECT DATE(event_ts) AS day, user_id, event_type, COUNT(*) AS events \
            FROM `demo-project.raw.events` WHERE event_ts < @partition_end GROUP BY day, user_id, event_type"}}),
    );
    let r = env.run(&bad, &["--start", "2024-01-02", "--end", "2024-01-03"]);
    r.expect_code(1);
    assert_eq!(r.of("partition_failed")[0]["reason"], "invalid");
    assert!(s(&r.of("partition_failed")[0]["message"]).contains("different partitions"));
    assert_eq!(env.daily(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_killed_mid_flight_is_adopted_not_resubmitted() {
    let env = Env::demo("2024-01-01", "2024-01-03").await;
    env.slow_partition_jobs(Duration::from_millis(1500));
    let d = env.descriptor("2024-01-01", "2024-01-03", json!({}));
    let Started {
        mut child, job_id, ..
    } = spawn_until_started(&env, &d);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(env.latest_status()["20240101"], "RUNNING");

    env.normal_speed();
    let inserts_before = partition_jobs(&env).len();
    let r = env.run(&d, &["--force-unlock"]);
    r.expect_code(0);
    let first = r.of("partition_started")[0];
    assert_eq!(first["partition"], "20240101");
    assert_eq!(first["adopted"], true);
    assert_eq!(s(&first["bq_job_id"]), job_id);
    assert_eq!(
        partition_jobs(&env).len(),
        inserts_before + 1,
        "only 20240102 was submitted"
    );
    assert_eq!(
        env.daily(),
        demo::expected_daily(date("2024-01-01"), date("2024-01-03"))
    );
}

async fn signal_cancels(sig: i32, code: i32) {
    let env = Env::demo("2024-01-01", "2024-01-03").await;
    signal_cancels_in(&env, &[], sig, code);
}

/// A run over the demo's 2024-01-01..03 in `env`, with `args`, gets `sig` while its first job
/// runs: the job is cancelled, CANCELLED recorded, and the run exits `code` within 3 s.
fn signal_cancels_in(env: &Env, args: &[&str], sig: i32, code: i32) {
    env.slow_partition_jobs(Duration::from_secs(30));
    let d = env.descriptor("2024-01-01", "2024-01-03", json!({}));
    let Started {
        mut child,
        mut out,
        job_id,
    } = spawn_until_started_with(env, &d, args);
    let t0 = Instant::now();
    unsafe { libc::kill(child.id() as i32, sig) };
    let rest = read_until(&mut out, |e| e["event"] == "run_finished");
    let status = child.wait().unwrap();
    let took = t0.elapsed();
    assert_eq!(status.code(), Some(code));
    assert!(took < Duration::from_secs(3), "stopped in {took:?}");
    let fin = rest.last().unwrap();
    assert_eq!(fin["event"], "run_finished");
    assert_eq!(fin["status"], "cancelled");
    assert_eq!(fin["exit_code"], code);
    assert!(
        rest.iter()
            .any(|e| e["event"] == "partition_cancelled" && e["confirmed"] == true),
        "{rest:?}"
    );
    let job = jobs_of(env)
        .into_iter()
        .find(|j| s(&j["jobId"]) == job_id)
        .unwrap();
    assert_eq!(job["state"], "DONE");
    assert_eq!(
        job["errorResult"]["reason"], "stopped",
        "the BigQuery job was cancelled: {job}"
    );
    assert_eq!(env.latest_status()["20240101"], "CANCELLED");
    assert!(
        env.rows(demo::ANALYTICS_DATASET, demo::DAILY_TABLE)
            .is_empty(),
        "nothing written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_cancels_the_job_records_it_and_exits_143_within_3_seconds() {
    signal_cancels(libc::SIGTERM, 143).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_cancels_the_job_records_it_and_exits_130_within_3_seconds() {
    signal_cancels(libc::SIGINT, 130).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_in_tokyo_cancels_the_job_through_its_location() {
    let tokyo = "asia-northeast1";
    let env = Env::demo_in(tokyo, "2024-01-01", "2024-01-03").await;
    signal_cancels_in(&env, &["--location", tokyo], libc::SIGTERM, 143);
    assert!(env.stat("jobs.cancel") >= 1);
    assert_eq!(
        env.emu.stats().job_calls_without_location,
        Default::default(),
        "jobs.cancel and the jobs.get that confirms it named the location"
    );
}

/// Start a run of `d` whose first job runs 30 s, send SIGTERM while
/// BigQuery refuses the cancel (exit 143); the job keeps running. Returns
/// its ID and the events read after it started.
fn sigterm_while_cancel_is_refused(env: &Env, d: &Value) -> (String, Vec<Value>) {
    env.slow_partition_jobs(Duration::from_secs(30));
    env.emu
        .faults()
        .fail_next("jobs.cancel", 1, 403, "accessDenied");
    let Started {
        mut child,
        mut out,
        job_id,
    } = spawn_until_started(env, d);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let rest = read_until(&mut out, |e| e["event"] == "run_finished");
    assert_eq!(child.wait().unwrap().code(), Some(143));
    (job_id, rest)
}

/// A signal whose cancel BigQuery does not confirm leaves the partition
/// RUNNING, not CANCELLED: the job may still be writing. The next run — with
/// a changed query — stops that job before it writes the partition itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_cancel_stays_running_and_the_next_run_never_writes_beside_the_job() {
    let env = Env::demo("2024-01-01", "2024-01-03").await;
    let d = env.descriptor("2024-01-01", "2024-01-03", json!({}));
    let (job_id, rest) = sigterm_while_cancel_is_refused(&env, &d);
    let cancelled = rest
        .iter()
        .find(|e| e["event"] == "partition_cancelled")
        .expect("partition_cancelled");
    assert_eq!(cancelled["confirmed"], false, "{cancelled}");
    assert_eq!(
        env.latest_status()["20240101"],
        "RUNNING",
        "not CANCELLED while the job may still write"
    );
    let job = |id: &str| {
        jobs_of(&env)
            .into_iter()
            .find(|j| s(&j["jobId"]) == id)
            .unwrap()
    };
    assert_eq!(job(&job_id)["state"], "RUNNING");

    env.normal_speed();
    let edited = format!("{}\n-- v2", demo::DAILY_QUERY);
    let d2 = env.descriptor(
        "2024-01-01",
        "2024-01-03",
        json!({"source": {"query": edited}}),
    );
    let r = env.run(&d2, &[]);
    r.expect_code(0);
    assert_eq!(job(&job_id)["errorResult"]["reason"], "stopped");
    assert_eq!(
        env.emu.stats().concurrency_violations,
        0,
        "the new attempt never ran beside the old job"
    );
    assert_converged(&env, "2024-01-01", "2024-01-03");
}

/// The same, with the same query: the next run adopts the still-running job,
/// which then ends cancelled (the earlier cancel taking effect late). That is
/// no failure: the run records CANCELLED and writes the partition itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adopted_job_that_ends_cancelled_is_replaced_not_failed() {
    let env = Env::demo("2024-01-01", "2024-01-03").await;
    let d = env.descriptor("2024-01-01", "2024-01-03", json!({}));
    let (job_id, _) = sigterm_while_cancel_is_refused(&env, &d);
    assert_eq!(env.latest_status()["20240101"], "RUNNING");

    env.normal_speed();
    let Started {
        mut child,
        mut out,
        job_id: adopted,
    } = spawn_until_started(&env, &d);
    assert_eq!(adopted, job_id, "the running job was adopted");
    env.cancel_job(&job_id).await;
    let events = read_until(&mut out, |_| false);
    assert_eq!(child.wait().unwrap().code(), Some(0), "{events:?}");
    assert!(
        events.iter().all(|e| e["event"] != "partition_failed"),
        "{events:?}"
    );
    let next = events
        .iter()
        .find(|e| e["event"] == "partition_started")
        .unwrap();
    assert_eq!(
        (next["partition"].as_str(), next["attempt"].as_u64()),
        (Some("20240101"), Some(2)),
        "{next}"
    );
    assert!(
        env.audit()
            .iter()
            .any(|row| s(&row["bq_job_id"]) == job_id && row["status"] == "CANCELLED")
    );
    assert_converged(&env, "2024-01-01", "2024-01-03");
}

/// The audit table (and the lease table beside it, else the killed run's
/// live lease refuses the next run) is dropped while a killed run's job still
/// runs: the next run meets that job's ID (409), waits for it to end instead
/// of writing the partition beside it, then takes a new attempt number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_audit_table_never_overlaps_a_job_still_running() {
    let env = Env::demo("2024-01-01", "2024-01-03").await;
    env.slow_partition_jobs(Duration::from_secs(2));
    let d = env.descriptor("2024-01-01", "2024-01-03", json!({}));
    let mut child = spawn_until_started(&env, &d).child;
    child.kill().unwrap();
    child.wait().unwrap();
    env.drop_table(demo::OPS_DATASET, AUDIT).await;
    env.drop_table(demo::OPS_DATASET, &format!("{AUDIT}_lease"))
        .await;
    env.normal_speed();

    let r = env.run(&d, &[]);
    r.expect_code(0);
    let first = r.of("partition_started")[0];
    assert_eq!(
        (s(&first["partition"]).as_str(), first["attempt"].as_u64()),
        ("20240101", Some(2))
    );
    assert_eq!(env.emu.stats().concurrency_violations, 0);
    assert_eq!(
        env.daily(),
        demo::expected_daily(date("2024-01-01"), date("2024-01-03"))
    );
}

/// After the audit table and the destination are recreated, a run that
/// records RUNNING, meets an old job's ID and dies before recording why must
/// not let the next run adopt that old job: it wrote the partition before the
/// destination was emptied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_job_under_a_recorded_id_is_never_adopted() {
    let env = Env::demo("2024-01-01", "2024-01-03").await;
    let d = env.descriptor("2024-01-01", "2024-01-03", json!({}));
    env.run(&d, &[]).expect_code(0);
    env.drop_table(demo::OPS_DATASET, AUDIT).await;
    env.recreate_table(demo::ANALYTICS_DATASET, demo::DAILY_TABLE)
        .await;
    // The insert of attempt 1 meets the old job (409); looking it up fails.
    env.emu
        .faults()
        .fail_next("jobs.get", 1, 403, "accessDenied");
    env.run(&d, &[]).expect_code(77);
    assert_eq!(env.latest_status()["20240101"], "RUNNING");

    let r = env.run(&d, &[]);
    r.expect_code(0);
    assert!(
        r.of("partition_started")
            .iter()
            .all(|e| e["adopted"] == false),
        "{:?}",
        r.of("partition_started")
    );
    assert_eq!(
        env.daily(),
        demo::expected_daily(date("2024-01-01"), date("2024-01-03")),
        "both partitions were written again"
    );
}

/// A signal while a BigQuery call hangs (here the very first, tables.get)
/// still ends the run within seconds, with run_finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_during_a_hanging_api_call_still_stops_the_run_promptly() {
    let env = Env::demo("2024-01-01", "2024-01-03").await;
    env.emu
        .faults()
        .delay("tables.get", 1, Duration::from_secs(30));
    let d = env.descriptor("2024-01-01", "2024-01-03", json!({}));
    let mut child = env.spawn(&d, &[]);
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("starting") {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0);
    }
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let events = read_until(&mut out, |e| e["event"] == "run_finished");
    let status = child.wait().unwrap();
    let took = t0.elapsed();
    assert_eq!(status.code(), Some(143));
    // The bound proves the 30 s call was abandoned; the 3 s promise itself is
    // checked by the signal tests above.
    assert!(took < Duration::from_secs(10), "stopped in {took:?}");
    let fin = events.last().unwrap();
    assert_eq!(fin["event"], "run_finished");
    assert_eq!(fin["status"], "cancelled");
    assert_eq!(fin["pending"], 2);
    assert_eq!(env.stat("jobs.insert"), 0);
}

/// A second signal while the first one's cleanup is stuck (jobs.cancel hangs)
/// exits at once, skipping the cleanup. The audit log still says RUNNING; the
/// job is then cancelled behind its back (the hung cancel landing late, or an
/// operator), so the next run records it CANCELLED and runs a new attempt —
/// no FAILED partition, no exit 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once_and_the_next_run_replaces_the_cancelled_job() {
    let env = Env::demo("2024-01-01", "2024-01-03").await;
    env.slow_partition_jobs(Duration::from_secs(30));
    env.emu
        .faults()
        .delay("jobs.cancel", 1, Duration::from_secs(20));
    let d = env.descriptor("2024-01-01", "2024-01-03", json!({}));
    let Started {
        mut child,
        mut out,
        job_id,
    } = spawn_until_started(&env, &d);
    let mut err = BufReader::new(child.stderr.take().unwrap());
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    // Send the second signal only once the first was handled: two pending
    // SIGTERMs would merge into one.
    let mut log = String::new();
    loop {
        let mut line = String::new();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "stderr closed: {log}"
        );
        log.push_str(&line);
        if line.contains("signal received") {
            break;
        }
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    std::io::Read::read_to_string(&mut err, &mut log).unwrap();
    let rest = read_until(&mut out, |_| false);
    assert_eq!(status.code(), Some(143), "{log}");
    assert!(log.contains("second signal"), "{log}");
    assert!(
        rest.iter()
            .all(|e| e["event"] != "run_finished" && e["event"] != "partition_cancelled"),
        "the cleanup was skipped: {rest:?}"
    );
    assert_eq!(
        env.latest_status()["20240101"],
        "RUNNING",
        "nothing was recorded after the second signal"
    );

    env.normal_speed();
    env.cancel_job(&job_id).await;
    // The lease was not released either: the operator knows the run is dead.
    let r = env.run(&d, &["--force-unlock"]);
    r.expect_code(0);
    let first = &r.of("partition_started")[0];
    assert_eq!(first["partition"], "20240101");
    assert_eq!(first["attempt"], 2, "{first}");
    assert_ne!(s(&first["bq_job_id"]), job_id);
    assert!(r.of("partition_failed").is_empty());
    let cancelled: Vec<_> = env
        .audit()
        .into_iter()
        .filter(|row| row["status"] == "CANCELLED")
        .collect();
    assert_eq!(cancelled.len(), 1, "{cancelled:?}");
    assert_eq!(s(&cancelled[0]["bq_job_id"]), job_id);
    assert_converged(&env, "2024-01-01", "2024-01-03");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_on_one_job_one_refuses_and_the_table_is_right() {
    let env = Env::demo("2024-01-01", "2024-01-11").await;
    env.emu.set_job_delay(Duration::from_millis(50));
    let d = env.descriptor("2024-01-01", "2024-01-11", json!({}));
    let a = env.spawn(&d, &[]);
    let b = env.spawn(&d, &[]);
    let (ra, rb) = (wait(a), wait(b));
    let mut codes = [ra.code, rb.code];
    codes.sort();
    assert_eq!(codes, [0, 73], "a: {}\nb: {}", ra.stderr, rb.stderr);
    let loser = if ra.code == 73 { &ra } else { &rb };
    assert_eq!(loser.finished()["status"], "locked");
    assert!(
        loser.of("partition_started").is_empty(),
        "the refused runner wrote nothing"
    );
    assert_eq!(env.emu.stats().concurrency_violations, 0);
    assert_eq!(
        env.daily(),
        demo::expected_daily(date("2024-01-01"), date("2024-01-11"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_taken_over_and_a_live_one_needs_force_unlock() {
    let env = Env::demo("2024-01-01", "2024-01-03").await;
    env.slow_partition_jobs(Duration::from_secs(3));
    let d = env.descriptor(
        "2024-01-01",
        "2024-01-03",
        json!({"lease": {"ttl_seconds": 2}}),
    );
    let mut child = spawn_until_started(&env, &d).child;
    child.kill().unwrap();
    child.wait().unwrap();
    env.normal_speed();
    // The zombie's lease is still live for up to 2 s: refused.
    let r = env.run(&d, &[]);
    assert!(r.code == 73 || r.code == 0, "{}", r.stderr);
    if r.code == 73 {
        std::thread::sleep(Duration::from_millis(2200));
        env.run(&d, &[]).expect_code(0);
    }
    assert_eq!(
        env.daily(),
        demo::expected_daily(date("2024-01-01"), date("2024-01-03"))
    );
}

/// A run that claims the lease (its claim job is created) but dies before its
/// LEASE_HELD row lands must not lock the job for good: its claim expires
/// like a lease, and --force-unlock passes it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_lease_row_never_landed_expires_like_a_lease() {
    let env = Env::demo("2024-01-01", "2024-01-05").await;
    // Long enough that "refused while fresh" holds on a loaded machine.
    let ttl = json!({"lease": {"ttl_seconds": 5}});
    let d1 = env.descriptor("2024-01-01", "2024-01-03", ttl.clone());
    let d2 = env.descriptor("2024-01-03", "2024-01-05", ttl);
    let claims = || {
        jobs_of(&env)
            .into_iter()
            .filter(|j| s(&j["jobId"]).contains("_lease_"))
            .count()
    };
    // The LEASE_HELD row is the run's first insertAll: refuse it for good.
    let wedge = |d: &Value| {
        env.emu
            .faults()
            .fail_next("tabledata.insertAll", 1, 403, "accessDenied");
        env.run(d, &[]).expect_code(77);
    };

    wedge(&d1);
    assert_eq!(claims(), 1, "the claim job exists");
    // Its claimant may still be about to write the row: refused, with when.
    let r = env.run(&d1, &[]);
    r.expect_code(73);
    assert!(r.stderr.contains("holds the lease"), "{}", r.stderr);
    // The operator knows it is dead.
    let r = env.run(&d1, &["--force-unlock"]);
    r.expect_code(0);
    assert_eq!(r.finished()["succeeded"], 2);

    wedge(&d2);
    std::thread::sleep(Duration::from_millis(5200));
    let r = env.run(&d2, &[]);
    r.expect_code(0);
    assert_eq!(r.finished()["succeeded"], 2);
    assert!(r.stderr.contains("never recorded it"), "{}", r.stderr);
    assert_eq!(
        env.daily(),
        demo::expected_daily(date("2024-01-01"), date("2024-01-05"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_time_budget_stops_cleanly_and_the_next_run_finishes() {
    let env = Env::demo("2024-01-01", "2024-01-21").await;
    env.slow_partition_jobs(Duration::from_millis(150));
    let d = env.descriptor("2024-01-01", "2024-01-21", json!({}));
    let r = env.run(&d, &["--max-runtime", "1"]);
    r.expect_code(75);
    let fin = r.finished();
    assert_eq!(fin["status"], "incomplete");
    assert!(fin["pending"].as_u64().unwrap() > 0);
    assert_eq!(fin["failed"], 0);
    let done = fin["succeeded"].as_u64().unwrap();
    assert!(done >= 1);
    assert!(
        env.latest_status().values().all(|s| s == "SUCCEEDED"),
        "no partition left RUNNING"
    );

    env.normal_speed();
    let r = env.run(&d, &[]);
    r.expect_code(0);
    assert_eq!(r.finished()["skipped"].as_u64(), Some(done));
    assert_eq!(
        env.daily(),
        demo::expected_daily(date("2024-01-01"), date("2024-01-21"))
    );
}

/// The chaos test: SIGKILL at 50+ random moments over repeated runs against
/// one emulator that also fails 20% of requests transiently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_random_kills_and_transient_failures_still_converge_exactly() {
    chaos(1).await;
}

/// The same with four partitions at a time: every kill leaves up to four
/// jobs in flight for the next run to adopt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_with_four_slots_still_converges_exactly() {
    chaos(4).await;
}

async fn chaos(concurrency: u32) {
    let env = Env::demo("2024-03-01", "2024-04-01").await;
    env.emu.set_job_delay(Duration::from_millis(20));
    env.emu.faults().transient_failure_rate(0.2, 7);
    let d = env.descriptor(
        "2024-03-01",
        "2024-04-01",
        json!({"concurrency": concurrency, "retry": {"max_attempts": 10, "initial_backoff_seconds": 0.005, "max_backoff_seconds": 0.05, "deadline_seconds": 30}}),
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut kills = 0;
    let mut finished_early = 0;
    while kills < 50 {
        let mut child = env.spawn(&d, &["--force-unlock"]);
        let wait_ms = rng.random_range(30..600);
        std::thread::sleep(Duration::from_millis(wait_ms));
        if child.try_wait().unwrap().is_some() {
            finished_early += 1;
            continue;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
    }
    // Then let it finish (faults still on).
    let mut last = None;
    let mut tries = Vec::new();
    for _ in 0..5 {
        let r = env.run(&d, &["--force-unlock"]);
        if r.code == 0 {
            last = Some(r);
            break;
        }
        tries.push(format!("exit {}:\n{}", r.code, r.stderr));
    }
    let r = last.unwrap_or_else(|| {
        panic!(
            "a final run succeeds; the tries:\n{}",
            tries.join("\n---\n")
        )
    });
    assert_eq!(r.finished()["status"], "succeeded");
    env.emu.faults().clear();
    assert_eq!(
        env.daily(),
        demo::expected_daily(date("2024-03-01"), date("2024-04-01"))
    );
    let latest = env.latest_status();
    assert_eq!(latest.len(), 31);
    assert!(latest.values().all(|s| s == "SUCCEEDED"), "{latest:?}");
    assert_eq!(
        env.emu.stats().concurrency_violations,
        0,
        "no partition ever had two jobs running at once"
    );
    let per_partition: BTreeMap<String, usize> =
        partition_jobs(&env)
            .iter()
            .fold(BTreeMap::new(), |mut m, j| {
                *m.entry(s(&j["labels"]["bq-backfill-partition"]))
                    .or_default() += 1;
                m
            });
    let ids: BTreeSet<&String> = per_partition.keys().collect();
    assert_eq!(ids.len(), 31);
    eprintln!(
        "chaos ({concurrency} slots): {kills} kills, {finished_early} runs finished before their kill, jobs per partition {per_partition:?}"
    );
}

/// `bq-backfill run … 2>&1 | tee log` with the pipe closed (Ctrl-C killed
/// `tee`): the logs have nowhere to go, yet the run finishes as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stderr_never_ends_the_run() {
    let env = Env::demo("2024-01-01", "2024-01-04").await;
    let d = env.descriptor("2024-01-01", "2024-01-04", json!({}));
    let mut child = env.spawn(&d, &["-v"]);
    drop(child.stderr.take());
    let r = wait(child);
    r.expect_code(0);
    assert_eq!(r.finished()["status"], "succeeded");
    assert_converged(&env, "2024-01-01", "2024-01-04");
}

/// The same closed stderr, then a signal mid-job: the cancel is still
/// recorded and the run ends with its code and `run_finished`, not a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_with_stderr_closed_still_cancels_and_records() {
    let env = Env::demo("2024-01-01", "2024-01-03").await;
    env.slow_partition_jobs(Duration::from_secs(30));
    let d = env.descriptor("2024-01-01", "2024-01-03", json!({}));
    let mut child = env.spawn(&d, &[]);
    drop(child.stderr.take());
    let mut out = BufReader::new(child.stdout.take().unwrap());
    read_until(&mut out, |e| e["event"] == "partition_started");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let rest = read_until(&mut out, |e| e["event"] == "run_finished");
    assert_eq!(child.wait().unwrap().code(), Some(143));
    assert_eq!(rest.last().unwrap()["status"], "cancelled");
    assert_eq!(env.latest_status()["20240101"], "CANCELLED");
}

/// Run A holds the lease; run B takes it over with --force-unlock while A's
/// first job runs (B adopts that job). A must notice within one heartbeat,
/// start nothing and record nothing more, leave the job to B, and exit 73.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_lease_is_taken_over_stops_and_exits_73() {
    let env = Env::demo("2024-01-01", "2024-01-05").await;
    env.slow_partition_jobs(Duration::from_secs(4));
    // A 3 s TTL: the heartbeat reads the lease every second.
    let d = env.descriptor(
        "2024-01-01",
        "2024-01-05",
        json!({"lease": {"ttl_seconds": 3}}),
    );
    let Started {
        child: mut a,
        out: mut a_out,
        job_id,
    } = spawn_until_started(&env, &d);
    let b = env.spawn(&d, &["--force-unlock"]);
    let a_rest = read_until(&mut a_out, |e| e["event"] == "run_finished");
    let a_code = a.wait().unwrap().code();
    let a_fin = a_rest.last().unwrap().clone();
    let b = wait(b);
    env.normal_speed();
    assert_eq!(a_code, Some(73), "A: {a_rest:?}");
    assert_eq!(a_fin["status"], "locked", "{a_fin}");
    assert_eq!(a_fin["error"]["kind"], "locked", "{a_fin}");
    assert!(
        s(&a_fin["error"]["message"]).contains("took over"),
        "{a_fin}"
    );
    assert!(
        !a_rest.iter().any(|e| e["event"] == "partition_started"),
        "A started nothing after its first job: {a_rest:?}"
    );
    b.expect_code(0);
    assert_eq!(b.finished()["succeeded"], 4, "{}", b.stderr);
    // A's job was left alone, adopted by B, never cancelled.
    let job = jobs_of(&env)
        .into_iter()
        .find(|j| s(&j["jobId"]) == job_id)
        .unwrap();
    assert!(job["errorResult"].is_null(), "{job}");
    // A wrote no partition row after B took over.
    let a_run = s(&a_fin["run_id"]);
    let b_run = s(&b.finished()["run_id"]);
    let audit = env.audit();
    let b_first = audit
        .iter()
        .filter(|r| s(&r["run_id"]) == b_run)
        .map(|r| s(&r["recorded_at"]).parse::<f64>().unwrap())
        .fold(f64::MAX, f64::min);
    let a_late: Vec<_> = audit
        .iter()
        .filter(|r| s(&r["run_id"]) == a_run && !r["partition_id"].is_null())
        .filter(|r| s(&r["recorded_at"]).parse::<f64>().unwrap() > b_first)
        .collect();
    assert!(a_late.is_empty(), "A kept recording: {a_late:?}");
    assert_converged(&env, "2024-01-01", "2024-01-05");
}
