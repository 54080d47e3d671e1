//! The emulator's shared state and the SQL engine's view of it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::catalog::{Catalog, TableKey, split_decorator};
use crate::data::{RecordBatch, SchemaRef};
use crate::faults::Faults;
use crate::jobs::JobStore;
use crate::sql::TableSource;
use crate::stats::{Counters, Stats};
use crate::util::lock;

/// Everything the HTTP handlers, job tasks and the library handle share.
///
/// Lock order (never take an earlier one while holding a later one): `jobs` → `catalog` → `counters`.
pub struct AppState {
    /// Datasets and tables.
    pub catalog: Mutex<Catalog>,
    /// Jobs.
    pub jobs: Mutex<JobStore>,
    /// Request and job counters.
    pub counters: Mutex<Counters>,
    /// Fault injection.
    pub faults: Faults,
    /// Time every job spends RUNNING before it executes, in milliseconds.
    pub job_delay_ms: AtomicU64,
    /// Directory `gs://bucket/path` maps to (`<root>/bucket/path`).
    pub gcs_root: Option<PathBuf>,
    /// Wakes the persister after a mutation (`None` when state is in memory only).
    pub persist_notify: Option<Arc<Notify>>,
    /// Flips to `true` when the emulator shuts down.
    pub shutdown: watch::Sender<bool>,
}

impl AppState {
    /// Fresh, empty state.
    pub fn new(gcs_root: Option<PathBuf>, job_delay: Duration, persist: bool) -> AppState {
        AppState {
            catalog: Mutex::new(Catalog::default()),
            jobs: Mutex::new(JobStore::default()),
            counters: Mutex::new(Counters::default()),
            faults: Faults::default(),
            job_delay_ms: AtomicU64::new(job_delay.as_millis() as u64),
            gcs_root,
            persist_notify: persist.then(|| Arc::new(Notify::new())),
            shutdown: watch::channel(false).0,
        }
    }

    /// The current per-job execution delay.
    pub fn job_delay(&self) -> Duration {
        Duration::from_millis(self.job_delay_ms.load(Ordering::Relaxed))
    }

    /// Records that state changed, so the persister writes it soon.
    pub fn mark_dirty(&self) {
        if let Some(n) = &self.persist_notify {
            n.notify_one();
        }
    }

    /// Counts a request of a BigQuery method, with its `Authorization` and `x-goog-user-project` headers.
    pub fn count_request(&self, method: &str, authorization: &str, user_project: &str) {
        lock(&self.counters).request(method, authorization, user_project);
    }

    /// Counts a job call of `method` whose `location` (parameter or body field) is `location`.
    pub fn note_job_call(&self, method: &str, location: Option<&str>) {
        if location.is_none_or(str::is_empty) {
            lock(&self.counters).job_call_without_location(method);
        }
    }

    /// Current statistics.
    pub fn stats(&self) -> Stats {
        let by_state = {
            let reset_seq = lock(&self.counters).reset_seq;
            lock(&self.jobs).count_by_state(reset_seq)
        };
        let mut stats = lock(&self.counters).stats.clone();
        stats.jobs_by_state = by_state;
        stats.faults_injected = self.faults.injected();
        stats
    }

    /// Zeroes the counters; job-state counts restart with jobs created from now on.
    pub fn reset_stats(&self) {
        let seq = lock(&self.jobs).seq;
        let mut c = lock(&self.counters);
        *c = Counters {
            reset_seq: seq,
            ..Counters::default()
        };
        self.faults.reset_counters();
    }
}

/// A lazily filled, per-query snapshot of the catalog: each table is copied (cheap `Arc` clones) the first
/// time the engine asks for it, and the same copy is served for the rest of the query.
pub struct Snapshot {
    state: Arc<AppState>,
    cache: Mutex<HashMap<TableKey, Option<TableData>>>,
}

/// A table's schema and rows as handed to the SQL engine.
type TableData = (SchemaRef, Vec<RecordBatch>);

impl Snapshot {
    /// A snapshot over `state`.
    pub fn new(state: Arc<AppState>) -> Snapshot {
        Snapshot {
            state,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

impl TableSource for Snapshot {
    fn partitioned(
        &self,
        project: &str,
        dataset: &str,
        table: &str,
    ) -> Option<(String, Vec<Vec<RecordBatch>>)> {
        if split_decorator(table).1.is_some() {
            return None;
        }
        let cat = lock(&self.state.catalog);
        let t = cat
            .tables
            .get(&(project.to_string(), dataset.to_string(), table.to_string()))?;
        let column = match &t.meta.partitioning {
            crate::catalog::Partitioning::Time { field: Some(f), .. } => f.clone(),
            crate::catalog::Partitioning::Range { field, .. } => field.clone(),
            _ => return None,
        };
        Some((column, t.partitions.values().cloned().collect()))
    }

    fn table(
        &self,
        project: &str,
        dataset: &str,
        table: &str,
    ) -> Option<(SchemaRef, Vec<RecordBatch>)> {
        let key = (project.to_string(), dataset.to_string(), table.to_string());
        if let Some(hit) = lock(&self.cache).get(&key) {
            return hit.clone();
        }
        let (name, decorator) = split_decorator(table);
        let found = {
            let cat = lock(&self.state.catalog);
            cat.tables
                .get(&(project.to_string(), dataset.to_string(), name.to_string()))
                .and_then(|t| {
                    let pid = match decorator {
                        Some(d) => Some(t.meta.resolve_decorator(d).ok()?),
                        None => None,
                    };
                    Some((t.arrow.clone(), t.batches(pid.as_deref())))
                })
        };
        lock(&self.cache).entry(key).or_insert(found).clone()
    }

    fn view(&self, project: &str, dataset: &str, table: &str) -> Option<String> {
        let (name, _) = split_decorator(table);
        let cat = lock(&self.state.catalog);
        cat.tables
            .get(&(project.to_string(), dataset.to_string(), name.to_string()))
            .and_then(|t| t.meta.view.as_ref())
            .map(|v| v.query.clone())
    }
}
