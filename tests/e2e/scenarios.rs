//! The core scenarios of `bq-backfill run`.

use std::collections::BTreeSet;
use std::time::Duration;

use bq_emulator::{JobMatcher, demo};
use serde_json::{Value, json};

use crate::harness::*;

/// The classic scenario: a year of daily partitions, then a second run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_year_of_daily_partitions_then_a_rerun_that_skips_everything() {
    let env = Env::demo("2024-01-01", "2025-01-01").await;
    let d = env.descriptor("2024-01-01", "2025-01-01", json!({}));

    let r = env.run(&d, &[]);
    r.expect_code(0);
    // 2024 is a leap year: [2024-01-01, 2025-01-01) is 366 day partitions.
    let fin = r.finished();
    assert_eq!(fin["status"], "succeeded");
    assert_eq!(fin["succeeded"], 366);
    assert_eq!(r.of("partition_succeeded").len(), 366);
    assert_eq!(r.of("run_started")[0]["partitions_to_run"], 366);
    let expected = demo::expected_daily(date("2024-01-01"), date("2025-01-01"));
    assert_eq!(
        env.daily(),
        expected,
        "destination equals the per-day aggregates"
    );
    assert_eq!(
        env.emu
            .partition_ids(demo::PROJECT, demo::ANALYTICS_DATASET, demo::DAILY_TABLE)
            .unwrap()
            .len(),
        366
    );
    // Every partition went RUNNING -> SUCCEEDED in the audit log.
    let latest = env.latest_status();
    assert_eq!(latest.len(), 366);
    assert!(latest.values().all(|s| s == "SUCCEEDED"));
    // Job IDs are the deterministic ones, one per partition.
    let ids: BTreeSet<String> = r
        .of("partition_started")
        .iter()
        .map(|e| s(&e["bq_job_id"]))
        .collect();
    assert_eq!(ids.len(), 366);
    assert!(
        ids.iter().all(|id| id.starts_with("bqb_events_daily_2024")),
        "{ids:?}"
    );

    env.emu.reset_stats();
    let r2 = env.run(&d, &[]);
    r2.expect_code(0);
    assert_eq!(r2.of("partition_skipped").len(), 366);
    assert_eq!(r2.finished()["skipped"], 366);
    assert_eq!(env.stat("jobs.insert"), 0, "a rerun submits no job at all");
    assert_eq!(
        env.stat("jobs.query"),
        1,
        "one query reads every partition's latest state"
    );
    assert_eq!(env.daily(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_the_query_reruns_every_partition_but_editing_the_throttle_reruns_none() {
    let env = Env::demo("2024-03-01", "2024-03-11").await;
    let d = env.descriptor("2024-03-01", "2024-03-11", json!({}));
    env.run(&d, &[]).expect_code(0);

    let throttled = env.descriptor(
        "2024-03-01",
        "2024-03-11",
        json!({"throttle": {"pause_seconds": 0.01, "pause_ratio": 0.5}, "job_config": {"priority": "BATCH", "labels": {"team": "x"}}}),
    );
    let r = env.run(&throttled, &[]);
    r.expect_code(0);
    assert_eq!(
        r.of("partition_skipped").len(),
        10,
        "throttle/priority/labels do not change the fingerprint"
    );

    let edited = env.descriptor(
        "2024-03-01",
        "2024-03-11",
        json!({"source": {"query": demo::DAILY_QUERY.replace("COUNT(*) AS events", "COUNT(event_id) AS events")}}),
    );
    let r = env.run(&edited, &[]);
    r.expect_code(0);
    assert_eq!(
        r.of("partition_succeeded").len(),
        10,
        "a changed query makes every partition stale"
    );
    assert_eq!(
        env.daily(),
        demo::expected_daily(date("2024-03-01"), date("2024-03-11"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_and_end_flags_override_the_range() {
    let env = Env::demo("2024-05-01", "2024-05-31").await;
    let d = env.descriptor("2024-05-01", "2024-05-31", json!({}));
    let r = env.run(&d, &["run", "--start", "2024-05-10", "--end", "2024-05-13"]);
    r.expect_code(0);
    let ids = r.partitions("partition_succeeded");
    assert_eq!(ids, vec!["20240510", "20240511", "20240512"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_first_order_and_a_partition_list() {
    let env = Env::demo("2024-06-01", "2024-06-08").await;
    let d = env.descriptor(
        "2024-06-01",
        "2024-06-04",
        json!({"partitions": {"order": "newest_first"}}),
    );
    let r = env.run(&d, &[]);
    r.expect_code(0);
    let ids = r.partitions("partition_succeeded");
    assert_eq!(ids, vec!["20240603", "20240602", "20240601"]);

    let list = env.descriptor(
        "x",
        "x",
        json!({"partitions": {"start": null, "end": null, "list": ["2024-06-07", "2024-06-05"]}}),
    );
    let r = env.run(&list, &[]);
    r.expect_code(0);
    let ids: BTreeSet<String> = r.partitions("partition_succeeded").into_iter().collect();
    assert_eq!(
        ids,
        BTreeSet::from(["20240605".to_string(), "20240607".to_string()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_partition_is_recorded_and_only_it_is_retried_next_time() {
    let env = Env::demo("2024-02-01", "2024-02-06").await;
    // Every job writing 2024-02-03 ends with a permanent error.
    env.emu.faults().fail_jobs(
        JobMatcher::IdContains("20240203".into()),
        "invalidQuery",
        "Syntax error: injected by the test",
    );
    let d = env.descriptor(
        "2024-02-01",
        "2024-02-06",
        json!({"on_failure": "continue"}),
    );
    let r = env.run(&d, &[]);
    r.expect_code(1);
    let failed = r.of("partition_failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["partition"], "20240203");
    assert_eq!(failed[0]["reason"], "invalidQuery");
    assert_eq!(failed[0]["retryable"], false);
    assert_eq!(r.finished()["status"], "failed");
    assert_eq!(r.finished()["failed"], 1);
    assert_eq!(r.finished()["succeeded"], 4);
    assert_eq!(env.latest_status()["20240203"], "FAILED");
    let row = env
        .audit()
        .into_iter()
        .find(|r| r["status"] == "FAILED")
        .unwrap();
    assert_eq!(row["error_reason"], "invalidQuery");

    env.emu.faults().clear();
    let r = env.run(&d, &[]);
    r.expect_code(0);
    let ran = r.partitions("partition_succeeded");
    assert_eq!(ran, vec!["20240203"]);
    assert_eq!(r.of("partition_skipped").len(), 4);
    assert_eq!(
        env.daily(),
        demo::expected_daily(date("2024-02-01"), date("2024-02-06"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_failure_stop_leaves_the_rest_pending() {
    let env = Env::demo("2024-02-01", "2024-02-06").await;
    env.emu.faults().fail_jobs(
        JobMatcher::IdContains("20240202".into()),
        "invalidQuery",
        "Syntax error: injected",
    );
    let d = env.descriptor("2024-02-01", "2024-02-06", json!({}));
    let r = env.run(&d, &[]);
    r.expect_code(1);
    let fin = r.finished();
    assert_eq!(
        (
            fin["succeeded"].as_u64(),
            fin["failed"].as_u64(),
            fin["pending"].as_u64()
        ),
        (Some(1), Some(1), Some(3))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_finished_is_the_last_line_of_stdout_and_stderr_together_even_when_verbose() {
    let env = Env::demo("2024-04-01", "2024-04-04").await;
    let d = env.descriptor("2024-04-01", "2024-04-04", json!({}));
    // One pipe for both streams, as Airflow's BashOperator merges them.
    let (reader, writer) = std::io::pipe().unwrap();
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["run", "-vv"])
        .env("BIGQUERY_EMULATOR_HOST", env.host())
        .env("RUST_LOG", "trace")
        .stdin(std::process::Stdio::piped())
        .stdout(writer.try_clone().unwrap())
        .stderr(writer);
    let mut child = cmd.spawn().unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        &serde_json::to_vec(&d).unwrap(),
    )
    .unwrap();
    drop(cmd);
    let status = child.wait().unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut { reader }, &mut text).unwrap();
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(
        text.lines().count() > 10,
        "verbose logging produced lines: {text}"
    );
    let last = text.trim_end_matches('\n').lines().last().unwrap();
    let v: serde_json::Value =
        serde_json::from_str(last).unwrap_or_else(|_| panic!("last line is not JSON: {last}"));
    assert_eq!(v["event"], "run_finished");
    assert!(
        text.ends_with('\n') && !text.ends_with("\n\n"),
        "nothing follows the summary line"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_resumes_without_doubling_or_losing_a_partition() {
    let env = Env::demo("2024-07-01", "2024-08-01").await;
    env.emu.set_job_delay(Duration::from_millis(40));
    let d = env.descriptor("2024-07-01", "2024-08-01", json!({}));
    let mut child = env.spawn(&d, &[]);
    // Kill after roughly half the partitions have succeeded.
    let stdout = child.stdout.take().unwrap();
    let mut seen = 0;
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line.unwrap();
        if line.contains("\"partition_succeeded\"") {
            seen += 1;
            if seen == 15 {
                break;
            }
        }
    }
    child.kill().unwrap();
    let _ = child.wait();
    let before = env.latest_status();
    assert!(
        before.len() >= 15 && before.len() < 31,
        "killed half-way: {before:?}"
    );

    env.normal_speed();
    let r = env.run(&d, &["--force-unlock"]);
    r.expect_code(0);
    assert_eq!(
        env.daily(),
        demo::expected_daily(date("2024-07-01"), date("2024-08-01"))
    );
    let latest = env.latest_status();
    assert_eq!(latest.len(), 31);
    assert!(latest.values().all(|s| s == "SUCCEEDED"), "{latest:?}");
    assert_eq!(
        r.finished()["skipped"].as_u64().unwrap() + r.finished()["succeeded"].as_u64().unwrap(),
        31
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_and_status_show_what_would_run_and_what_ran_without_writing() {
    let env = Env::demo("2024-09-01", "2024-09-05").await;
    let d = env.descriptor("2024-09-01", "2024-09-05", json!({}));
    // Before any run: everything is new, and plan creates nothing.
    let plan = env.run(&d, &["plan", "--format", "json"]);
    plan.expect_code(0);
    let lines: Vec<serde_json::Value> = plan
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert!(
        lines[..4]
            .iter()
            .all(|l| l["action"] == "run" && l["reason"] == "new")
    );
    assert_eq!(lines[4]["summary"]["to_run"], 4);
    assert!(
        env.emu
            .read_rows(demo::PROJECT, demo::OPS_DATASET, AUDIT)
            .is_err(),
        "plan wrote no audit table"
    );
    assert_eq!(
        env.emu.stats().jobs_created,
        0,
        "plan's dry runs create no job"
    );
    assert_eq!(
        lines[4]["summary"]["checks"][0],
        "the query dry-runs for 20240901 and 20240904"
    );
    let status = env.run(&d, &["status"]);
    status.expect_code(0);
    assert!(
        status.stdout.contains("4 partitions: 4 pending"),
        "{}",
        status.stdout
    );
    assert!(status.stdout.contains("no run yet"), "{}", status.stdout);

    env.run(&d, &["run", "--end", "2024-09-03"]).expect_code(0);
    let plan = env.run(&d, &["plan", "--format", "json"]);
    let lines: Vec<serde_json::Value> = plan
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<(String, String)> = lines[..4]
        .iter()
        .map(|l| (s(&l["action"]), s(&l["reason"])))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("skip".into(), "already_succeeded".into()),
            ("skip".into(), "already_succeeded".into()),
            ("run".into(), "new".into()),
            ("run".into(), "new".into()),
        ]
    );

    let status = env.run(&d, &["status", "--format", "json"]);
    status.expect_code(0);
    let lines: Vec<serde_json::Value> = status
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["status"], "SUCCEEDED");
    assert_eq!(lines[0]["current_fingerprint"], true);
    assert_eq!(lines[3]["status"], "PENDING");
    assert_eq!(
        lines[4]["summary"]["counts"],
        json!({"pending": 2, "succeeded": 2})
    );
    assert_eq!(
        lines[4]["summary"]["lease"]["held"], false,
        "released at the end of the run"
    );
    assert_eq!(lines[4]["summary"]["lease"]["state"], "released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_query_after_a_kill_cancels_the_stale_job_before_writing() {
    let env = Env::demo("2024-01-01", "2024-01-03").await;
    env.slow_partition_jobs(Duration::from_secs(30));
    let d = env.descriptor("2024-01-01", "2024-01-03", json!({}));
    let mut child = env.spawn(&d, &[]);
    let stdout = child.stdout.take().unwrap();
    let mut old_job = String::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if v["event"] == "partition_started" {
            old_job = s(&v["bq_job_id"]);
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();

    env.normal_speed();
    let fixed = env.descriptor(
        "2024-01-01",
        "2024-01-03",
        json!({"source": {"query": demo::DAILY_QUERY.replace("COUNT(*) AS events", "COUNT(event_id) AS events")}}),
    );
    let r = env.run(&fixed, &["--force-unlock"]);
    r.expect_code(0);
    let old = env
        .emu
        .jobs()
        .into_iter()
        .find(|j| s(&j["jobId"]) == old_job)
        .unwrap();
    assert_eq!(
        old["errorResult"]["reason"], "stopped",
        "the old logic's job was cancelled: {old}"
    );
    let stale = env
        .audit()
        .into_iter()
        .find(|r| s(&r["bq_job_id"]) == old_job && r["status"] == "CANCELLED");
    assert_eq!(
        stale.expect("a CANCELLED row for the stale job")["error_reason"],
        "stale"
    );
    assert_eq!(env.emu.stats().concurrency_violations, 0);
    assert_eq!(
        env.daily(),
        demo::expected_daily(date("2024-01-01"), date("2024-01-03"))
    );
}

#[test]
fn the_readme_documents_every_exit_code() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for (code, meaning) in bq_backfill::exit::TABLE {
        assert!(
            readme.contains(&format!("| {code} | {meaning} |")),
            "README lacks exit code {code}"
        );
    }
    assert!(
        !bq_backfill::exit::TABLE.iter().any(|(c, _)| *c == 99),
        "99 is Airflow's skip code"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_does_not_fit_is_refused_before_any_job() {
    let env = Env::demo("2024-01-01", "2024-01-03").await;
    env.emu.create_table(
        demo::PROJECT,
        demo::ANALYTICS_DATASET,
        "flat",
        json!({"tableReference": {"projectId": demo::PROJECT, "datasetId": demo::ANALYTICS_DATASET, "tableId": "flat"},
               "schema": {"fields": [{"name": "day", "type": "DATE"}]}}),
    )
    .unwrap();
    env.emu.reset_stats();
    let cases = [
        ("demo-project.analytics.nope", "day", "does not exist"),
        ("demo-project.analytics.flat", "day", "is not partitioned"),
        (
            "demo-project.analytics.events_daily",
            "month",
            "is partitioned by day, but partitions.granularity is month",
        ),
    ];
    for (dest, granularity, message) in cases {
        let (start, end) = if granularity == "month" {
            ("2024-01", "2024-02")
        } else {
            ("2024-01-01", "2024-01-03")
        };
        let d = env.descriptor(
            start,
            end,
            json!({"destination": dest, "partitions": {"granularity": granularity}}),
        );
        let r = env.run(&d, &[]);
        let error = r.expect_config_error(message, dest);
        assert!(error["hint"].is_string());
        assert!(r.stderr.contains(message));
    }
    assert_eq!(env.stat("jobs.insert"), 0, "nothing was submitted");
    assert_eq!(env.stat("tabledata.insertAll"), 0, "nothing was recorded");
}

/// Every audit row is one partition's state change; the lease lives in its
/// own table beside it, and a view beside both answers "latest per partition".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_holds_partition_rows_only_and_the_lease_has_its_own_table() {
    let env = Env::demo("2024-01-01", "2024-01-04").await;
    let d = env.descriptor("2024-01-01", "2024-01-04", json!({}));
    env.run(&d, &[]).expect_code(0);
    let audit = env.rows(demo::OPS_DATASET, AUDIT);
    assert_eq!(audit.len(), 6, "RUNNING and SUCCEEDED for 3 partitions");
    for r in &audit {
        assert!(!r["partition_id"].is_null(), "{r:?}");
        assert!(
            ["RUNNING", "SUCCEEDED"].contains(&s(&r["status"]).as_str()),
            "{r:?}"
        );
        assert_eq!(
            s(&r["record_version"]),
            bq_backfill::engine::checkpoint::RECORD_VERSION.to_string()
        );
    }
    let lease = env.rows(demo::OPS_DATASET, &format!("{AUDIT}_lease"));
    let statuses: Vec<String> = lease.iter().map(|r| s(&r["status"])).collect();
    assert_eq!(statuses.first().map(String::as_str), Some("HELD"));
    assert_eq!(statuses.last().map(String::as_str), Some("RELEASED"));
    assert!(lease.iter().all(|r| s(&r["job"]) == "events_daily"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_catches_a_broken_query_before_any_partition_runs() {
    let env = Env::demo("2024-09-01", "2024-09-05").await;
    let broken =
        demo::DAILY_QUERY.replace("COUNT(*) AS events", "COUNT(*) AS events, no_such_column");
    let d = env.descriptor(
        "2024-09-01",
        "2024-09-05",
        json!({"source": {"query": broken}}),
    );
    let plan = env.run(&d, &["plan"]);
    plan.expect_code(78);
    assert!(
        plan.stderr
            .contains("does not dry-run for partition 20240901"),
        "{}",
        plan.stderr
    );
    assert!(
        plan.stderr.contains("no_such_column"),
        "BigQuery's message: {}",
        plan.stderr
    );
    assert!(
        plan.stderr.contains("hint: fix the query"),
        "{}",
        plan.stderr
    );
    assert_eq!(env.emu.stats().jobs_created, 0);

    // One-sided filters are legal SQL but write rows outside the partition: plan warns.
    let one_sided = demo::DAILY_QUERY.replace(" AND event_ts < @partition_end", "");
    let d = env.descriptor(
        "2024-09-01",
        "2024-09-05",
        json!({"source": {"query": one_sided}}),
    );
    let plan = env.run(&d, &["plan"]);
    plan.expect_code(0);
    assert!(
        plan.stdout
            .contains("warning: the query uses @partition_start but not @partition_end"),
        "{}",
        plan.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_estimate_prices_each_partition_to_run_and_partitions_picks_some() {
    let env = Env::demo("2024-09-01", "2024-09-05").await;
    let d = env.descriptor("2024-09-01", "2024-09-05", json!({}));
    env.run(&d, &["run", "--partitions", "20240902"])
        .expect_code(0);
    assert_eq!(
        env.latest_status().keys().collect::<Vec<_>>(),
        vec!["20240902"]
    );

    let plan = env.run(&d, &["plan", "--estimate", "--format", "json"]);
    plan.expect_code(0);
    let rows: Vec<&Value> = plan
        .events
        .iter()
        .filter(|e| e.get("partition").is_some())
        .collect();
    let estimated: Vec<bool> = rows
        .iter()
        .map(|r| r.get("estimated_bytes_processed").is_some())
        .collect();
    assert_eq!(
        estimated,
        [true, false, true, true],
        "only partitions to run are dry-run"
    );
    // The emulator prunes partitions as BigQuery does: each day reads about a
    // quarter of the four seeded days, and the whole table is the sum.
    let day: Vec<i64> = [0, 2, 3]
        .iter()
        .map(|i| rows[*i]["estimated_bytes_processed"].as_i64().unwrap())
        .collect();
    let url = format!(
        "{}/bigquery/v2/projects/{}/datasets/{}/tables/{}",
        env.emu.base_url(),
        demo::PROJECT,
        demo::RAW_DATASET,
        demo::RAW_TABLE
    );
    let meta: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    let raw: i64 = meta["numBytes"].as_str().unwrap().parse().unwrap();
    assert!(
        day.iter().all(|b| *b > 0 && *b < raw / 2),
        "{day:?} of {raw}"
    );
    let human = env.run(&d, &["plan", "--estimate", "--price-per-tib", "5"]);
    assert!(
        human.stdout.contains("BYTES READ") && human.stdout.contains("at $5.00/TiB"),
        "{}",
        human.stdout
    );

    let picked = env.run(
        &d,
        &[
            "plan",
            "--partitions",
            "20240903,20240901",
            "--format",
            "json",
        ],
    );
    let ids: Vec<&str> = picked
        .events
        .iter()
        .filter_map(|e| e["partition"].as_str())
        .collect();
    assert_eq!(ids, ["20240901", "20240903"]);
    let both = env.run(
        &d,
        &["plan", "--partitions", "20240903", "--start", "2024-09-01"],
    );
    both.expect_code(65);
    assert!(both.stderr.contains("--partitions"), "{}", both.stderr);
}

/// Runs the binary under `script`, so stdin, stdout and stderr are a terminal.
fn run_in_pty(env: &Env, descriptor: &Value, extra_env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let task = dir.path().join("task.json");
    std::fs::write(&task, descriptor.to_string()).unwrap();
    let events = dir.path().join("events.jsonl");
    let cmd = format!("{BIN} run --task {} > {}", task.display(), events.display());
    let mut c = std::process::Command::new("script");
    c.args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .env("BIGQUERY_EMULATOR_HOST", env.host())
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG");
    for (k, v) in extra_env {
        c.env(k, v);
    }
    let out = c.output().expect("script runs");
    assert!(out.status.success(), "{out:?}");
    let last = std::fs::read_to_string(&events).unwrap();
    assert!(
        last.lines().last().unwrap().contains("\"run_finished\""),
        "events still go to stdout"
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The screen's text without SGR colour sequences.
fn plain(screen: &str) -> String {
    let mut out = String::new();
    let mut chars = screen.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_terminal_run_draws_a_progress_bar_and_ends_with_a_summary() {
    let env = Env::demo("2024-01-01", "2024-01-09").await;
    let d = env.descriptor("2024-01-01", "2024-01-09", json!({}));
    let screen = run_in_pty(&env, &d, &[]);
    let text = plain(&screen);
    assert!(
        text.contains("] 3/8 20240104 · "),
        "done/total and the current partition: {text:?}"
    );
    assert!(
        text.contains("ETA") && text.contains("/s"),
        "ETA and rate: {text:?}"
    );
    assert!(
        !text.contains("0/0"),
        "no bar before the plan is known: {text:?}"
    );
    assert!(
        screen.contains("\x1b[32m✔\x1b[0m succeeded: 8 succeeded"),
        "a coloured summary: {screen:?}"
    );
    assert!(
        !screen.contains("INFO"),
        "per-partition log lines are left to -v: {screen:?}"
    );

    // NO_COLOR: the same bar and summary without colour.
    let env = Env::demo("2024-01-01", "2024-01-04").await;
    let d = env.descriptor("2024-01-01", "2024-01-04", json!({}));
    let screen = run_in_pty(&env, &d, &[("NO_COLOR", "1")]);
    assert!(screen.contains("✔ succeeded: 3 succeeded"), "{screen:?}");
    assert!(!screen.contains("\x1b[32m"), "no colour: {screen:?}");

    // TERM=dumb: no bar, plain log lines.
    let env = Env::demo("2024-01-01", "2024-01-04").await;
    let screen = run_in_pty(&env, &d, &[("TERM", "dumb")]);
    assert!(!screen.contains("ETA"), "no bar: {screen:?}");
    assert!(
        screen.contains("INFO") && screen.contains("succeeded: 3 succeeded"),
        "{screen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_dry_run_checks_the_query_against_bigquery() {
    let env = Env::demo("2024-09-01", "2024-09-05").await;
    let d = env.descriptor("2024-09-01", "2024-09-05", json!({}));
    let ok = env.run(&d, &["validate", "--dry-run"]);
    ok.expect_code(0);
    assert_eq!(ok.events[0]["valid"], true);
    assert_eq!(
        ok.events[0]["dry_run"]["checks"][0],
        "the query dry-runs for 20240901 and 20240904"
    );

    let broken = demo::DAILY_QUERY.replace(
        "FROM `demo-project.raw.events`",
        "FROM `demo-project.raw.nope`",
    );
    let d = env.descriptor(
        "2024-09-01",
        "2024-09-05",
        json!({"source": {"query": broken}}),
    );
    let bad = env.run(&d, &["validate", "--dry-run"]);
    bad.expect_code(78);
    let error = &bad.events[0]["errors"][0];
    assert_eq!(bad.events[0]["valid"], false);
    assert_eq!(error["field"], "source.query");
    assert!(
        error["message"].as_str().unwrap().contains("nope"),
        "{error}"
    );
    assert_eq!(env.emu.stats().jobs_created, 0);
    // Offline, the same descriptor is valid: only BigQuery knows the table is missing.
    env.run(&d, &["validate"]).expect_code(0);
}

/// The steady path costs four REST calls per partition: the RUNNING row
/// (carrying the previous partition's SUCCEEDED row), jobs.insert,
/// getQueryResults (a long-poll until the job is done) and jobs.get (its
/// statistics). The rest is per run: reading the tables and the audit log,
/// the lease, the last SUCCEEDED row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_partition_costs_four_rest_calls_and_its_success_rides_with_the_next_row() {
    let env = Env::demo("2024-04-01", "2024-05-01").await;
    let d = env.descriptor("2024-04-01", "2024-05-01", json!({}));
    env.run(&d, &[]).expect_code(0); // creates the audit and lease tables
    let rerun = env.descriptor(
        "2024-04-01",
        "2024-05-01",
        json!({"source": {"query": demo::DAILY_QUERY.replace("COUNT(*) AS events", "COUNT(event_id) AS events")}}),
    );
    env.emu.reset_stats();
    let r = env.run(&rerun, &[]);
    r.expect_code(0);
    assert_eq!(r.of("partition_succeeded").len(), 30);
    let stats = serde_json::to_value(env.emu.stats()).unwrap();
    let per_partition = [
        "tabledata.insertAll",
        "jobs.insert",
        "jobs.getQueryResults",
        "jobs.get",
    ];
    for m in per_partition {
        let n = env.stat(m);
        // 30 partitions, plus at most 3 per run (lease claim job, lease rows, last flush).
        assert!(
            (30..=33).contains(&n),
            "{m}: {n} calls for 30 partitions; {stats}"
        );
    }
    let total: u64 = stats["requests"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(Value::as_u64)
        .sum();
    assert!(total <= 30 * 4 + 16, "{total} calls in all: {stats}");
    eprintln!("30 partitions: {total} REST calls: {}", stats["requests"]);
    // Every partition still went RUNNING -> SUCCEEDED in the audit log.
    let latest = env.latest_status();
    assert!(latest.values().all(|s| s == "SUCCEEDED"), "{latest:?}");
    let succeeded = env
        .audit()
        .iter()
        .filter(|r| r["status"] == "SUCCEEDED")
        .count();
    assert_eq!(succeeded, 60, "both runs recorded every partition");
}
