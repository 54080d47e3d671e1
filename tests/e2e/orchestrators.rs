//! Under an orchestrator: GitHub Actions (step summary, outputs,
//! annotations, log groups) and Dagster Pipes (messages, the range from the
//! context), each as the real runner or Dagster sets the variables.

use std::io::Write;

use base64::Engine;
use bq_emulator::{JobMatcher, demo};
use serde_json::{Value, json};

use crate::harness::*;

fn github_vars(dir: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![
        ("GITHUB_ACTIONS", "true".into()),
        (
            "GITHUB_STEP_SUMMARY",
            dir.join("summary.md").display().to_string(),
        ),
        ("GITHUB_OUTPUT", dir.join("output").display().to_string()),
    ]
}

fn read(dir: &std::path::Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_github_actions_a_failed_partition_is_annotated_summarised_and_output() {
    let env = Env::demo("2024-02-01", "2024-02-05").await;
    env.emu.faults().fail_jobs(
        JobMatcher::IdContains("20240203".into()),
        "invalidQuery",
        "Syntax error: Unexpected keyword FROM at [1:8]",
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("output"), "earlier=kept\n").unwrap();
    let d = env.descriptor(
        "2024-02-01",
        "2024-02-05",
        json!({"on_failure": "continue"}),
    );
    let r = env.run_env(&d, &[], &github_vars(dir.path()));
    r.expect_code(1);
    let run_id = s(&r.finished()["run_id"]);

    let outputs = read(dir.path(), "output");
    assert_eq!(
        outputs,
        format!(
            "earlier=kept\nstatus=failed\nexit_code=1\nsucceeded=3\nfailed=1\nskipped=0\npending=0\nrun_id={run_id}\n"
        )
    );
    let summary = read(dir.path(), "summary.md");
    assert!(
        summary.starts_with("## ❌ bq-backfill `events_daily`: failed\n"),
        "{summary}"
    );
    assert!(summary.contains("| 4 | 3 | 1 | 0 | 0 | 0 |"), "{summary}");
    // The same calendar as `status`, lettered: Thursday 1 February to Sunday 4.
    assert!(
        summary.contains("### Partitions\n\n```text\n2024 Feb\n"),
        "{summary}"
    );
    assert!(
        summary.contains("\nThu  S\n") && summary.contains("\nSat  F\n"),
        "{summary}"
    );
    assert!(
        summary.contains(
            "| `20240203` | 1 | `invalidQuery` | Syntax error: Unexpected keyword FROM at [1:8] |"
        ),
        "{summary}"
    );

    let errors: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("::error"))
        .collect();
    assert_eq!(
        errors,
        [
            "::error title=events_daily%3A partition 20240203 failed::invalidQuery (attempt 1): Syntax error: Unexpected keyword FROM at [1:8]"
        ]
    );
    // Each partition's log lines sit inside its own group.
    let groups: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("::group::"))
        .collect();
    assert_eq!(groups.len(), 4, "{}", r.stderr);
    assert_eq!(groups[0], "::group::partition 20240201 (attempt 1)");
    assert_eq!(r.stderr.matches("::endgroup::").count(), 4, "{}", r.stderr);
    let in_group = r
        .stderr
        .split("::group::partition 20240202")
        .nth(1)
        .unwrap();
    let in_group = in_group.split("::endgroup::").next().unwrap();
    assert!(
        in_group.lines().count() > 1,
        "log lines inside the group: {in_group}"
    );
    assert_eq!(env.latest_status()["20240203"], "FAILED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_github_actions_fourteen_failures_make_ten_annotations() {
    let env = Env::demo("2024-02-01", "2024-02-15").await;
    env.emu.faults().fail_jobs(
        JobMatcher::IdPrefix("bqb_events_daily_202402".into()),
        "invalidQuery",
        "Syntax error: injected, 100% of them",
    );
    let dir = tempfile::tempdir().unwrap();
    let d = env.descriptor(
        "2024-02-01",
        "2024-02-15",
        json!({"on_failure": "continue"}),
    );
    let r = env.run_env(&d, &[], &github_vars(dir.path()));
    r.expect_code(1);
    let errors: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("::error"))
        .collect();
    assert_eq!(errors.len(), 10, "{}", r.stderr);
    assert!(
        errors[0].ends_with("::invalidQuery (attempt 1): Syntax error: injected, 100%25 of them"),
        "{}",
        errors[0]
    );
    assert!(
        errors[9].contains("::and 5 more failed partitions"),
        "{}",
        errors[9]
    );
    let summary = read(dir.path(), "summary.md");
    assert_eq!(
        summary.matches("| `invalidQuery` |").count(),
        14,
        "every failure in the summary: {summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_github_actions_nothing_is_written_for_it() {
    let env = Env::demo("2024-02-01", "2024-02-02").await;
    let dir = tempfile::tempdir().unwrap();
    let mut vars = github_vars(dir.path());
    vars[0].1 = "false".into();
    let d = env.descriptor("2024-02-01", "2024-02-02", json!({}));
    let r = env.run_env(&d, &[], &vars);
    r.expect_code(0);
    assert!(!dir.path().join("summary.md").exists());
    assert!(!dir.path().join("output").exists());
    assert!(!r.stderr.contains("::group::"), "{}", r.stderr);
}

/// As `dagster_pipes.encode_param`.
fn encode(v: &Value) -> String {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(v.to_string().as_bytes()).unwrap();
    base64::engine::general_purpose::STANDARD.encode(z.finish().unwrap())
}

/// The variables `PipesSubprocessClient` sets: the context in a file, the
/// messages to a file.
fn pipes_vars(dir: &std::path::Path, context: Value) -> Vec<(&'static str, String)> {
    let ctx = dir.join("context.json");
    std::fs::write(&ctx, context.to_string()).unwrap();
    vec![
        ("DAGSTER_PIPES_CONTEXT", encode(&json!({"path": ctx}))),
        (
            "DAGSTER_PIPES_MESSAGES",
            encode(&json!({"path": dir.join("messages")})),
        ),
    ]
}

fn messages(dir: &std::path::Path) -> Vec<Value> {
    read(dir, "messages")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn window_context(start: &str, end: &str) -> Value {
    json!({
        "asset_keys": ["events_daily"],
        "partition_key": null,
        "partition_key_range": {"start": start, "end": end},
        "partition_time_window": {"start": format!("{start}T00:00:00+00:00"), "end": format!("{end}T00:00:00+00:00")},
        "run_id": "dagster-run-1", "job_name": "__ASSET_JOB", "retry_number": 0, "extras": {},
        "code_version_by_asset_key": null, "provenance_by_asset_key": null
    })
}

fn open_range(env: &Env) -> Value {
    let mut d = env.descriptor("2024-03-01", "2024-03-02", json!({}));
    d["partitions"] = json!({"granularity": "day"});
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_dagster_pipes_the_context_picks_the_range_and_each_partition_is_a_materialization() {
    let env = Env::demo("2024-03-01", "2024-03-06").await;
    let dir = tempfile::tempdir().unwrap();
    // A Dagster backfill of three keys in one run: window [03-02, 03-05).
    let vars = pipes_vars(dir.path(), window_context("2024-03-02", "2024-03-05"));
    let r = env.run_env(&open_range(&env), &[], &vars);
    r.expect_code(0);
    assert_eq!(
        r.partitions("partition_succeeded"),
        ["20240302", "20240303", "20240304"]
    );
    assert_eq!(
        env.daily(),
        demo::expected_daily(date("2024-03-02"), date("2024-03-05"))
    );

    let m = messages(dir.path());
    let methods: Vec<&str> = m.iter().map(|x| x["method"].as_str().unwrap()).collect();
    assert_eq!(
        methods,
        [
            "opened",
            "report_asset_materialization",
            "report_asset_materialization",
            "report_asset_materialization",
            "closed"
        ]
    );
    assert!(m.iter().all(|x| x["__dagster_pipes_version"] == "0.1"));
    let keys: Vec<&Value> = m[1..4]
        .iter()
        .map(|x| &x["params"]["metadata"]["partition"]["raw_value"])
        .collect();
    assert_eq!(keys, ["2024-03-02", "2024-03-03", "2024-03-04"]);
    let first = &m[1]["params"];
    assert_eq!(first["asset_key"], "events_daily");
    let succeeded = r.of("partition_succeeded")[0];
    assert_eq!(
        first["metadata"]["rows_written"]["raw_value"],
        succeeded["rows_written"]
    );
    assert_eq!(
        first["metadata"]["bq_job_id"]["raw_value"],
        succeeded["bq_job_id"]
    );
    assert_eq!(first["metadata"]["bq_job_url"]["type"], "url");
    assert_eq!(m[4]["params"], json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipes_messages_on_stdout_come_before_run_finished() {
    let env = Env::demo("2024-03-01", "2024-03-03").await;
    let dir = tempfile::tempdir().unwrap();
    let mut vars = pipes_vars(
        dir.path(),
        json!({"asset_keys": ["events_daily"], "partition_key": "2024-03-01"}),
    );
    vars[1].1 = encode(&json!({"stdio": "stdout"}));
    let r = env.run_env(&open_range(&env), &[], &vars);
    r.expect_code(0);
    let last_two: Vec<&Value> = r.events.iter().rev().take(2).collect();
    assert_eq!(last_two[0]["event"], "run_finished");
    assert_eq!(last_two[1]["method"], "closed");
    let mat: Vec<&Value> = r
        .events
        .iter()
        .filter(|e| e["method"] == "report_asset_materialization")
        .collect();
    assert_eq!(mat.len(), 1);
    assert_eq!(
        mat[0]["params"]["metadata"]["partition"]["raw_value"],
        "2024-03-01"
    );
    assert_eq!(r.partitions("partition_succeeded"), ["20240301"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_under_pipes_logs_the_failure_and_closes_with_an_exception() {
    let env = Env::demo("2024-03-01", "2024-03-03").await;
    env.emu.faults().fail_jobs(
        JobMatcher::IdContains("20240302".into()),
        "invalidQuery",
        "Syntax error: injected",
    );
    let dir = tempfile::tempdir().unwrap();
    let vars = pipes_vars(dir.path(), window_context("2024-03-01", "2024-03-03"));
    let mut d = open_range(&env);
    d["on_failure"] = json!("continue");
    let r = env.run_env(&d, &[], &vars);
    r.expect_code(1);
    let m = messages(dir.path());
    let log = m
        .iter()
        .find(|x| x["method"] == "log")
        .expect("a log message");
    assert_eq!(log["params"]["level"], "ERROR");
    assert!(
        s(&log["params"]["message"]).contains("partition 20240302 failed"),
        "{log}"
    );
    let closed = m.last().unwrap();
    assert_eq!(closed["method"], "closed");
    let exc = &closed["params"]["exception"];
    assert_eq!(exc["name"], "bq_backfill.failed");
    assert!(s(&exc["message"]).contains("1 partitions failed"), "{exc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pipes_parameters_exit_78_before_anything_is_written() {
    let env = Env::demo("2024-03-01", "2024-03-02").await;
    let dir = tempfile::tempdir().unwrap();
    let vars = vec![
        ("DAGSTER_PIPES_CONTEXT", "bm90IHpsaWI=".to_string()),
        (
            "DAGSTER_PIPES_MESSAGES",
            encode(&json!({"path": dir.path().join("messages")})),
        ),
    ];
    let r = env.run_env(&open_range(&env), &[], &vars);
    let err = r.expect_config_error(
        "DAGSTER_PIPES_CONTEXT is not zlib-compressed data",
        "bad context",
    );
    assert!(s(&err["hint"]).contains("base64(zlib(json))"), "{err}");
    assert!(
        r.stderr
            .contains("error: DAGSTER_PIPES_CONTEXT is not zlib"),
        "{}",
        r.stderr
    );
    assert_eq!(env.stat("jobs.insert"), 0, "nothing sent to BigQuery");
    assert!(!dir.path().join("messages").exists());
}
