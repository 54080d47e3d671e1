//! The audit table: an append-only log of every partition's state changes,
//! and the record of truth for skipping, resuming and adopting work.
//!
//! Append-only because rows in BigQuery's streaming buffer cannot be updated.
//! One row per state change; the latest row per partition is its state.
//! The format is versioned (`record_version`) so older readers can tell.
//!
//! The two operator questions are one query each against the view
//! `<audit table>_latest` this module creates beside it (see README).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::bq::{BigQuery, BqError, NewTable, QueryParam, QueryResult};
use crate::engine::append::{AppendLog, log_table_spec, ts};
use crate::task::settings::TableRef;

pub use crate::planning::state::{PartitionState, Status};

/// Version of the audit record format written by this build.
/// 2: lease rows moved to their own table (`<audit table>_lease`); every
/// audit row is one partition's state change.
/// 3: the statuses VERIFIED and VERIFY_FAILED; the columns `reason` (the
/// operator's reason for a `--rerun`) and `checks` (the verification
/// results as a JSON array of `{name, passed, observed, expected}`).
pub const RECORD_VERSION: i64 = 3;

/// Columns added after record_version 2, all NULLABLE: a run adds the ones
/// an older audit table lacks (tables.patch), and `plan`/`status` read
/// them as NULL until it does.
pub const ADDED_COLUMNS: &[&str] = &["reason", "checks"];

/// One audit row. Fields not relevant to a state are left empty (NULL).
#[derive(Debug, Clone, Default)]
pub struct AuditRow {
    pub partition_id: Option<String>,
    pub status: Option<Status>,
    pub attempt: Option<u32>,
    pub bq_job_id: Option<String>,
    pub fingerprint: Option<String>,
    pub destination: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub rows_written: Option<i64>,
    pub bytes_processed: Option<i64>,
    pub bytes_billed: Option<i64>,
    pub error_reason: Option<String>,
    pub error_message: Option<String>,
    /// Verification results, as JSON text.
    pub checks: Option<String>,
}

impl AuditRow {
    /// A partition's state-change row with the fields every one carries.
    pub fn partition(
        partition_id: &str,
        status: Status,
        attempt: u32,
        bq_job_id: &str,
        fingerprint: &str,
        destination: &str,
    ) -> AuditRow {
        AuditRow {
            partition_id: Some(partition_id.to_string()),
            status: Some(status),
            attempt: Some(attempt),
            bq_job_id: Some(bq_job_id.to_string()),
            fingerprint: Some(fingerprint.to_string()),
            destination: Some(destination.to_string()),
            ..Default::default()
        }
    }

    /// Finished now, with BigQuery's (or our) error reason and message.
    pub fn ended_with(mut self, reason: &str, message: &str) -> AuditRow {
        self.finished_at = Some(Utc::now());
        self.error_reason = Some(reason.to_string());
        self.error_message = Some(message.to_string());
        self
    }
}

/// Errors talking to the audit table.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("audit table {table}: {source}")]
    Api {
        table: String,
        #[source]
        source: BqError,
    },
    #[error("audit table {table} has an unexpected shape: {message}")]
    Shape { table: String, message: String },
    #[error("audit dataset {project}.{dataset} does not exist")]
    MissingDataset { project: String, dataset: String },
}

impl CheckpointError {
    pub fn bq(&self) -> Option<&BqError> {
        match self {
            CheckpointError::Api { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The audit table's columns, in order: (name, type, mode).
pub const COLUMNS: &[(&str, &str, &str)] = &[
    ("record_version", "INT64", "REQUIRED"),
    ("job", "STRING", "REQUIRED"),
    ("partition_id", "STRING", "NULLABLE"),
    ("status", "STRING", "REQUIRED"),
    ("run_id", "STRING", "REQUIRED"),
    ("attempt", "INT64", "NULLABLE"),
    ("bq_job_id", "STRING", "NULLABLE"),
    ("fingerprint", "STRING", "NULLABLE"),
    ("destination", "STRING", "NULLABLE"),
    ("started_at", "TIMESTAMP", "NULLABLE"),
    ("finished_at", "TIMESTAMP", "NULLABLE"),
    ("rows_written", "INT64", "NULLABLE"),
    ("bytes_processed", "INT64", "NULLABLE"),
    ("bytes_billed", "INT64", "NULLABLE"),
    ("error_reason", "STRING", "NULLABLE"),
    ("error_message", "STRING", "NULLABLE"),
    ("tool_version", "STRING", "NULLABLE"),
    ("recorded_at", "TIMESTAMP", "REQUIRED"),
    ("reason", "STRING", "NULLABLE"),
    ("checks", "STRING", "NULLABLE"),
];

/// The table definition used when the audit table is missing: partitioned
/// by day of `recorded_at`, clustered by job and partition.
pub fn table_spec() -> NewTable {
    log_table_spec(
        COLUMNS,
        &["job", "partition_id"],
        format!(
            "bq-backfill audit log (record_version {RECORD_VERSION}): one row per partition state change"
        ),
    )
}

/// The audit log of one backfill job, as seen by one run.
pub struct Checkpoints {
    log: AppendLog,
    job: String,
    /// The run's `--reason`, written into every row.
    reason: Option<String>,
}

impl Checkpoints {
    pub fn new(bq: BigQuery, table: TableRef, job: &str, run_id: &str) -> Self {
        Checkpoints {
            log: AppendLog::new(bq, table, run_id, COLUMNS).with_added_columns(ADDED_COLUMNS),
            job: job.to_string(),
            reason: None,
        }
    }

    /// Every row this run writes carries `reason` (a `--rerun`'s).
    pub fn with_reason(mut self, reason: Option<String>) -> Self {
        self.reason = reason;
        self
    }

    pub fn table(&self) -> &TableRef {
        self.log.table()
    }

    /// Whether the audit table exists (and has our columns).
    pub async fn exists(&self) -> Result<bool, CheckpointError> {
        Ok(self.log.meta().await?.is_some())
    }

    /// Create the audit table if it is missing, and beside it the view
    /// `<audit table>_latest` (one row per job and partition: its latest
    /// state), the one operators query.
    pub async fn ensure_table(&self) -> Result<(), CheckpointError> {
        self.log.ensure(&table_spec()).await?;
        let view = latest_view(self.table());
        if self
            .log
            .bq()
            .get_table(&view)
            .await
            .map_err(|e| self.log.api(e))?
            .is_none()
        {
            self.log
                .create(&view, &latest_view_spec(self.table()))
                .await?;
        }
        Ok(())
    }

    /// Append one row. The insertId is derived from the run and a sequence
    /// number, so a retried insertAll is de-duplicated by BigQuery.
    pub async fn record(&self, row: &AuditRow) -> Result<(), CheckpointError> {
        self.log.append(self.row_json(row)).await
    }

    /// A SUCCEEDED row that rides along with the next row written (the next
    /// partition's RUNNING), or goes at [`Checkpoints::flush`]: one
    /// insertAll per partition instead of two. Lost in a crash, it costs
    /// nothing: the RUNNING row before it names the job, which the next run
    /// finds DONE and records.
    pub fn record_with_next(&self, row: &AuditRow) {
        self.log.defer(self.row_json(row));
    }

    /// Writes rows waiting for the next one (end of run, before a long pause).
    pub async fn flush(&self) -> Result<(), CheckpointError> {
        self.log.flush().await
    }

    fn row_json(&self, r: &AuditRow) -> serde_json::Map<String, Value> {
        let Value::Object(row) = json!({
            "record_version": RECORD_VERSION,
            "job": self.job,
            "partition_id": r.partition_id,
            "status": r.status.map(Status::as_str),
            "run_id": self.log.run_id(),
            "attempt": r.attempt,
            "bq_job_id": r.bq_job_id,
            "fingerprint": r.fingerprint,
            "destination": r.destination,
            "started_at": r.started_at.map(ts),
            "finished_at": r.finished_at.map(ts),
            "rows_written": r.rows_written,
            "bytes_processed": r.bytes_processed,
            "bytes_billed": r.bytes_billed,
            "error_reason": r.error_reason,
            "error_message": r.error_message,
            "tool_version": env!("CARGO_PKG_VERSION"),
            "reason": self.reason,
            "checks": r.checks,
        }) else {
            unreachable!("a JSON object literal")
        };
        row
    }

    /// The latest state of every partition of this job, in ONE query.
    pub async fn latest_states(&self) -> Result<HashMap<String, PartitionState>, CheckpointError> {
        let sql = latest_states_sql(self.table(), &self.log.absent_columns());
        let res = self
            .log
            .query(&sql, &[QueryParam::string("job", &self.job)])
            .await?;
        parse_states(&res).map_err(|message| CheckpointError::Shape {
            table: self.table().to_string(),
            message,
        })
    }
}

/// The view beside the audit table: `<audit table>_latest`.
pub fn latest_view(audit: &TableRef) -> TableRef {
    TableRef {
        table: format!("{}_latest", audit.table),
        ..audit.clone()
    }
}

/// One row per (job, partition_id): its latest status, attempt, BigQuery
/// job ID, error and time, with `attempts` the highest attempt number.
/// Rows without a partition (lease rows of record_version 1) are left out.
pub fn latest_view_sql(audit: &TableRef) -> String {
    format!(
        "SELECT job, partition_id, status, attempt, attempts, bq_job_id, run_id, fingerprint, \
                rows_written, error_reason, error_message, recorded_at \
         FROM (\
           SELECT job, partition_id, status, attempt, bq_job_id, run_id, fingerprint, rows_written, \
                  error_reason, error_message, recorded_at, \
                  MAX(attempt) OVER (PARTITION BY job, partition_id) AS attempts, \
                  ROW_NUMBER() OVER (PARTITION BY job, partition_id ORDER BY recorded_at DESC) AS rn \
           FROM {} WHERE partition_id IS NOT NULL\
         ) AS latest \
         WHERE rn = 1",
        table_path(audit)
    )
}

fn latest_view_spec(audit: &TableRef) -> NewTable {
    NewTable {
        view_query: Some(latest_view_sql(audit)),
        description: Some(format!(
            "bq-backfill: the latest state of every partition in {audit}"
        )),
        ..Default::default()
    }
}

/// Backticked table path. Safe: every part was validated against
/// BigQuery's naming rules (no backticks, quotes, spaces or `$`) when the
/// descriptor was read; identifiers cannot be query parameters.
pub fn table_path(t: &TableRef) -> String {
    format!("`{}.{}.{}`", t.project, t.dataset, t.table)
}

/// The one query that reads every partition's latest state. `absent` are
/// [`ADDED_COLUMNS`] an older table does not have yet: read as NULL.
pub fn latest_states_sql(table: &TableRef, absent: &[&str]) -> String {
    let reason = if absent.contains(&"reason") {
        "CAST(NULL AS STRING) AS reason"
    } else {
        "reason"
    };
    format!(
        "SELECT partition_id, status, fingerprint, attempt, bq_job_id, run_id, recorded_at, max_attempt, \
                error_reason, error_message, reason \
         FROM (\
           SELECT partition_id, status, fingerprint, attempt, bq_job_id, run_id, recorded_at, \
                  error_reason, error_message, {reason}, \
                  ROW_NUMBER() OVER (PARTITION BY partition_id ORDER BY recorded_at DESC) AS rn, \
                  MAX(attempt) OVER (PARTITION BY partition_id) AS max_attempt \
           FROM {} \
           WHERE job = @job AND partition_id IS NOT NULL\
         ) AS latest \
         WHERE rn = 1",
        table_path(table),
    )
}

/// Parse a BigQuery TIMESTAMP cell (float seconds or int64 micros string).
pub fn parse_timestamp_cell(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(secs) = s.parse::<f64>() {
        let micros = (secs * 1_000_000.0).round() as i64;
        return DateTime::from_timestamp_micros(micros);
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

fn parse_states(res: &QueryResult) -> Result<HashMap<String, PartitionState>, String> {
    let col = |name: &str| {
        res.fields
            .iter()
            .position(|f| f == name)
            .ok_or_else(|| format!("no column {name}"))
    };
    let (c_pid, c_status, c_fp, c_att, c_job, c_run, c_rec, c_max) = (
        col("partition_id")?,
        col("status")?,
        col("fingerprint")?,
        col("attempt")?,
        col("bq_job_id")?,
        col("run_id")?,
        col("recorded_at")?,
        col("max_attempt")?,
    );
    let (c_reason, c_message) = (col("error_reason")?, col("error_message")?);
    let c_rerun = col("reason")?;
    let mut out = HashMap::new();
    for row in &res.rows {
        let get = |i: usize| row.get(i).cloned().flatten();
        let Some(pid) = get(c_pid) else { continue };
        let status_s = get(c_status).unwrap_or_default();
        let status = Status::parse(&status_s)
            .ok_or_else(|| format!("unknown status {status_s:?} for {pid}"))?;
        let num = |i: usize| get(i).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
        out.insert(
            pid,
            PartitionState {
                status,
                fingerprint: get(c_fp),
                attempt: num(c_att),
                bq_job_id: get(c_job),
                run_id: get(c_run).unwrap_or_default(),
                recorded_at: get(c_rec).as_deref().and_then(parse_timestamp_cell),
                max_attempt: num(c_max),
                error: match (get(c_reason), get(c_message)) {
                    (Some(r), Some(m)) => Some(format!("{r}: {m}")),
                    (r, m) => r.or(m),
                },
                rerun_reason: get(c_rerun),
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> TableRef {
        TableRef {
            project: "p".into(),
            dataset: "ops".into(),
            table: "audit".into(),
        }
    }

    #[test]
    fn queries_take_the_job_as_a_parameter_never_as_text() {
        let sql = latest_states_sql(&t(), &[]);
        assert!(sql.contains("@job"), "{sql}");
        assert!(sql.contains("`p.ops.audit`"), "{sql}");
        // The view reads the table by path only: no value is spliced in.
        let view = latest_view_sql(&t());
        assert!(
            view.contains("FROM `p.ops.audit` WHERE partition_id IS NOT NULL"),
            "{view}"
        );
        assert_eq!(latest_view(&t()).table, "audit_latest");
    }

    #[test]
    fn latest_state_rows_parse() {
        let res = QueryResult {
            fields: [
                "partition_id",
                "status",
                "fingerprint",
                "attempt",
                "bq_job_id",
                "run_id",
                "recorded_at",
                "max_attempt",
                "error_reason",
                "error_message",
                "reason",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            rows: vec![vec![
                Some("20240115".into()),
                Some("SUCCEEDED".into()),
                Some("abc".into()),
                Some("2".into()),
                Some("bqb_x".into()),
                Some("r1".into()),
                Some("1705287600.5".into()),
                Some("3".into()),
                Some("invalidQuery".into()),
                Some("Syntax error".into()),
                Some("late events".into()),
            ]],
        };
        let states = parse_states(&res).unwrap();
        let s = &states["20240115"];
        assert_eq!(s.error.as_deref(), Some("invalidQuery: Syntax error"));
        assert_eq!(s.rerun_reason.as_deref(), Some("late events"));
        assert_eq!(s.status, Status::Succeeded);
        assert_eq!((s.attempt, s.max_attempt), (2, 3));
        assert_eq!(
            s.recorded_at.unwrap().timestamp_micros(),
            1_705_287_600_500_000
        );
    }

    #[test]
    fn audit_schema_has_the_documented_columns() {
        let names: Vec<&str> = COLUMNS.iter().map(|c| c.0).collect();
        for required in [
            "job",
            "partition_id",
            "status",
            "run_id",
            "attempt",
            "bq_job_id",
            "fingerprint",
            "destination",
            "started_at",
            "finished_at",
            "rows_written",
            "bytes_processed",
            "bytes_billed",
            "error_reason",
            "error_message",
            "tool_version",
            "recorded_at",
            "checks",
        ] {
            assert!(names.contains(&required), "{required}");
        }
        let spec = table_spec();
        assert_eq!(spec.partition_day_field.as_deref(), Some("recorded_at"));
        assert_eq!(spec.clustering, vec!["job", "partition_id"]);
    }
}
