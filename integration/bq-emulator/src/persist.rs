//! Optional persistence under `--data DIR`.
//!
//! Layout: `DIR/state.json` (datasets, table metadata, jobs) and `DIR/tables/<table>-<generation>.arrow`
//! (one Arrow IPC file per table version, batches grouped by partition as listed in state.json). Every file
//! is written to a temporary name, fsynced and renamed, and state.json is renamed last, so a kill at any
//! point leaves either the previous or the new consistent snapshot. Files no longer referenced are removed
//! after state.json is replaced.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;
use serde::{Deserialize, Serialize};

use crate::catalog::{DatasetMeta, Table, TableKey, TableMeta};
use crate::data::{self, RecordBatch, SchemaRef};
use crate::error::ErrorProto;
use crate::jobs::{JobData, JobState};
use crate::state::AppState;
use crate::util::{lock, now_millis};

const STATE_FILE: &str = "state.json";
const TABLES_DIR: &str = "tables";
const FORMAT_VERSION: u32 = 1;
/// Mutations within this window are written together.
const DEBOUNCE: Duration = Duration::from_millis(20);

#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    datasets: Vec<DatasetMeta>,
    tables: Vec<TableEntry>,
    jobs: Vec<JobData>,
}

#[derive(Serialize, Deserialize)]
struct TableEntry {
    meta: TableMeta,
    generation: u64,
    file: Option<String>,
    /// `(partition id, number of batches)` in file order.
    partitions: Vec<(String, usize)>,
}

/// What is on disk for one table: generation, file name, partition layout.
type OnDisk = (u64, Option<String>, Vec<(String, usize)>);
/// A table captured for writing; partitions only when the table changed since the last write.
type TableSnap = (
    TableKey,
    TableMeta,
    u64,
    SchemaRef,
    Option<Vec<(String, Vec<RecordBatch>)>>,
);

/// Writes snapshots of the state to the data directory.
pub struct Persister {
    dir: PathBuf,
    /// Table → what is already on disk.
    written: HashMap<TableKey, OnDisk>,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> String {
    format!("{}: {e}", path.display())
}

fn file_stem(key: &TableKey) -> String {
    let raw = format!("{}.{}.{}", key.0, key.1, key.2);
    let mut out = String::new();
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.' {
            out.push(b as char);
        } else {
            out.push_str(&format!("~{b:02x}"));
        }
    }
    out
}

fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut File) -> Result<(), String>,
) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
    write(&mut f)?;
    f.sync_all().map_err(|e| io_err(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))
}

fn read_table_file(path: &Path, schema: &SchemaRef) -> Result<Vec<RecordBatch>, String> {
    let f = File::open(path).map_err(|e| io_err(path, e))?;
    let reader = FileReader::try_new(f, None).map_err(|e| io_err(path, e))?;
    let mut out = Vec::new();
    for b in reader {
        let b = b.map_err(|e| io_err(path, e))?;
        out.push(crate::catalog::rebase(b, schema).map_err(|e| io_err(path, e))?);
    }
    Ok(out)
}

impl Persister {
    /// Loads `dir` into `st` (empty state if the directory has no state yet) and returns the persister.
    /// Jobs that were not DONE when the previous process stopped come back DONE with errorResult
    /// `backendError` "job interrupted by emulator restart"; they are not resumed.
    pub fn load(dir: &Path, st: &AppState) -> Result<Persister, String> {
        std::fs::create_dir_all(dir.join(TABLES_DIR)).map_err(|e| io_err(dir, e))?;
        let mut persister = Persister {
            dir: dir.to_path_buf(),
            written: HashMap::new(),
        };
        let state_path = dir.join(STATE_FILE);
        if !state_path.exists() {
            return Ok(persister);
        }
        let text = std::fs::read_to_string(&state_path).map_err(|e| io_err(&state_path, e))?;
        let file: StateFile = serde_json::from_str(&text).map_err(|e| io_err(&state_path, e))?;
        if file.version != FORMAT_VERSION {
            return Err(format!(
                "{}: unsupported format version {}",
                state_path.display(),
                file.version
            ));
        }
        let mut cat = lock(&st.catalog);
        for d in file.datasets {
            cat.datasets
                .insert((d.project.clone(), d.dataset.clone()), d);
        }
        for t in file.tables {
            let key = (
                t.meta.project.clone(),
                t.meta.dataset.clone(),
                t.meta.table.clone(),
            );
            let arrow = data::to_arrow_schema(&t.meta.schema)
                .map_err(|e| format!("table {}: {e}", t.meta.display()))?;
            let mut partitions = BTreeMap::new();
            if let Some(name) = &t.file {
                let path = dir.join(TABLES_DIR).join(name);
                let mut batches = read_table_file(&path, &arrow)?.into_iter();
                for (pid, n) in &t.partitions {
                    let part: Vec<RecordBatch> = batches.by_ref().take(*n).collect();
                    partitions.insert(pid.clone(), part);
                }
            }
            cat.bump_counter(t.generation);
            persister.written.insert(
                key.clone(),
                (t.generation, t.file.clone(), t.partitions.clone()),
            );
            cat.tables.insert(
                key,
                Table {
                    meta: t.meta,
                    arrow,
                    partitions,
                    meta_version: t.generation,
                    generation: t.generation,
                },
            );
        }
        drop(cat);
        let mut jobs = lock(&st.jobs);
        let now = now_millis();
        for mut j in file.jobs {
            if j.state != JobState::Done {
                let e = ErrorProto::new("backendError", "job interrupted by emulator restart");
                j.state = JobState::Done;
                j.start_time.get_or_insert(now);
                j.end_time = Some(now);
                j.errors = vec![e.clone()];
                j.error_result = Some(e);
            }
            jobs.restore(j);
        }
        Ok(persister)
    }

    /// Writes the current state (only tables that changed since the last write get a new file).
    pub fn write(&mut self, st: &AppState) -> Result<(), String> {
        // Snapshot under the locks (cheap clones), write without them.
        let (jobs, datasets, tables) = {
            let jobs = lock(&st.jobs);
            let cat = lock(&st.catalog);
            let job_data: Vec<JobData> = {
                let mut v: Vec<JobData> = jobs.jobs.values().map(|j| j.data.clone()).collect();
                v.sort_by_key(|j| j.seq);
                v
            };
            let datasets: Vec<DatasetMeta> = cat.datasets.values().cloned().collect();
            let tables: Vec<TableSnap> = cat
                .tables
                .iter()
                .map(|(k, t)| {
                    let changed = self
                        .written
                        .get(k)
                        .is_none_or(|(g, _, _)| *g != t.generation);
                    let parts = changed.then(|| {
                        t.partitions
                            .iter()
                            .map(|(p, b)| (p.clone(), b.clone()))
                            .collect()
                    });
                    (
                        k.clone(),
                        t.meta.clone(),
                        t.generation,
                        t.arrow.clone(),
                        parts,
                    )
                })
                .collect();
            (job_data, datasets, tables)
        };
        let tables_dir = self.dir.join(TABLES_DIR);
        let mut entries = Vec::new();
        let mut written = HashMap::new();
        for (key, meta, generation, arrow, parts) in tables {
            let (file, layout) = match parts {
                None => {
                    let (_, f, l) = self.written[&key].clone();
                    (f, l)
                }
                Some(parts) if parts.iter().all(|(_, b)| b.is_empty()) => (None, Vec::new()),
                Some(parts) => {
                    let name = format!("{}-{generation}.arrow", file_stem(&key));
                    let path = tables_dir.join(&name);
                    let layout: Vec<(String, usize)> =
                        parts.iter().map(|(p, b)| (p.clone(), b.len())).collect();
                    write_atomic(&path, |f| {
                        let mut w = FileWriter::try_new(f, &arrow).map_err(|e| io_err(&path, e))?;
                        for (_, batches) in &parts {
                            for b in batches {
                                w.write(b).map_err(|e| io_err(&path, e))?;
                            }
                        }
                        w.finish().map_err(|e| io_err(&path, e))
                    })?;
                    (Some(name), layout)
                }
            };
            written.insert(key, (generation, file.clone(), layout.clone()));
            entries.push(TableEntry {
                meta,
                generation,
                file,
                partitions: layout,
            });
        }
        let state = StateFile {
            version: FORMAT_VERSION,
            datasets,
            tables: entries,
            jobs,
        };
        let state_path = self.dir.join(STATE_FILE);
        let text = serde_json::to_vec(&state).map_err(|e| io_err(&state_path, e))?;
        write_atomic(&state_path, |f| {
            f.write_all(&text).map_err(|e| io_err(&state_path, e))
        })?;
        let keep: HashSet<String> = written.values().filter_map(|(_, f, _)| f.clone()).collect();
        self.written = written;
        if let Ok(dir) = std::fs::read_dir(&tables_dir) {
            for entry in dir.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                if !keep.contains(&name) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }
}

/// Writes state whenever it changes (debounced) until shutdown.
pub async fn run(st: Arc<AppState>, persister: Arc<tokio::sync::Mutex<Persister>>) {
    let Some(notify) = st.persist_notify.clone() else {
        return;
    };
    let mut shutdown = st.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = notify.notified() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        tokio::time::sleep(DEBOUNCE).await;
        flush(&st, &persister).await;
    }
}

/// Writes the state now.
pub async fn flush(st: &Arc<AppState>, persister: &Arc<tokio::sync::Mutex<Persister>>) {
    let mut guard = persister.clone().lock_owned().await;
    let st = Arc::clone(st);
    let res = tokio::task::spawn_blocking(move || guard.write(&st)).await;
    match res {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!("cannot persist emulator state: {e}"),
        Err(e) => tracing::error!("cannot persist emulator state: {e}"),
    }
}
