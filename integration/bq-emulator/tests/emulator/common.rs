//! Shared helpers: an in-process emulator plus a small JSON-over-HTTP client.

use std::time::Duration;

use bq_emulator::{Config, Emulator};
use serde_json::{Map, Value, json};

pub const P: &str = "p";
pub const DS: &str = "ds";

pub struct Env {
    pub emu: Emulator,
    pub http: reqwest::Client,
}

/// Response status and JSON body (`Null` when the body is empty or not JSON).
pub type Resp = (u16, Value);

impl Env {
    pub async fn start() -> Env {
        Env::with(Config::default()).await
    }

    pub async fn with(config: Config) -> Env {
        let emu = Emulator::start(config).await.expect("emulator starts");
        emu.create_dataset(P, DS);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Env { emu, http }
    }

    /// URL of a REST path below `/bigquery/v2/projects/p`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/bigquery/v2/projects/{P}{path}", self.emu.base_url())
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(self.http.post(self.url(path)).json(&body)).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(self.http.delete(self.url(path))).await
    }

    pub async fn control_post(&self, path: &str, body: Value) -> Resp {
        self.send(
            self.http
                .post(format!("{}/_emulator{path}", self.emu.base_url()))
                .json(&body),
        )
        .await
    }

    pub async fn control_get(&self, path: &str) -> Resp {
        self.send(
            self.http
                .get(format!("{}/_emulator{path}", self.emu.base_url())),
        )
        .await
    }

    /// Creates `ds.<name>` through the REST API.
    pub async fn create_table(&self, name: &str, extra: Value) -> Value {
        let mut body = extra;
        body["tableReference"] = json!({"projectId": P, "datasetId": DS, "tableId": name});
        let (status, v) = self.post(&format!("/datasets/{DS}/tables"), body).await;
        assert_eq!(status, 200, "tables.insert: {v}");
        v
    }

    /// A DAY-partitioned `ds.<name>(dt DATE, n INTEGER, s STRING)` with rows for 2024-01-14..16.
    pub async fn seeded_day_table(&self, name: &str) {
        self.create_table(name, day_table_spec()).await;
        let rows = [
            ("2024-01-14", 1, "a"),
            ("2024-01-15", 2, "b"),
            ("2024-01-15", 3, "c"),
            ("2024-01-16", 4, "d"),
        ];
        self.emu
            .insert_rows(
                P,
                DS,
                name,
                rows.iter()
                    .map(|(d, n, s)| row(json!({"dt": d, "n": n, "s": s})))
                    .collect(),
            )
            .unwrap();
    }

    /// Inserts a job and returns the jobs.insert response.
    pub async fn insert_job(&self, job: Value) -> Resp {
        self.post("/jobs", job).await
    }

    /// Polls jobs.get until DONE.
    pub async fn wait_done(&self, job_id: &str) -> Value {
        for _ in 0..2000 {
            let (status, v) = self.get(&format!("/jobs/{job_id}")).await;
            assert_eq!(status, 200, "jobs.get: {v}");
            if v["status"]["state"] == "DONE" {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("job {job_id} never finished");
    }

    /// Runs a query job to completion and returns the final job resource.
    pub async fn run_query(
        &self,
        job_id: &str,
        sql: &str,
        dest: Option<&str>,
        write: &str,
    ) -> Value {
        let (status, v) = self.insert_job(query_job(job_id, sql, dest, write)).await;
        assert_eq!(status, 200, "jobs.insert: {v}");
        self.wait_done(job_id).await
    }

    pub fn rows(&self, table: &str) -> Vec<Map<String, Value>> {
        self.emu.read_rows(P, DS, table).unwrap()
    }
}

pub fn row(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

pub fn day_table_spec() -> Value {
    json!({
        "schema": {"fields": [
            {"name": "dt", "type": "DATE"},
            {"name": "n", "type": "INTEGER"},
            {"name": "s", "type": "STRING"},
        ]},
        "timePartitioning": {"type": "DAY", "field": "dt"},
    })
}

/// A query job body; `dest` is a table id in `ds` (may be decorated).
pub fn query_job(job_id: &str, sql: &str, dest: Option<&str>, write: &str) -> Value {
    let mut q = json!({"query": sql, "useLegacySql": false});
    if let Some(d) = dest {
        q["destinationTable"] = json!({"projectId": P, "datasetId": DS, "tableId": d});
        q["writeDisposition"] = json!(write);
    }
    json!({"jobReference": {"projectId": P, "jobId": job_id}, "configuration": {"query": q}})
}

/// `(n, s)` of every row of a partition, as wire strings.
pub fn ns(rows: &[Map<String, Value>]) -> Vec<(String, String)> {
    rows.iter()
        .map(|r| {
            (
                r["n"].as_str().unwrap_or("null").to_string(),
                r["s"].as_str().unwrap_or("null").to_string(),
            )
        })
        .collect()
}

pub fn error_reason(v: &Value) -> &str {
    v["status"]["errorResult"]["reason"].as_str().unwrap_or("")
}
