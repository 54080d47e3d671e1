//! Resolved run settings: the descriptor after validation, with defaults
//! applied, the environment merged and command-line overrides taken.
//!
//! Everything downstream (planning, the write strategy, the run loop) reads
//! only these types, never the raw descriptor.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::bq::retry::RetryPolicy;
use crate::planning::partition::PartitionSpec;

/// A fully-qualified table: `project.dataset.table`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct TableRef {
    pub project: String,
    pub dataset: String,
    pub table: String,
}

impl TableRef {
    /// One partition of this table: `table$ID` (BigQuery's partition
    /// decorator). Its display is `project.dataset.table$ID`. The one place
    /// decorators are built.
    pub fn partition(&self, id: &str) -> TableRef {
        TableRef {
            table: format!("{}${id}", self.table),
            ..self.clone()
        }
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.project, self.dataset, self.table)
    }
}

/// Where the rows of one partition come from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// GoogleSQL receiving the partition through named parameters only:
    /// `@partition_id` STRING, `@partition_date` DATE,
    /// `@partition_start` / `@partition_end` TIMESTAMP (integer ranges:
    /// `@partition_id` STRING, `@partition_start` / `@partition_end` INT64).
    Query { sql: String },
    /// A load job from URI templates (`{partition_date}` etc. expanded).
    Load(LoadSource),
    /// A copy job from the same partition of another table.
    Copy { table: TableRef },
}

/// Load-job options that affect the partition's contents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadSource {
    /// URI templates; placeholders: `{partition_id}`, `{partition_date}`,
    /// `{year}`, `{month}`, `{day}`, `{hour}` (integer ranges:
    /// `{partition_id}`, `{partition_start}`, `{partition_end}`).
    pub uris: Vec<String>,
    /// BigQuery's `sourceFormat`: NEWLINE_DELIMITED_JSON, CSV, PARQUET, AVRO, ORC.
    pub format: String,
    pub skip_leading_rows: Option<u32>,
    pub field_delimiter: Option<String>,
    pub allow_jagged_rows: Option<bool>,
    pub allow_quoted_newlines: Option<bool>,
    pub ignore_unknown_values: Option<bool>,
    pub max_bad_records: Option<u32>,
    pub null_marker: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Priority {
    Interactive,
    Batch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    Stop,
    Continue,
}

/// Pause after each partition: max(pause_seconds, pause_ratio × runtime).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Throttle {
    pub pause_seconds: f64,
    pub pause_ratio: f64,
    /// Partition jobs started in any 10 s at most, across every slot, if set.
    pub partition_writes_per_10s: Option<u32>,
}

impl Throttle {
    /// BigQuery's limit: about 50 partition modifications per table per 10 s.
    pub const DEFAULT_WRITES_PER_10S: u32 = 50;

    /// The limit on partition job starts per 10 s with `slots` slots: the
    /// configured one, else BigQuery's when several slots run (one slot
    /// waits for each job; a rate-limit error is retried with backoff).
    pub fn writes_per_10s(&self, slots: usize) -> Option<u32> {
        self.partition_writes_per_10s
            .or((slots > 1).then_some(Self::DEFAULT_WRITES_PER_10S))
    }

    /// The pause after a partition that ran for `runtime`.
    pub fn pause_after(&self, runtime: Duration) -> Duration {
        let secs = self
            .pause_seconds
            .max(self.pause_ratio * runtime.as_secs_f64());
        Duration::from_secs_f64(secs.max(0.0))
    }
}

/// Job options that do not change a partition's contents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobOptions {
    pub priority: Priority,
    pub maximum_bytes_billed: Option<i64>,
    /// User labels (validated against BigQuery's label rules); the tool adds
    /// its own `bq-backfill-*` labels on top.
    pub labels: BTreeMap<String, String>,
}

/// The run lease that keeps two runners off one job.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LeaseOptions {
    /// A lease not renewed for this long is expired and may be taken over.
    pub ttl: Duration,
}

/// One verification check, run for every partition before it counts as
/// done (see `engine::verify`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// Unique among the checks; recorded in the audit log and events.
    pub name: String,
    /// GoogleSQL receiving the partition parameters; `{target}` stands for
    /// the table being checked (replaced by its backticked path).
    pub query: String,
    pub expect: Expect,
}

/// What a check's query must return.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// No rows at all (e.g. duplicate or NULL keys).
    ZeroRows,
    /// One scalar in `[min, max]` (either bound may be open).
    RowCount { min: Option<i64>, max: Option<i64> },
    /// One number within this many percent of the same query against the
    /// destination's partition as it is before the write.
    WithinPercentOfCurrent(f64),
    /// One scalar equal to the scalar of this query (e.g. over the source).
    EqualsQuery(String),
}

impl Expect {
    /// The expectation as written in the descriptor, for `plan`.
    pub fn describe(&self) -> String {
        match self {
            Expect::ZeroRows => "zero_rows".into(),
            Expect::RowCount { min, max } => {
                let bound = |b: &Option<i64>| b.map_or("-".to_string(), |n| n.to_string());
                format!("row_count [{}, {}]", bound(min), bound(max))
            }
            Expect::WithinPercentOfCurrent(p) => format!("within_percent_of_current {p}"),
            Expect::EqualsQuery(_) => "equals_query".into(),
        }
    }
}

impl Settings {
    /// The write strategy, for `plan`.
    pub fn describe_write(&self) -> String {
        match &self.write {
            WriteMode::Direct if self.verify.is_empty() => "direct".into(),
            WriteMode::Direct => "direct (the checks run after the write)".into(),
            WriteMode::Staged { staging } => {
                format!("staged in {staging}, published by a copy job once every check passed")
            }
        }
    }

    /// One line per check, for `plan`: `name: expectation`.
    pub fn describe_checks(&self) -> Vec<String> {
        self.verify
            .iter()
            .map(|c| format!("{}: {}", c.name, c.expect.describe()))
            .collect()
    }
}

/// How a partition's rows reach the destination.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// The job writes `destination$P`; checks run afterwards and report.
    Direct,
    /// The job writes `staging$P`; checks run there; a copy job publishes
    /// `staging$P → destination$P` only when every check passed.
    Staged { staging: TableRef },
}

/// Everything a run needs, resolved and validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    /// Stable name of the backfill: the key in the audit log.
    pub job: String,
    /// Project that runs (and is billed for) the jobs.
    pub project: String,
    pub location: Option<String>,
    pub destination: TableRef,
    pub partitions: PartitionSpec,
    pub source: Source,
    pub checkpoint_table: TableRef,
    pub throttle: Throttle,
    pub job_options: JobOptions,
    pub on_failure: OnFailure,
    pub retry: RetryPolicy,
    /// No partition starts once this much time has passed since the run began.
    pub max_runtime: Option<Duration>,
    pub lease: LeaseOptions,
    /// `--rerun --reason TEXT`: rebuild partitions that already succeeded,
    /// unless their latest success was recorded with this same reason.
    pub rerun: Option<String>,
    /// Partitions run at once (1: one after the other).
    pub concurrency: u32,
    /// Checks run for every partition (empty: none).
    pub verify: Vec<Check>,
    pub write: WriteMode,
}

impl Settings {
    /// The table a partition's job writes: the staging table in staged
    /// mode, else the destination.
    pub fn write_target(&self) -> &TableRef {
        match &self.write {
            WriteMode::Direct => &self.destination,
            WriteMode::Staged { staging } => staging,
        }
    }
}

/// When the process started, as seen by the settings resolver (for tests).
pub type Now = DateTime<Utc>;
