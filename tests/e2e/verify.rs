//! Verification checks and write-audit-publish: a deliberately wrong query
//! (rows doubled for some days) under `staged` leaves those days of the
//! destination exactly as they were and publishes the rest; `direct` writes
//! and reports the same failures; a kill between stage and publish converges.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::time::Duration;

use bq_emulator::{JobMatcher, demo};
use serde_json::{Value, json};

use crate::harness::*;

const STAGING: &str = "scratch";
/// The days the wrong query doubles.
const DOUBLED: [&str; 2] = ["20240102", "20240103"];

/// The demo query plus, for the DOUBLED days, every row a second time.
const DOUBLING_QUERY: &str = "SELECT DATE(event_ts) AS day, user_id, event_type, COUNT(*) AS events \
FROM `demo-project.raw.events` \
WHERE event_ts >= @partition_start AND event_ts < @partition_end \
GROUP BY day, user_id, event_type \
UNION ALL \
SELECT DATE(event_ts) AS day, user_id, event_type, COUNT(*) AS events \
FROM `demo-project.raw.events` \
WHERE event_ts >= @partition_start AND event_ts < @partition_end \
AND @partition_id IN ('20240102', '20240103') \
GROUP BY day, user_id, event_type";

/// Another logic for the first run: every count plus 1000, so that a
/// published day is told from a kept one.
const OLD_QUERY: &str = "SELECT DATE(event_ts) AS day, user_id, event_type, COUNT(*) + 1000 AS events \
FROM `demo-project.raw.events` \
WHERE event_ts >= @partition_start AND event_ts < @partition_end \
GROUP BY day, user_id, event_type";

fn checks() -> Value {
    json!([
        {
            "name": "no_duplicate_keys",
            "query": "SELECT user_id, event_type FROM {target} WHERE day = @partition_date GROUP BY user_id, event_type HAVING COUNT(*) > 1",
            "expect": "zero_rows"
        },
        {
            "name": "events_match_raw",
            "query": "SELECT SUM(events) FROM {target} WHERE day = @partition_date",
            "expect": {"equals_query": "SELECT COUNT(*) FROM `demo-project.raw.events` WHERE event_ts >= @partition_start AND event_ts < @partition_end"}
        },
        {
            "name": "some_rows",
            "query": "SELECT COUNT(*) FROM {target} WHERE day = @partition_date",
            "expect": {"row_count": {"min": 1, "max": 100000}}
        },
        {
            "name": "rows_near_current",
            "query": "SELECT COUNT(*) FROM {target} WHERE day = @partition_date",
            "expect": {"within_percent_of_current": 50}
        }
    ])
}

/// The destination's rows by day, each row as its JSON text, sorted: the
/// partition's contents compared byte for byte.
fn by_day(env: &Env) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in env.rows(demo::ANALYTICS_DATASET, demo::DAILY_TABLE) {
        let day = s(&r["day"]).replace('-', "");
        out.entry(day)
            .or_default()
            .push(serde_json::to_string(&r).unwrap());
    }
    for rows in out.values_mut() {
        rows.sort();
    }
    out
}

/// The demo over 2024-01-01..05, the destination filled by the old logic.
async fn env_with_old_contents() -> Env {
    let env = Env::demo("2024-01-01", "2024-01-05").await;
    env.emu.create_dataset(demo::PROJECT, STAGING);
    let old = env.descriptor(
        "2024-01-01",
        "2024-01-05",
        json!({"source": {"query": OLD_QUERY}}),
    );
    env.run(&old, &[]).expect_code(0);
    env
}

fn wrong(env: &Env, mode: &str) -> Value {
    let write = match mode {
        "staged" => json!({"mode": "staged", "staging_dataset": STAGING}),
        _ => json!({"mode": "direct"}),
    };
    env.descriptor(
        "2024-01-01",
        "2024-01-05",
        json!({
            "source": {"query": DOUBLING_QUERY},
            "verify": checks(),
            "write": write,
            "on_failure": "continue"
        }),
    )
}

/// The failure events name the check and its observed value.
fn assert_reported(r: &RunResult) {
    let failed = r.of("partition_failed");
    let failed_days: Vec<String> = failed.iter().map(|e| s(&e["partition"])).collect();
    assert_eq!(failed_days, DOUBLED, "{failed:?}");
    for e in &failed {
        assert_eq!(e["reason"], "verify_failed");
        let message = s(&e["message"]);
        assert!(
            message.contains("check `no_duplicate_keys` failed: observed ")
                && message.contains("rows, expected 0 rows"),
            "{message}"
        );
    }
    let verified = r.of("partition_verified");
    assert_eq!(verified.len(), 4);
    for v in verified {
        let doubled = DOUBLED.contains(&s(&v["partition"]).as_str());
        assert_eq!(v["passed"], !doubled, "{v}");
        let checks = v["checks"].as_array().unwrap();
        assert_eq!(checks.len(), 4);
        let by_name = |n: &str| checks.iter().find(|c| c["name"] == n).unwrap();
        assert_eq!(by_name("no_duplicate_keys")["passed"], !doubled);
        assert_eq!(by_name("events_match_raw")["passed"], !doubled);
        assert_eq!(by_name("some_rows")["passed"], true);
        // Twice the rows of the current partition: 100 % off, beyond 50 %.
        let near = by_name("rows_near_current");
        assert_eq!(near["passed"], !doubled, "{near}");
        assert!(s(&near["expected"]).starts_with("within 50% of "), "{near}");
        if doubled {
            let obs = s(&by_name("no_duplicate_keys")["observed"]);
            assert_ne!(obs, "0 rows");
            let sum = by_name("events_match_raw");
            let (got, want) = (s(&sum["observed"]), s(&sum["expected"]));
            assert_eq!(
                format!("= {} (equals_query)", got.parse::<i64>().unwrap() / 2),
                want
            );
        }
    }
}

/// Latest audit rows of the doubled days: VERIFY_FAILED with the checks.
fn assert_audited(env: &Env) {
    let latest = env.latest_status();
    for (day, status) in &latest {
        let want = if DOUBLED.contains(&day.as_str()) {
            "VERIFY_FAILED"
        } else {
            "SUCCEEDED"
        };
        assert_eq!(status, want, "{day}: {latest:?}");
    }
    let failed: Vec<_> = env
        .audit()
        .into_iter()
        .filter(|r| r["status"] == "VERIFY_FAILED")
        .collect();
    assert_eq!(failed.len(), 2);
    for row in failed {
        assert_eq!(row["error_reason"], "verify_failed");
        assert!(s(&row["error_message"]).contains("no_duplicate_keys"));
        let checks: Vec<Value> = serde_json::from_str(&s(&row["checks"])).unwrap();
        assert!(checks.iter().any(|c| c["name"] == "no_duplicate_keys"
            && c["passed"] == false
            && s(&c["observed"]) != "0 rows"));
        assert_eq!(row["record_version"], "3");
    }
}

fn assert_status_names_the_check(env: &Env, d: &Value) {
    let r = env.run(d, &["status", "--format", "json"]);
    r.expect_code(0);
    let text = r.stdout.clone();
    for day in DOUBLED {
        assert!(text.contains(day), "{text}");
    }
    assert!(
        text.contains("verify_failed: check `no_duplicate_keys` failed: observed"),
        "{text}"
    );
    let human = env.run(d, &["status"]);
    assert!(
        human.stdout.contains("no_duplicate_keys"),
        "{}",
        human.stdout
    );
}

/// The staging table is partitioned like the destination and expires about
/// a week after the last run that used it.
async fn assert_staging_expires_in_a_week(env: &Env) {
    let url = format!(
        "{}/bigquery/v2/projects/{}/datasets/{STAGING}/tables/{}__bqb_stage",
        env.emu.base_url(),
        demo::PROJECT,
        demo::DAILY_TABLE
    );
    let meta: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    assert_eq!(meta["timePartitioning"]["field"], "day", "{meta}");
    let expires: i64 = s(&meta["expirationTime"]).parse().unwrap();
    let week = 7 * 24 * 3600 * 1000;
    let now = chrono::Utc::now().timestamp_millis();
    assert!(
        (now + week - 60_000..=now + week).contains(&expires),
        "{meta}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staged_leaves_failed_days_untouched_and_publishes_the_rest() {
    let env = env_with_old_contents().await;
    let before = by_day(&env);
    let d = wrong(&env, "staged");
    let r = env.run(&d, &[]);
    r.expect_code(1);
    assert_reported(&r);
    assert_audited(&env);

    let after = by_day(&env);
    let expected = demo::expected_daily(date("2024-01-01"), date("2024-01-05"));
    for day in ["20240101", "20240102", "20240103", "20240104"] {
        if DOUBLED.contains(&day) {
            assert_eq!(after[day], before[day], "{day} must be untouched");
        } else {
            assert_ne!(after[day], before[day], "{day} must be published");
        }
    }
    let published: BTreeMap<_, _> = env
        .daily()
        .into_iter()
        .filter(|((day, _, _), _)| !["2024-01-02", "2024-01-03"].contains(&day.as_str()))
        .collect();
    let want: BTreeMap<_, _> = expected
        .into_iter()
        .filter(|((day, _, _), _)| !["2024-01-02", "2024-01-03"].contains(&day.as_str()))
        .collect();
    assert_eq!(published, want);
    // Published by copy jobs from the staging table, one per good day.
    let publishes: Vec<Value> = env
        .emu
        .jobs()
        .into_iter()
        .filter(|j| s(&j["jobId"]).ends_with("_publish"))
        .collect();
    assert_eq!(publishes.len(), 2, "{publishes:?}");
    assert_status_names_the_check(&env, &d);
    assert_staging_expires_in_a_week(&env).await;

    // A rerun redoes only the failed days, which fail again: still untouched.
    let again = env.run(&d, &[]);
    again.expect_code(1);
    assert_eq!(again.partitions("partition_skipped").len(), 2);
    assert_eq!(by_day(&env), after);
    // The rerun pushed the staging table's expiration back (tables.patch).
    assert!(env.stat("tables.patch") >= 1);
    assert_staging_expires_in_a_week(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_writes_and_reports_the_same_failures() {
    let env = env_with_old_contents().await;
    let d = wrong(&env, "direct");
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.md");
    let github = [
        ("GITHUB_ACTIONS", "true".to_string()),
        ("GITHUB_STEP_SUMMARY", summary.display().to_string()),
    ];
    let r = env.run_env(&d, &[], &github);
    r.expect_code(1);
    assert_reported(&r);
    assert_audited(&env);
    // The step summary lists the failed checks and shades those days.
    let md = std::fs::read_to_string(&summary).unwrap();
    for day in DOUBLED {
        assert!(
            md.contains(&format!(
                "| `{day}` | 2 | `verify_failed` | check `no_duplicate_keys` failed: observed "
            )),
            "{md}"
        );
    }
    assert!(md.contains("Mon  S\nTue  V\nWed  V\nThu  S"), "{md}");
    // Direct mode wrote the doubled days before checking them.
    let after = by_day(&env);
    for day in DOUBLED {
        let keys: Vec<Value> = after[day]
            .iter()
            .map(|r| serde_json::from_str::<Value>(r).unwrap())
            .map(|r| json!([r["user_id"], r["event_type"]]))
            .collect();
        let mut unique = keys.clone();
        unique.dedup();
        assert!(unique.len() < keys.len(), "{day} holds doubled rows");
    }
    assert_status_names_the_check(&env, &d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_stage_and_publish_converges_without_a_second_publish() {
    let env = Env::demo("2024-01-01", "2024-01-04").await;
    env.emu.create_dataset(demo::PROJECT, STAGING);
    let d = env.descriptor(
        "2024-01-01",
        "2024-01-04",
        json!({
            "verify": checks(),
            "write": {"mode": "staged", "staging_dataset": STAGING}
        }),
    );
    env.emu.faults().slow_jobs(
        JobMatcher::IdContains("_publish".into()),
        Duration::from_secs(3),
    );
    let mut child = env.spawn(&d, &[]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let publishing = loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the run ended before publishing"
        );
        let v: Value = serde_json::from_str(line.trim_end()).unwrap();
        if v["event"] == "partition_publishing" {
            break v;
        }
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let day = s(&publishing["partition"]);
    assert_eq!(env.latest_status()[&day], "VERIFIED");

    env.normal_speed();
    let r = env.run(&d, &["--force-unlock"]);
    r.expect_code(0);
    let adopted = r.of("partition_publishing");
    assert_eq!(adopted[0]["partition"], day.as_str());
    assert_eq!(adopted[0]["adopted"], true);
    assert_eq!(s(&adopted[0]["bq_job_id"]), s(&publishing["bq_job_id"]));
    assert_eq!(
        env.daily(),
        demo::expected_daily(date("2024-01-01"), date("2024-01-04"))
    );
    assert!(env.latest_status().values().all(|s| s == "SUCCEEDED"));
    let mut per_day: BTreeMap<String, usize> = BTreeMap::new();
    for j in env.emu.jobs() {
        let id = s(&j["jobId"]);
        if id.ends_with("_publish") {
            *per_day.entry(id).or_default() += 1;
        }
    }
    assert_eq!(per_day.len(), 3, "one publish job per day: {per_day:?}");
    assert!(per_day.values().all(|n| *n == 1));
    // Nothing was staged twice for the killed day either.
    let stages = env
        .emu
        .jobs()
        .into_iter()
        .filter(|j| {
            let id = s(&j["jobId"]);
            id.starts_with("bqb_") && id.contains(&day) && !id.ends_with("_publish")
        })
        .count();
    assert_eq!(stages, 1);
    assert_eq!(env.emu.stats().concurrency_violations, 0);
}

/// Killed right after VERIFIED was recorded, while the publish insert is
/// still on its way (every jobs.insert is slowed): the rerun finds the
/// publish job under its ID if the insert landed, or publishes now if it did
/// not — either way exactly one publish, and the destination converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_right_after_verified_publishes_exactly_once_on_the_rerun() {
    let env = Env::demo("2024-01-01", "2024-01-03").await;
    env.emu.create_dataset(demo::PROJECT, STAGING);
    let d = env.descriptor(
        "2024-01-01",
        "2024-01-03",
        json!({
            "verify": checks(),
            "write": {"mode": "staged", "staging_dataset": STAGING}
        }),
    );
    env.emu
        .faults()
        .delay("jobs.insert", 100, Duration::from_millis(1500));
    let mut child = env.spawn(&d, &[]);
    let until = std::time::Instant::now() + Duration::from_secs(60);
    let verified = |env: &Env| {
        // The audit table may not exist yet.
        env.emu
            .read_rows(demo::PROJECT, demo::OPS_DATASET, AUDIT)
            .is_ok_and(|rows| rows.iter().any(|r| r["status"] == "VERIFIED"))
    };
    while !verified(&env) {
        assert!(std::time::Instant::now() < until, "never VERIFIED");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    env.normal_speed();
    // Whatever request was in flight has landed (or never will).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let publishes = |env: &Env| {
        env.emu
            .jobs()
            .into_iter()
            .filter(|j| {
                let id = s(&j["jobId"]);
                id.contains("20240101") && id.ends_with("_publish")
            })
            .count()
    };
    let landed = publishes(&env);
    assert!(landed <= 1);

    let r = env.run(&d, &["--force-unlock"]);
    r.expect_code(0);
    let first = r.of("partition_publishing")[0];
    assert_eq!(first["partition"], "20240101");
    assert_eq!(first["adopted"], landed == 1, "{first}");
    eprintln!(
        "kill after VERIFIED: the publish insert {} before the kill",
        if landed == 1 {
            "had landed"
        } else {
            "had not landed"
        }
    );
    assert_eq!(publishes(&env), 1, "published exactly once");
    assert_eq!(
        env.daily(),
        demo::expected_daily(date("2024-01-01"), date("2024-01-03"))
    );
    assert!(env.latest_status().values().all(|s| s == "SUCCEEDED"));
    // The verified stage was not redone.
    let stages = env
        .emu
        .jobs()
        .into_iter()
        .filter(|j| {
            let id = s(&j["jobId"]);
            id.starts_with("bqb_") && id.contains("20240101") && !id.ends_with("_publish")
        })
        .count();
    assert_eq!(stages, 1);
}

/// A staging dataset that does not exist stops the run before any job,
/// with a hint, and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_staging_dataset_is_a_configuration_error() {
    let env = Env::demo("2024-01-01", "2024-01-03").await;
    let d = env.descriptor(
        "2024-01-01",
        "2024-01-03",
        json!({"write": {"mode": "staged", "staging_dataset": "nowhere"}}),
    );
    let r = env.run(&d, &[]);
    r.expect_code(78);
    let e = &r.finished()["error"];
    assert!(
        s(&e["message"]).contains(
            "cannot create the staging table demo-project.nowhere.events_daily__bqb_stage"
        ),
        "{e}"
    );
    assert!(
        s(&e["hint"]).contains("create the dataset demo-project.nowhere"),
        "{e}"
    );
    assert!(r.of("partition_started").is_empty());
    assert!(env.daily().is_empty());
}

/// `validate --dry-run` (and `plan`) dry-run every check against the
/// destination before anything runs: a check reading a missing column is a
/// configuration error naming the check, and no job is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_dry_run_checks_every_check_query() {
    let env = Env::demo("2024-01-01", "2024-01-03").await;
    env.emu.create_dataset(demo::PROJECT, STAGING);
    let staged = json!({"mode": "staged", "staging_dataset": STAGING});
    let d = env.descriptor(
        "2024-01-01",
        "2024-01-03",
        json!({"verify": checks(), "write": staged}),
    );
    let ok = env.run(&d, &["validate", "--dry-run"]);
    ok.expect_code(0);
    let lines = ok.events[0]["dry_run"]["checks"].to_string();
    assert!(
        lines.contains("4 verification check(s) dry-run for 20240101"),
        "{lines}"
    );

    let bad_check = json!([{
        "name": "by_missing_column",
        "query": "SELECT COUNT(*) FROM {target} WHERE no_such_column = @partition_date",
        "expect": {"row_count": {"min": 1}}
    }]);
    let d = env.descriptor(
        "2024-01-01",
        "2024-01-03",
        json!({"verify": bad_check, "write": staged}),
    );
    let bad = env.run(&d, &["validate", "--dry-run"]);
    bad.expect_code(78);
    let error = &bad.events[0]["errors"][0];
    assert_eq!(error["field"], "verify");
    assert!(
        s(&error["message"])
            .starts_with("check `by_missing_column` does not dry-run for partition 20240101"),
        "{error}"
    );
    let plan = env.run(&d, &["plan"]);
    plan.expect_code(78);
    assert_eq!(env.emu.stats().jobs_created, 0);
}
