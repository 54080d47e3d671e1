//! Test harness: an in-process emulator, the real `bq-backfill` binary as a
//! subprocess, the descriptor on stdin, events parsed from stdout.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bq_emulator::demo;
use bq_emulator::{Config, Emulator};
use chrono::NaiveDate;
use serde_json::{Map, Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_bq-backfill");
pub const AUDIT: &str = "backfill_audit";

/// A started emulator with the demo datasets and tables.
pub struct Env {
    pub emu: Emulator,
}

pub fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

impl Env {
    /// Emulator with the demo raw events for [start, end) and an empty destination.
    pub async fn demo(start: &str, end: &str) -> Env {
        let emu = Emulator::start(Config::default())
            .await
            .expect("emulator starts");
        demo::seed_over_http(&emu.base_url(), date(start), date(end))
            .await
            .expect("seed");
        Env { emu }
    }

    /// [`Env::demo`] with the demo's datasets (raw, analytics, ops) in `location`.
    pub async fn demo_in(location: &str, start: &str, end: &str) -> Env {
        let emu = Emulator::start(Config::default())
            .await
            .expect("emulator starts");
        for ds in [
            demo::RAW_DATASET,
            demo::ANALYTICS_DATASET,
            demo::OPS_DATASET,
        ] {
            emu.create_dataset_in(demo::PROJECT, ds, location);
        }
        demo::seed_over_http(&emu.base_url(), date(start), date(end))
            .await
            .expect("seed");
        Env { emu }
    }

    /// Emulator started with `config`, seeded with the demo for [start, end).
    pub async fn with_config(config: Config, start: &str, end: &str) -> Env {
        let emu = Emulator::start(config).await.expect("emulator starts");
        demo::seed_over_http(&emu.base_url(), date(start), date(end))
            .await
            .expect("seed");
        Env { emu }
    }

    /// Create a table in the demo project (body as tables.insert).
    pub fn table(&self, dataset: &str, table: &str, schema: Value, partitioning: Value) {
        let body = json!({
            "tableReference": {"projectId": demo::PROJECT, "datasetId": dataset, "tableId": table},
            "schema": {"fields": schema},
            "timePartitioning": partitioning,
        });
        self.emu
            .create_table(demo::PROJECT, dataset, table, body)
            .expect("table created");
    }

    pub fn host(&self) -> String {
        self.emu.host()
    }

    /// The demo descriptor over [start, end) with overrides merged in.
    pub fn descriptor(&self, start: &str, end: &str, extra: Value) -> Value {
        let mut d = json!({
            "job": "events_daily",
            "project": demo::PROJECT,
            "destination": format!("{}.{}.{}", demo::PROJECT, demo::ANALYTICS_DATASET, demo::DAILY_TABLE),
            "partitions": {"granularity": "day", "start": start, "end": end},
            "source": {"query": demo::DAILY_QUERY},
            "checkpoint": {"table": format!("{}.{}.{}", demo::PROJECT, demo::OPS_DATASET, AUDIT)},
            "throttle": {"pause_seconds": 0, "pause_ratio": 0},
            "retry": {"initial_backoff_seconds": 0.01, "max_backoff_seconds": 0.05, "deadline_seconds": 20}
        });
        merge(&mut d, extra);
        d
    }

    /// Run the binary to completion.
    pub fn run(&self, descriptor: &Value, args: &[&str]) -> RunResult {
        let child = self.spawn(descriptor, args);
        // `plan` and `status` print tables for people unless asked for JSON.
        let human = args.iter().any(|a| *a == "plan" || *a == "status")
            && !args.windows(2).any(|w| w == ["--format", "json"]);
        if human {
            wait_human(child)
        } else {
            wait(child)
        }
    }

    /// Run the binary to completion with extra environment variables.
    pub fn run_env(&self, descriptor: &Value, args: &[&str], vars: &[(&str, String)]) -> RunResult {
        let child = self.spawn_env(descriptor, args, vars);
        wait(child)
    }

    /// Start the binary; stdout and stderr are piped.
    pub fn spawn(&self, descriptor: &Value, args: &[&str]) -> Child {
        self.spawn_env(descriptor, args, &[])
    }

    /// Start the binary with extra environment variables. The
    /// orchestrators' own variables are removed first, so a test run inside
    /// GitHub Actions or Dagster sees only what the test sets.
    pub fn spawn_env(&self, descriptor: &Value, args: &[&str], vars: &[(&str, String)]) -> Child {
        let mut cmd = Command::new(BIN);
        for k in [
            "GITHUB_ACTIONS",
            "GITHUB_STEP_SUMMARY",
            "GITHUB_OUTPUT",
            "DAGSTER_PIPES_CONTEXT",
            "DAGSTER_PIPES_MESSAGES",
        ] {
            cmd.env_remove(k);
        }
        cmd.envs(vars.iter().map(|(k, v)| (k, v)));
        cmd.args(args)
            .env("BIGQUERY_EMULATOR_HOST", self.host())
            .env_remove("GOOGLE_CLOUD_PROJECT")
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("binary starts");
        let body = serde_json::to_vec(descriptor).unwrap();
        child.stdin.take().unwrap().write_all(&body).unwrap();
        child
    }

    /// Rows of a table as (column → wire value) maps.
    pub fn rows(&self, dataset: &str, table: &str) -> Vec<Map<String, Value>> {
        self.emu
            .read_rows(demo::PROJECT, dataset, table)
            .expect("table readable")
    }

    /// The destination as (day, user, type) → events.
    pub fn daily(&self) -> BTreeMap<(String, String, String), i64> {
        let mut out = BTreeMap::new();
        for r in self.rows(demo::ANALYTICS_DATASET, demo::DAILY_TABLE) {
            let key = (s(&r["day"]), s(&r["user_id"]), s(&r["event_type"]));
            let n: i64 = s(&r["events"]).parse().expect("INT64 as a decimal string");
            assert!(
                out.insert(key.clone(), n).is_none(),
                "row {key:?} appears twice: a partition was doubled"
            );
        }
        out
    }

    /// Audit rows of partitions (not lease rows).
    pub fn audit(&self) -> Vec<Map<String, Value>> {
        self.rows(demo::OPS_DATASET, AUDIT)
            .into_iter()
            .filter(|r| !r["partition_id"].is_null())
            .collect()
    }

    /// Latest audit status per partition (by recorded_at).
    pub fn latest_status(&self) -> BTreeMap<String, String> {
        let mut rows = self.audit();
        rows.sort_by(|a, b| {
            let t = |r: &Map<String, Value>| s(&r["recorded_at"]).parse::<f64>().unwrap_or(0.0);
            t(a).partial_cmp(&t(b)).unwrap()
        });
        let mut out = BTreeMap::new();
        for r in rows {
            out.insert(s(&r["partition_id"]), s(&r["status"]));
        }
        out
    }

    /// Make the backfill's partition jobs (IDs `bqb_<job>_2024…`) spend `d`
    /// RUNNING; audit queries and lease claims stay fast.
    pub fn slow_partition_jobs(&self, d: Duration) {
        self.emu.faults().slow_jobs(
            bq_emulator::JobMatcher::IdPrefix("bqb_events_daily_2024".into()),
            d,
        );
    }

    /// Undo [`Env::slow_partition_jobs`] and every other fault.
    pub fn normal_speed(&self) {
        self.emu.faults().clear();
        self.emu.set_job_delay(Duration::ZERO);
    }

    /// Drop a table and create it again empty, with the same schema and
    /// partitioning (over HTTP, as an operator would with `bq rm` + `bq mk`).
    pub async fn recreate_table(&self, dataset: &str, table: &str) {
        let url = format!(
            "{}/bigquery/v2/projects/{}/datasets/{dataset}/tables",
            self.emu.base_url(),
            demo::PROJECT
        );
        let http = reqwest::Client::new();
        let meta: Value = http
            .get(format!("{url}/{table}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let resp = http.delete(format!("{url}/{table}")).send().await.unwrap();
        assert!(resp.status().is_success(), "{resp:?}");
        let mut body = json!({
            "tableReference": meta["tableReference"],
            "schema": meta["schema"],
        });
        for key in ["timePartitioning", "rangePartitioning", "clustering"] {
            if !meta[key].is_null() {
                body[key] = meta[key].clone();
            }
        }
        let resp = http.post(url).json(&body).send().await.unwrap();
        assert!(resp.status().is_success(), "{resp:?}");
    }

    /// Cancel a job over HTTP, as an operator would with `bq cancel`.
    pub async fn cancel_job(&self, job_id: &str) {
        let url = format!(
            "{}/bigquery/v2/projects/{}/jobs/{job_id}/cancel",
            self.emu.base_url(),
            demo::PROJECT
        );
        let resp = reqwest::Client::new().post(url).send().await.unwrap();
        assert!(resp.status().is_success(), "{resp:?}");
    }

    /// Drop a table (over HTTP).
    pub async fn drop_table(&self, dataset: &str, table: &str) {
        let url = format!(
            "{}/bigquery/v2/projects/{}/datasets/{dataset}/tables/{table}",
            self.emu.base_url(),
            demo::PROJECT
        );
        let resp = reqwest::Client::new().delete(url).send().await.unwrap();
        assert!(resp.status().is_success(), "{resp:?}");
    }

    pub fn stat(&self, method: &str) -> u64 {
        let stats = serde_json::to_value(self.emu.stats()).unwrap();
        stats["requests"][method].as_u64().unwrap_or(0)
    }
}

pub fn s(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                if v.is_null() {
                    b.remove(&k);
                } else {
                    merge(b.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (b, e) => *b = e,
    }
}

/// What a finished process left.
pub struct RunResult {
    pub code: i32,
    pub events: Vec<Value>,
    pub stdout: String,
    pub stderr: String,
    /// Wall time from spawn to exit.
    #[allow(dead_code)]
    pub elapsed: Duration,
}

impl RunResult {
    pub fn of(&self, kind: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["event"] == kind).collect()
    }

    /// The `partition` of every event of `kind`, in stream order.
    pub fn partitions(&self, kind: &str) -> Vec<String> {
        self.of(kind).iter().map(|e| s(&e["partition"])).collect()
    }

    pub fn finished(&self) -> &Value {
        let last = self
            .events
            .last()
            .unwrap_or_else(|| panic!("no events; stderr:\n{}", self.stderr));
        assert_eq!(
            last["event"], "run_finished",
            "last event must be run_finished; stderr:\n{}",
            self.stderr
        );
        last
    }

    /// A destination/configuration refusal (exit 78) whose message contains
    /// `message`; returns its `run_finished.error` for further checks.
    pub fn expect_config_error(&self, message: &str, context: &str) -> &Value {
        self.expect_code(78);
        let fin = self.finished();
        assert_eq!(fin["status"], "error");
        assert!(
            s(&fin["error"]["message"]).contains(message),
            "{context}: {}",
            fin["error"]
        );
        &fin["error"]
    }

    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code; stderr:\n{}\nstdout:\n{}",
            self.stderr, self.stdout
        );
        self
    }
}

/// Like [`wait`], for output meant for people: stdout is not parsed.
pub fn wait_human(child: Child) -> RunResult {
    let t0 = Instant::now();
    let out = child.wait_with_output().expect("binary runs");
    RunResult {
        code: out.status.code().unwrap_or(-1),
        events: Vec::new(),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        elapsed: t0.elapsed(),
    }
}

pub fn wait(child: Child) -> RunResult {
    let t0 = Instant::now();
    let out = child.wait_with_output().expect("binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let events = stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"))
        })
        .collect();
    RunResult {
        code: out.status.code().unwrap_or(-1),
        events,
        stdout,
        stderr,
        elapsed: t0.elapsed(),
    }
}
