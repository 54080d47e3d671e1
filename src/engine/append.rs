//! An append-only BigQuery table written by one run: the mechanics the
//! audit log and the lease log share.
//!
//! Append-only because rows in BigQuery's streaming buffer cannot be
//! updated. Each row gets a strictly increasing `recorded_at` within the run
//! (so "latest row" never ties) and an insertId from the run and a sequence
//! number (so a retried insertAll is de-duplicated by BigQuery).

use std::sync::Mutex;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

use crate::bq::{BigQuery, BqError, FieldSpec, NewTable, QueryParam, QueryResult, TableMeta};
use crate::engine::checkpoint::CheckpointError;
use crate::task::settings::TableRef;

/// One append-only table, as seen by one run.
pub struct AppendLog {
    bq: BigQuery,
    table: TableRef,
    run_id: String,
    /// Columns the table must have: (name, type, mode).
    columns: &'static [(&'static str, &'static str, &'static str)],
    /// Columns a newer format added: an older table may lack them.
    added: &'static [&'static str],
    /// Added columns the table lacks, as last seen by [`AppendLog::meta`].
    absent: Mutex<Vec<&'static str>>,
    last_recorded: Mutex<DateTime<Utc>>,
    seq: Mutex<u64>,
    /// Rows whose write may wait for the next one (see [`AppendLog::defer`]).
    deferred: Mutex<Vec<(String, Value)>>,
}

impl AppendLog {
    pub fn new(
        bq: BigQuery,
        table: TableRef,
        run_id: &str,
        columns: &'static [(&'static str, &'static str, &'static str)],
    ) -> Self {
        AppendLog {
            bq,
            table,
            run_id: run_id.to_string(),
            columns,
            added: &[],
            absent: Mutex::new(Vec::new()),
            last_recorded: Mutex::new(DateTime::<Utc>::MIN_UTC),
            seq: Mutex::new(0),
            deferred: Mutex::new(Vec::new()),
        }
    }

    /// `added` of the columns are NULLABLE ones a newer record format
    /// added: a table without them is upgraded by [`AppendLog::ensure`],
    /// and read as if they were NULL until then.
    pub fn with_added_columns(mut self, added: &'static [&'static str]) -> Self {
        self.added = added;
        self
    }

    /// Added columns the table did not have when last looked at.
    pub fn absent_columns(&self) -> Vec<&'static str> {
        self.absent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn table(&self) -> &TableRef {
        &self.table
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn bq(&self) -> &BigQuery {
        &self.bq
    }

    pub(crate) fn api(&self, source: BqError) -> CheckpointError {
        CheckpointError::Api {
            table: self.table.to_string(),
            source,
        }
    }

    /// The table's metadata, if it exists (checking it has our columns; of
    /// the added ones, which it lacks: see [`AppendLog::absent_columns`]).
    pub async fn meta(&self) -> Result<Option<TableMeta>, CheckpointError> {
        let Some(meta) = self
            .bq
            .get_table(&self.table)
            .await
            .map_err(|e| self.api(e))?
        else {
            return Ok(None);
        };
        let (absent, missing): (Vec<&'static str>, Vec<&'static str>) = self
            .columns
            .iter()
            .map(|c| c.0)
            .filter(|c| !meta.schema.iter().any(|(n, _)| n == c))
            .partition(|c| self.added.contains(c));
        *self.absent.lock().unwrap_or_else(|e| e.into_inner()) = absent;
        if missing.is_empty() {
            Ok(Some(meta))
        } else {
            Err(CheckpointError::Shape {
                table: self.table.to_string(),
                message: format!("missing columns {}", missing.join(", ")),
            })
        }
    }

    /// Create the table from `spec` if it is missing, and return its
    /// incarnation: its creation time, which changes when the table is
    /// dropped and recreated. The dataset must exist: creating datasets (and
    /// choosing their location) is the operator's call.
    /// An existing table that lacks added columns gets them first.
    pub async fn ensure(&self, spec: &NewTable) -> Result<String, CheckpointError> {
        let meta = match self.meta().await? {
            Some(_) if !self.absent_columns().is_empty() => self.upgrade().await?,
            Some(meta) => meta,
            None => {
                self.create(&self.table, spec).await?;
                // Read back for the creation time (also when a concurrent
                // runner created it first).
                self.meta().await?.ok_or_else(|| CheckpointError::Shape {
                    table: self.table.to_string(),
                    message: "created but not found".into(),
                })?
            }
        };
        Ok(meta
            .creation_time
            .map_or_else(|| "0".into(), |c| c.to_string()))
    }

    /// Adds the absent columns (NULLABLE, as a newer format defines them)
    /// and reads the table back.
    async fn upgrade(&self) -> Result<TableMeta, CheckpointError> {
        let absent = self.absent_columns();
        let fields: Vec<FieldSpec> = self
            .columns
            .iter()
            .filter(|c| absent.contains(&c.0))
            .map(|(name, ty, _)| FieldSpec {
                name: name.to_string(),
                field_type: ty.to_string(),
                mode: "NULLABLE".into(),
            })
            .collect();
        tracing::info!(table = %self.table, columns = ?absent, "adding the columns a newer audit format needs");
        self.bq
            .add_columns(&self.table, &fields)
            .await
            .map_err(|e| self.api(e))?;
        let meta = self.meta().await?;
        match meta {
            Some(meta) if self.absent_columns().is_empty() => Ok(meta),
            _ => Err(CheckpointError::Shape {
                table: self.table.to_string(),
                message: format!("columns {} could not be added", absent.join(", ")),
            }),
        }
    }

    /// Create `table` (this one, or a view beside it) unless it exists.
    pub async fn create(&self, table: &TableRef, spec: &NewTable) -> Result<(), CheckpointError> {
        match self.bq.create_table(table, spec).await {
            Ok(_) => Ok(()),
            Err(e) if e.reason() == "notFound" => Err(CheckpointError::MissingDataset {
                project: table.project.clone(),
                dataset: table.dataset.clone(),
            }),
            Err(e) => Err(CheckpointError::Api {
                table: table.to_string(),
                source: e,
            }),
        }
    }

    fn next_recorded_at(&self) -> DateTime<Utc> {
        let mut last = lock(&self.last_recorded);
        let mut now = Utc::now();
        if now <= *last {
            now = *last + chrono::Duration::microseconds(1);
        }
        *last = now;
        now
    }

    /// Append one row (and any deferred ones, in the same insertAll);
    /// `recorded_at` is set here.
    pub async fn append(&self, row: serde_json::Map<String, Value>) -> Result<(), CheckpointError> {
        let row = self.stamp(row);
        let mut rows = std::mem::take(&mut *lock(&self.deferred));
        rows.push(row);
        self.send(rows).await
    }

    /// Stamps `row` now (its `recorded_at` and insertId keep its place in
    /// the order) but writes it with the next row appended, or at
    /// [`AppendLog::flush`]: one insertAll less per row that can wait. Only
    /// for rows whose loss in a crash is harmless, because the row before
    /// them names a job the next run looks up (a SUCCEEDED after RUNNING).
    pub fn defer(&self, row: serde_json::Map<String, Value>) {
        let row = self.stamp(row);
        lock(&self.deferred).push(row);
    }

    /// Writes the deferred rows, if any.
    pub async fn flush(&self) -> Result<(), CheckpointError> {
        let rows = std::mem::take(&mut *lock(&self.deferred));
        if rows.is_empty() {
            return Ok(());
        }
        self.send(rows).await
    }

    /// The row with its `recorded_at`, and its insertId from the run and a
    /// sequence number.
    fn stamp(&self, mut row: serde_json::Map<String, Value>) -> (String, Value) {
        row.insert("recorded_at".into(), ts(self.next_recorded_at()).into());
        let seq = {
            let mut s = lock(&self.seq);
            *s += 1;
            *s
        };
        (format!("{}-{}", self.run_id, seq), Value::Object(row))
    }

    /// One insertAll; rows that did not land go back to be deferred, so a
    /// later flush can try again (the insertIds de-duplicate).
    async fn send(&self, rows: Vec<(String, Value)>) -> Result<(), CheckpointError> {
        match self.bq.insert_rows(&self.table, &rows).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let mut deferred = lock(&self.deferred);
                let later = std::mem::replace(&mut *deferred, rows);
                deferred.extend(later);
                Err(self.api(e))
            }
        }
    }

    /// Run a query against the table.
    pub async fn query(
        &self,
        sql: &str,
        params: &[QueryParam],
    ) -> Result<QueryResult, CheckpointError> {
        self.bq.query(sql, params).await.map_err(|e| self.api(e))
    }
}

/// The definition of an append-only log table: these columns, partitioned
/// by day of `recorded_at` (so old rows can expire by partition), clustered
/// as given.
pub fn log_table_spec(
    columns: &[(&str, &str, &str)],
    clustering: &[&str],
    description: String,
) -> NewTable {
    NewTable {
        schema: columns
            .iter()
            .map(|(name, ty, mode)| FieldSpec {
                name: name.to_string(),
                field_type: ty.to_string(),
                mode: mode.to_string(),
            })
            .collect(),
        partition_day_field: Some("recorded_at".into()),
        clustering: clustering.iter().map(|c| c.to_string()).collect(),
        description: Some(description),
        view_query: None,
    }
}

/// A TIMESTAMP as insertAll takes it.
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
