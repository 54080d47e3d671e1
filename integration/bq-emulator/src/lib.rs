//! A local BigQuery REST v2 emulator with real partition semantics.
//!
//! Serves `/bigquery/v2/...` with BigQuery's paths and JSON shapes, so the official clients work against
//! it (`BIGQUERY_EMULATOR_HOST=host:port`), plus a control API under `/_emulator/` for statistics and
//! fault injection. Start it in-process with [`Emulator::start`] or as `bq-emulator serve`.

pub mod api;
pub mod catalog;
pub mod control;
pub mod data;
pub mod demo;
pub mod error;
pub mod faults;
pub mod jobs;
pub mod location;
pub mod persist;
pub mod server;
pub mod sql;
pub mod state;
pub mod stats;
pub mod util;
pub mod write;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use error::{ApiError, EmulatorError, ErrorProto};
pub use faults::{Faults, JobMatcher};
pub use stats::Stats;

use crate::catalog::split_decorator;
use crate::persist::Persister;
use crate::state::AppState;
use crate::util::lock;

/// How to start the emulator.
#[derive(Clone, Debug)]
pub struct Config {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Persist state here (see README); `None` keeps everything in memory.
    pub data_dir: Option<PathBuf>,
    /// Directory `gs://bucket/path` maps to, as `<gcs_root>/bucket/path`.
    pub gcs_root: Option<PathBuf>,
    /// Time each job spends RUNNING before it executes.
    pub job_delay: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            port: 0,
            data_dir: None,
            gcs_root: None,
            job_delay: Duration::ZERO,
        }
    }
}

/// A running emulator.
pub struct Emulator {
    state: Arc<AppState>,
    addr: SocketAddr,
    server: JoinHandle<()>,
    persister: Option<(Arc<tokio::sync::Mutex<Persister>>, JoinHandle<()>)>,
}

impl Emulator {
    /// Binds 127.0.0.1:`config.port`, loads persisted state if `data_dir` is set, and starts serving.
    pub async fn start(config: Config) -> Result<Emulator, EmulatorError> {
        let listener = TcpListener::bind(("127.0.0.1", config.port))
            .await
            .map_err(|source| EmulatorError::Bind {
                port: config.port,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind {
                port: config.port,
                source,
            })?;
        let state = Arc::new(AppState::new(
            config.gcs_root.clone(),
            config.job_delay,
            config.data_dir.is_some(),
        ));
        let persister = match &config.data_dir {
            Some(dir) => {
                let p = Persister::load(dir, &state).map_err(|message| EmulatorError::Load {
                    path: dir.clone(),
                    message,
                })?;
                let p = Arc::new(tokio::sync::Mutex::new(p));
                let task = tokio::spawn(persist::run(Arc::clone(&state), Arc::clone(&p)));
                Some((p, task))
            }
            None => None,
        };
        let server = tokio::spawn(server::serve(
            listener,
            server::router(Arc::clone(&state)),
            state.shutdown.subscribe(),
        ));
        Ok(Emulator {
            state,
            addr,
            server,
            persister,
        })
    }

    /// `127.0.0.1:PORT`, the value for `BIGQUERY_EMULATOR_HOST`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The fault-injection handle (shared with the `/_emulator/faults` API).
    pub fn faults(&self) -> Faults {
        self.state.faults.clone()
    }

    /// Sets the time each job spends RUNNING before it executes (applies to jobs that start afterwards).
    pub fn set_job_delay(&self, d: Duration) {
        self.state
            .job_delay_ms
            .store(d.as_millis() as u64, Ordering::Relaxed);
    }

    /// Current statistics (same as `GET /_emulator/stats`).
    pub fn stats(&self) -> Stats {
        self.state.stats()
    }

    /// Zeroes the statistics (same as `POST /_emulator/reset`).
    pub fn reset_stats(&self) {
        self.state.reset_stats();
    }

    /// Creates a dataset in `US` if it does not exist.
    pub fn create_dataset(&self, project: &str, dataset: &str) {
        self.create_dataset_in(project, dataset, catalog::DEFAULT_LOCATION);
    }

    /// Creates a dataset in `location` (`US`, `EU`, `asia-northeast1`, ...) if it does not exist.
    pub fn create_dataset_in(&self, project: &str, dataset: &str, location: &str) {
        let mut cat = lock(&self.state.catalog);
        if cat.dataset(project, dataset).is_err() {
            let _ = cat.insert_dataset(
                project,
                &json!({"datasetReference": {"projectId": project, "datasetId": dataset}, "location": location}),
            );
        }
        drop(cat);
        self.state.mark_dirty();
    }

    /// Creates a table; `table_json` is a `tables.insert` body (its `tableReference` may be omitted).
    pub fn create_table(
        &self,
        project: &str,
        dataset: &str,
        table: &str,
        table_json: Value,
    ) -> Result<(), EmulatorError> {
        let mut body = table_json;
        if !body.is_object() {
            body = json!({});
        }
        body["tableReference"] =
            json!({"projectId": project, "datasetId": dataset, "tableId": table});
        lock(&self.state.catalog).insert_table(project, dataset, &body)?;
        self.state.mark_dirty();
        Ok(())
    }

    /// Inserts rows like tabledata.insertAll (all or nothing); `table` may carry a partition decorator.
    pub fn insert_rows(
        &self,
        project: &str,
        dataset: &str,
        table: &str,
        rows: Vec<Map<String, Value>>,
    ) -> Result<(), EmulatorError> {
        let rows: Vec<Value> = rows.into_iter().map(|r| json!({"json": r})).collect();
        let errors = api::insert_all(&self.state, project, dataset, table, &rows, false, false)?;
        if let Some(first) = errors
            .iter()
            .find(|e| e["errors"][0]["reason"] != "stopped")
        {
            let message = format!(
                "row {}: {}",
                first["index"],
                first["errors"][0]["message"].as_str().unwrap_or_default()
            );
            return Err(ApiError::invalid(message).into());
        }
        Ok(())
    }

    /// All rows of a table (or of one partition with `t$ID`), values in wire form (strings / null),
    /// ordered by partition id, then insertion.
    pub fn read_rows(
        &self,
        project: &str,
        dataset: &str,
        table: &str,
    ) -> Result<Vec<Map<String, Value>>, EmulatorError> {
        let (name, dec) = split_decorator(table);
        let (schema, batches) = {
            let cat = lock(&self.state.catalog);
            let t = cat.table(project, dataset, name)?;
            let pid = match dec {
                Some(d) => Some(t.meta.resolve_decorator(d)?),
                None => None,
            };
            (t.meta.schema.clone(), t.batches(pid.as_deref()))
        };
        let wire = api::page_rows(&batches, 0, usize::MAX, false);
        Ok(wire
            .into_iter()
            .map(|row| {
                let cells = row["f"].as_array().cloned().unwrap_or_default();
                schema
                    .iter()
                    .zip(cells)
                    .map(|(f, c)| (f.name.clone(), c.get("v").cloned().unwrap_or(Value::Null)))
                    .collect()
            })
            .collect())
    }

    /// Ids of the table's non-empty partitions, sorted (empty for a non-partitioned table).
    pub fn partition_ids(
        &self,
        project: &str,
        dataset: &str,
        table: &str,
    ) -> Result<Vec<String>, EmulatorError> {
        let cat = lock(&self.state.catalog);
        let t = cat.table(project, dataset, table)?;
        Ok(t.partitions
            .keys()
            .filter(|k| !k.is_empty())
            .cloned()
            .collect())
    }

    /// Every job the emulator has seen, oldest first, as `GET /_emulator/jobs`
    /// lists them (`jobId`, `state`, `destination`, `labels`, `errorResult`, times).
    pub fn jobs(&self) -> Vec<Value> {
        control::job_summaries(&self.state)
    }

    /// Stops serving, closes connections, stops job tasks waiting in their delay, and writes the state
    /// to the data directory (if any).
    pub async fn shutdown(self) {
        self.state.shutdown.send_replace(true);
        let _ = self.server.await;
        if let Some((p, task)) = self.persister {
            let _ = task.await;
            persist::flush(&self.state, &p).await;
        }
    }
}
