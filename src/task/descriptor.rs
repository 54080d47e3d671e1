//! The task descriptor, format version 1: the raw serde types (which the
//! JSON Schema in `schemas/` is generated from), parsing with errors that
//! name the JSON path, semantic validation, and resolution into
//! [`Settings`] (defaults applied, environment and command-line overrides
//! merged). Pure: no I/O; the environment is passed in.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::bq::retry::RetryPolicy;
use crate::planning::partition::{self, PartitionSpec, Selection};
use crate::task::settings::{self, Settings, TableRef};

pub(crate) mod ident;
mod sql;

/// The named parameters a query receives for each partition.
pub use sql::PARAMETERS as QUERY_PARAMETERS;

/// Largest descriptor accepted, checked before parsing (1 MiB).
pub const MAX_DESCRIPTOR_BYTES: usize = 1024 * 1024;
/// BigQuery's limit on the length of a query's text (1 MiB).
pub const MAX_QUERY_BYTES: usize = 1024 * 1024;
/// Table name of the default audit log, created in the destination's dataset.
pub const DEFAULT_CHECKPOINT_TABLE: &str = "_bq_backfill_audit";
/// Label keys starting with this are set by bq-backfill itself.
pub const RESERVED_LABEL_PREFIX: &str = "bq-backfill";
/// BigQuery allows 64 labels per job; bq-backfill keeps 4 for its own.
pub const MAX_USER_LABELS: usize = 60;
/// Where the project comes from when neither `--project` nor the descriptor
/// names one, in this order (the Google Cloud client libraries' order).
pub const PROJECT_ENV_VARS: [&str; 3] = [
    "GOOGLE_CLOUD_PROJECT",
    "GCLOUD_PROJECT",
    "CLOUDSDK_CORE_PROJECT",
];
/// The only descriptor format version this build reads.
pub const DESCRIPTOR_VERSION: u32 = 1;

const MAX_PAUSE_SECONDS: f64 = 86_400.0;
const MAX_PAUSE_RATIO: f64 = 100.0;
const MAX_BACKOFF_SECONDS: f64 = 3_600.0;
const MAX_DEADLINE_SECONDS: f64 = 86_400.0;
const MAX_RUNTIME_SECONDS: f64 = 31_536_000.0;
const MIN_LEASE_SECONDS: f64 = 1.0;
const MAX_LEASE_SECONDS: f64 = 86_400.0;
const MAX_LOAD_URIS: usize = 10_000;

// ---------------------------------------------------------------------------
// Raw descriptor types
// ---------------------------------------------------------------------------

/// A bq-backfill task: which partitions of which table to rebuild, from
/// what, and how carefully. Unknown fields are rejected everywhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "bq-backfill task descriptor (version 1)")]
pub struct Descriptor {
    /// Descriptor format version. Optional; when present it must be 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1))]
    pub version: Option<u32>,
    /// Stable name of this backfill: the key of its checkpoints in the audit
    /// log, a label value on every job and part of every job ID. Lowercase
    /// letters, digits, `_` and `-`, starting with a letter, at most 63
    /// characters. Keep it unchanged between runs, or the run starts over.
    #[schemars(regex(pattern = r"^[a-z][a-z0-9_-]{0,62}$"))]
    pub job: String,
    /// Google Cloud project that runs (and pays for) the jobs. Default:
    /// `--project`, else the environment variables GOOGLE_CLOUD_PROJECT,
    /// GCLOUD_PROJECT, CLOUDSDK_CORE_PROJECT, in that order. `--project`
    /// takes precedence over this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$"))]
    pub project: Option<String>,
    /// BigQuery location of the jobs (`US`, `EU`, `europe-west1`, ...).
    /// Needed for datasets outside the US and EU multi-regions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z][A-Za-z0-9-]{0,63}$"))]
    pub location: Option<String>,
    /// The partitioned table to rebuild, as `project.dataset.table` or
    /// `dataset.table` (project defaults to `project`). No `$` decorator:
    /// bq-backfill adds it per partition.
    #[schemars(regex(
        pattern = r"^(([a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]\.)?[A-Za-z0-9_]+\.[A-Za-z0-9_-]+$"
    ))]
    pub destination: String,
    /// Which partitions to rebuild.
    pub partitions: Partitions,
    /// Where each partition's rows come from: exactly one of `query`,
    /// `load` or `copy`.
    pub source: Source,
    /// Where progress is recorded. Default: a table named
    /// `_bq_backfill_audit` in the destination's dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint>,
    /// Pause after each partition, to leave room for other workloads.
    #[serde(default)]
    pub throttle: Throttle,
    /// Job options that do not change a partition's contents.
    #[serde(default)]
    pub job_config: JobConfig,
    /// What to do when a partition fails: `stop` (default) or `continue`
    /// with the next partition. Either way the exit code reports failure.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Retries of transient BigQuery failures.
    #[serde(default)]
    pub retry: Retry,
    /// Time budget in seconds: no partition starts after this much time has
    /// passed; the run stops cleanly and exits 75. `--max-runtime`
    /// overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 31_536_000.0), extend("exclusiveMinimum" = 0.0))]
    pub max_runtime_seconds: Option<f64>,
    /// The run lease that keeps two runs of one job apart.
    #[serde(default)]
    pub lease: Lease,
}

/// Partition granularity; must match the destination table's partitioning:
/// `hour`, `day`, `month`, `year` (time-unit partitioning) or
/// `integer_range` (integer-range partitioning, with `interval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    Hour,
    Day,
    Month,
    Year,
    IntegerRange,
}

/// Processing order of the partitions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    #[default]
    OldestFirst,
    NewestFirst,
}

/// Which partitions to rebuild: `granularity` plus either a half-open range
/// `start`..`end` or an explicit `list`. A range may also be given (or
/// overridden) on the command line with `--start` and `--end`.
///
/// Time granularities: a boundary is a string, at any granularity, as long
/// as the value is the first instant of a partition (UTC): `2024`,
/// `2024-01`, `202401`, `2024-01-15`, `20240115`, `2024-01-15T03`,
/// `2024011503`, or RFC 3339 such as `2024-01-15T03:00:00Z`.
///
/// `integer_range`: `interval` is required; bounds and list entries are
/// integers (JSON integers or strings of digits such as `"-10"`); the
/// partitions are `start`, `start + interval`, ... below `end`, each named
/// by its start. The destination's range and interval are checked before
/// any job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = partitions_schema)]
pub struct Partitions {
    /// `hour`, `day`, `month`, `year` or `integer_range`.
    pub granularity: Granularity,
    /// `integer_range` only (and required there): the width of each
    /// partition, a positive integer equal to the table's
    /// `rangePartitioning.range.interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Bound>,
    /// First partition of the range (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Bound>,
    /// End of the range (exclusive): the first partition NOT rebuilt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Bound>,
    /// Explicit partitions, instead of a range. Non-empty, no duplicates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 10_000))]
    pub list: Option<Vec<Bound>>,
    /// `oldest_first` (default) or `newest_first`.
    #[serde(default)]
    pub order: Order,
}

/// A range excludes a list. Nulls count as absent (as in the parser), and a
/// range may be partial: `--start`/`--end` can complete it. `interval` is
/// required by `integer_range` and refused by the time granularities.
fn partitions_schema(schema: &mut schemars::Schema) {
    let both = |bound: &str| {
        serde_json::json!({
            "required": ["list", bound],
            "properties": { "list": { "type": "array" }, bound: { "type": ["string", "integer"] } }
        })
    };
    schema.insert(
        "not".into(),
        serde_json::json!({ "anyOf": [both("start"), both("end")] }),
    );
    schema.insert(
        "if".into(),
        serde_json::json!({
            "required": ["granularity"],
            "properties": { "granularity": { "const": "integer_range" } }
        }),
    );
    schema.insert(
        "then".into(),
        serde_json::json!({
            "required": ["interval"],
            "properties": {
                "interval": {
                    "anyOf": [
                        { "type": "integer", "minimum": 1, "maximum": i64::MAX },
                        { "type": "string", "pattern": "^0*[1-9][0-9]{0,18}$" }
                    ]
                }
            }
        }),
    );
    schema.insert(
        "else".into(),
        serde_json::json!({
            "properties": {
                "interval": { "type": "null" },
                "start": { "type": ["string", "null"] },
                "end": { "type": ["string", "null"] },
                "list": { "items": { "type": "string" } }
            }
        }),
    );
}

/// A partition bound, list entry or interval: a JSON string or a JSON
/// integer (INT64). Strings are what time granularities take and what
/// `--start`/`--end` supply; integers are for `integer_range`, which also
/// accepts strings of digits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Bound {
    Integer(i64),
    Text(String),
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bound::Integer(n) => write!(f, "{n}"),
            Bound::Text(s) => f.write_str(s),
        }
    }
}

impl From<&str> for Bound {
    fn from(s: &str) -> Self {
        Bound::Text(s.to_string())
    }
}

impl<'de> Deserialize<'de> for Bound {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Bound;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Bound, E> {
                Ok(Bound::Integer(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Bound, E> {
                i64::try_from(v).map(Bound::Integer).map_err(|_| {
                    E::custom(format_args!(
                        "integer {v} is out of range: INT64 ends at {}",
                        i64::MAX
                    ))
                })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Bound, E> {
                Ok(Bound::Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Bound {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Bound".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A string (time granularities: a date or time; integer_range: a decimal integer such as \"-10\") or an integer (integer_range).",
            "anyOf": [
                { "type": "string" },
                { "type": "integer", "minimum": i64::MIN, "maximum": i64::MAX }
            ]
        })
    }
}

/// Exactly one source is set (null counts as absent, as in the parser).
fn exactly_one_source_schema(schema: &mut schemars::Schema) {
    let only = |key: &str, ty: &str| serde_json::json!({ "required": [key], "properties": { key: { "type": ty } } });
    schema.insert(
        "oneOf".into(),
        serde_json::json!([
            only("query", "string"),
            only("load", "object"),
            only("copy", "object")
        ]),
    );
}

/// Where each partition's rows come from. Exactly one of the three.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = exactly_one_source_schema)]
pub struct Source {
    /// GoogleSQL SELECT whose result replaces the partition. It receives the
    /// partition only through named parameters: `@partition_id` (STRING),
    /// `@partition_date` (DATE), `@partition_start` and `@partition_end`
    /// (TIMESTAMP, half-open); for `integer_range`: `@partition_id`
    /// (STRING), `@partition_start` and `@partition_end` (INT64, half-open),
    /// no `@partition_date`. It must use at least one of them. Sent to
    /// BigQuery as written; at most 1 MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// A load job from Cloud Storage per partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadJob>,
    /// A copy job per partition from the same partition of another table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<CopyJob>,
}

/// Load-job source. Options map to BigQuery's `configuration.load` fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadJob {
    /// `gs://bucket/path` templates, expanded per partition. Placeholders:
    /// `{partition_id}`, `{partition_date}` (YYYY-MM-DD), `{year}`,
    /// `{month}`, `{day}`, `{hour}` (zero-padded); for `integer_range`:
    /// `{partition_id}`, `{partition_start}`, `{partition_end}`. Every URI
    /// must identify the partition (e.g. contain `{partition_date}` for day
    /// partitions, `{partition_start}` for integer ranges).
    #[schemars(length(min = 1, max = 10_000))]
    pub uris: Vec<String>,
    /// BigQuery `sourceFormat`.
    pub format: SourceFormat,
    /// CSV only: header rows to skip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_leading_rows: Option<u32>,
    /// CSV only: field separator (default `,`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 16))]
    pub field_delimiter: Option<String>,
    /// CSV only: accept rows missing trailing optional columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_jagged_rows: Option<bool>,
    /// CSV only: allow quoted fields containing newlines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_quoted_newlines: Option<bool>,
    /// Ignore values that do not match the table schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_unknown_values: Option<bool>,
    /// CSV and NEWLINE_DELIMITED_JSON only: bad records tolerated per job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bad_records: Option<u32>,
    /// CSV only: the string that stands for NULL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub null_marker: Option<String>,
}

/// Load file format (BigQuery's `sourceFormat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SourceFormat {
    NewlineDelimitedJson,
    Csv,
    Parquet,
    Avro,
    Orc,
}

impl SourceFormat {
    /// BigQuery's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceFormat::NewlineDelimitedJson => "NEWLINE_DELIMITED_JSON",
            SourceFormat::Csv => "CSV",
            SourceFormat::Parquet => "PARQUET",
            SourceFormat::Avro => "AVRO",
            SourceFormat::Orc => "ORC",
        }
    }
}

/// Copy-job source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CopyJob {
    /// Table whose partition of the same ID is copied, as
    /// `project.dataset.table` or `dataset.table`. Must differ from the
    /// destination.
    #[schemars(regex(
        pattern = r"^(([a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]\.)?[A-Za-z0-9_]+\.[A-Za-z0-9_-]+$"
    ))]
    pub table: String,
}

/// Where progress is recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Audit-log table, as `project.dataset.table` or `dataset.table`.
    /// Created if missing (its dataset must exist). Must differ from the
    /// destination and from a copy source.
    #[schemars(regex(
        pattern = r"^(([a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]\.)?[A-Za-z0-9_]+\.[A-Za-z0-9_-]+$"
    ))]
    pub table: String,
}

/// Pause after each partition: max(`pause_seconds`, `pause_ratio` × the
/// partition's runtime).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Throttle {
    /// Minimum pause in seconds, 0 to 86400.
    #[serde(default = "default_pause_seconds")]
    #[schemars(range(min = 0.0, max = 86_400.0))]
    pub pause_seconds: f64,
    /// Pause as a multiple of the partition's runtime, 0 to 100.
    #[serde(default = "default_pause_ratio")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub pause_ratio: f64,
}

fn default_pause_seconds() -> f64 {
    1.0
}

fn default_pause_ratio() -> f64 {
    0.2
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            pause_seconds: default_pause_seconds(),
            pause_ratio: default_pause_ratio(),
        }
    }
}

/// Job options that do not change a partition's contents (and so not its
/// fingerprint).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// `INTERACTIVE` (default) or `BATCH` (queued until idle capacity).
    #[serde(default)]
    pub priority: Priority,
    /// Fail a query that would bill more than this many bytes (no charge).
    /// A positive integer, as a JSON number or a string of digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_bytes_billed: Option<ByteCount>,
    /// Labels on every job. Keys: 1-63 lowercase letters, digits, `_`, `-`,
    /// starting with a letter; values: 0-63 of the same. At most 60 labels;
    /// keys starting with `bq-backfill` are reserved.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
}

/// Job priority.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Priority {
    #[default]
    Interactive,
    Batch,
}

/// What to do when a partition fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    #[default]
    Stop,
    Continue,
}

/// Retries of transient failures (HTTP 5xx/429, backendError, ...).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Attempts per partition when its job ends with a transient error
    /// (each attempt is a new job), 1 to 10.
    #[serde(default = "default_max_attempts")]
    #[schemars(range(min = 1, max = 10))]
    pub max_attempts: u32,
    /// First backoff in seconds; doubles per retry.
    #[serde(default = "default_initial_backoff")]
    #[schemars(range(max = 3_600.0), extend("exclusiveMinimum" = 0.0))]
    pub initial_backoff_seconds: f64,
    /// Backoff cap in seconds (at least `initial_backoff_seconds`).
    #[serde(default = "default_max_backoff")]
    #[schemars(range(max = 3_600.0), extend("exclusiveMinimum" = 0.0))]
    pub max_backoff_seconds: f64,
    /// Total seconds one API call may spend retrying.
    #[serde(default = "default_deadline")]
    #[schemars(range(max = 86_400.0), extend("exclusiveMinimum" = 0.0))]
    pub deadline_seconds: f64,
}

fn default_max_attempts() -> u32 {
    RetryPolicy::default().max_attempts
}

fn default_initial_backoff() -> f64 {
    RetryPolicy::default().initial_backoff.as_secs_f64()
}

fn default_max_backoff() -> f64 {
    RetryPolicy::default().max_backoff.as_secs_f64()
}

fn default_deadline() -> f64 {
    RetryPolicy::default().deadline.as_secs_f64()
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_attempts: default_max_attempts(),
            initial_backoff_seconds: default_initial_backoff(),
            max_backoff_seconds: default_max_backoff(),
            deadline_seconds: default_deadline(),
        }
    }
}

/// The run lease.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Lease {
    /// A lease not renewed for this many seconds is considered abandoned
    /// and may be taken over, 1 to 86400.
    #[serde(default = "default_lease_ttl")]
    #[schemars(range(min = 1.0, max = 86_400.0))]
    pub ttl_seconds: f64,
}

/// Three minutes: a killed run's lease has expired by the time an
/// orchestrator retries (Airflow's default `retry_delay` is five minutes),
/// while a heartbeat every minute costs one query and one row.
fn default_lease_ttl() -> f64 {
    180.0
}

impl Default for Lease {
    fn default() -> Self {
        Lease {
            ttl_seconds: default_lease_ttl(),
        }
    }
}

/// A byte count given as a JSON integer or a string of decimal digits
/// (INT64 values travel as strings in BigQuery's own JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ByteCount(pub u64);

impl<'de> Deserialize<'de> for ByteCount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ByteCount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a positive integer or a string of decimal digits")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteCount, E> {
                Ok(ByteCount(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteCount, E> {
                u64::try_from(v)
                    .map(ByteCount)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteCount, E> {
                if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(E::invalid_value(serde::de::Unexpected::Str(v), &self));
                }
                v.parse()
                    .map(ByteCount)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for ByteCount {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ByteCount".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A positive integer, as a JSON number or a string of decimal digits.",
            "anyOf": [
                { "type": "integer", "minimum": 1, "maximum": i64::MAX },
                { "type": "string", "pattern": "^0*[1-9][0-9]{0,18}$" }
            ]
        })
    }
}

/// Job labels. Unlike a plain map, a key given twice is an error rather
/// than a silent last-one-wins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Labels(pub BTreeMap<String, String>);

impl Labels {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Labels;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of string label values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Labels, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value: String = map.next_value()?;
                    if out.contains_key(&key) {
                        return Err(serde::de::Error::custom(format_args!(
                            "duplicate label `{key}`"
                        )));
                    }
                    out.insert(key, value);
                }
                Ok(Labels(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl JsonSchema for Labels {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Labels".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Job labels: lowercase keys and values.",
            "type": "object",
            "maxProperties": MAX_USER_LABELS,
            "propertyNames": { "pattern": "^[a-z][a-z0-9_-]{0,62}$", "not": { "pattern": "^bq-backfill" } },
            "additionalProperties": { "type": "string", "pattern": "^[a-z0-9_-]{0,63}$" }
        })
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// One problem with a descriptor: where, what, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    /// JSON path of the offending value (`partitions.end`,
    /// `source.load.uris[2]`), `$` for the document as a whole, or the
    /// command-line flag / environment variable the value came from.
    pub field: String,
    /// Lowercase message fragment.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}\n  hint: {}", self.field, self.message, self.hint)
    }
}

/// An invalid descriptor. Carries the first problem in its fields and any
/// further independent problems found in the same pass in `also`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct DescriptorError {
    /// JSON path of the first problem (see [`Issue::field`]).
    pub field: String,
    /// Lowercase message fragment.
    pub message: String,
    /// How to fix it.
    pub hint: String,
    /// Further problems, in document order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<Issue>,
}

impl DescriptorError {
    fn new(field: impl Into<String>, message: impl Into<String>, hint: impl Into<String>) -> Self {
        DescriptorError {
            field: field.into(),
            message: message.into(),
            hint: hint.into(),
            also: Vec::new(),
        }
    }

    fn from_issues(mut issues: Vec<Issue>) -> Option<Self> {
        if issues.is_empty() {
            return None;
        }
        let first = issues.remove(0);
        Some(DescriptorError {
            field: first.field,
            message: first.message,
            hint: first.hint,
            also: issues,
        })
    }

    /// Every problem, the first one included.
    pub fn issues(&self) -> Vec<Issue> {
        let mut v = vec![Issue {
            field: self.field.clone(),
            message: self.message.clone(),
            hint: self.hint.clone(),
        }];
        v.extend(self.also.iter().cloned());
        v
    }
}

impl fmt::Display for DescriptorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for issue in self.issues() {
            if !first {
                f.write_str("\n")?;
            }
            first = false;
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

const SCHEMA_HINT: &str = "run `bq-backfill schema descriptor` to see every field and its type";

/// Parses and validates a descriptor. Everything that can be checked
/// without the environment and the command line is checked here; a range or
/// project left for `--start`/`--end`/`--project`/the environment is
/// accepted and checked by [`resolve`].
pub fn parse(bytes: &[u8]) -> Result<Descriptor, DescriptorError> {
    if bytes.len() > MAX_DESCRIPTOR_BYTES {
        return Err(DescriptorError::new(
            "$",
            format!("descriptor is {} bytes; the limit is 1 MiB", bytes.len()),
            "a descriptor is a small JSON object; for many partitions use a start/end range \
             rather than a list",
        ));
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(DescriptorError::new(
            "$",
            "descriptor is empty",
            "pipe a JSON task descriptor on stdin (`bq-backfill run < task.json`) or pass \
             `--task task.json`",
        ));
    }
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| located_syntax_error(bytes, &e))?;
    let Some(object) = value.as_object() else {
        return Err(DescriptorError::new(
            "$",
            format!(
                "descriptor must be a JSON object, found {}",
                json_kind(&value)
            ),
            "write the task as one JSON object: {\"job\": ..., \"destination\": ..., ...}",
        ));
    };
    if let Some(v @ serde_json::Value::Number(n)) = object.get("version")
        && n.as_u64() != Some(u64::from(DESCRIPTOR_VERSION))
    {
        return Err(DescriptorError::new(
            "version",
            format!("unsupported descriptor version {v}"),
            "this bq-backfill reads version 1 descriptors; set \"version\": 1 (or leave it \
             out), or use the bq-backfill release that wrote this descriptor",
        ));
    }
    check_object_shapes(&value)?;

    let mut de = serde_json::Deserializer::from_slice(bytes);
    let d: Descriptor = serde_path_to_error::deserialize(&mut de).map_err(|e| typed_error(&e))?;
    de.end().map_err(|e| syntax_error(&e))?;

    let no_env = |_: &str| None;
    let no_overrides = Overrides::default();
    let mut b = Builder::new(Mode::Static, &no_env, &no_overrides);
    b.build(&d);
    match DescriptorError::from_issues(b.issues) {
        Some(e) => Err(e),
        None => Ok(d),
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn syntax_error(e: &serde_json::Error) -> DescriptorError {
    let hint = match e.classify() {
        serde_json::error::Category::Eof => {
            "the input ends in the middle of the JSON document: is the file truncated?".to_string()
        }
        _ if e.to_string().contains("unicode") => format!(
            "the descriptor must be UTF-8 encoded JSON; check the text near line {}, column {}",
            e.line(),
            e.column()
        ),
        _ => format!(
            "the descriptor must be one JSON object; check the syntax near line {}, column {}",
            e.line(),
            e.column()
        ),
    };
    DescriptorError::new("$", format!("not valid JSON: {e}"), hint)
}

/// A syntax error, with the JSON path of where it happened when the typed
/// parser stops at the very same spot (e.g. a number out of range).
fn located_syntax_error(bytes: &[u8], e: &serde_json::Error) -> DescriptorError {
    let mut err = syntax_error(e);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    if let Err(typed) = serde_path_to_error::deserialize::<_, Descriptor>(&mut de) {
        let same_spot = typed.inner().line() == e.line() && typed.inner().column() == e.column();
        let path = format_path(typed.path());
        if same_spot && !path.is_empty() {
            if e.to_string().starts_with("number out of range")
                && let Some(h) = field_hint(&path)
            {
                err.hint = h.to_string();
            }
            err.field = path;
        }
    }
    err
}

/// serde accepts a JSON array for a struct (fields by position); a
/// descriptor written that way is almost certainly a mistake, so nested
/// objects are required to be objects before the typed parse.
fn check_object_shapes(v: &serde_json::Value) -> Result<(), DescriptorError> {
    const OBJECTS: &[&[&str]] = &[
        &["partitions"],
        &["source"],
        &["source", "load"],
        &["source", "copy"],
        &["checkpoint"],
        &["throttle"],
        &["job_config"],
        &["job_config", "labels"],
        &["retry"],
        &["lease"],
    ];
    for path in OBJECTS {
        let mut cur = v;
        let mut found = true;
        for key in *path {
            match cur.get(key) {
                Some(next) => cur = next,
                None => {
                    found = false;
                    break;
                }
            }
        }
        if found && cur.is_array() {
            let field = path.join(".");
            return Err(DescriptorError::new(
                field.clone(),
                "invalid type: array, expected an object".to_string(),
                field_hint(&field).unwrap_or(SCHEMA_HINT).to_string(),
            ));
        }
    }
    Ok(())
}

fn format_path(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            serde_path_to_error::Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            serde_path_to_error::Segment::Map { key }
            | serde_path_to_error::Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            // A key not read yet (the input ended inside it): the known
            // prefix is the useful part.
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    out
}

fn join_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// The text between the first pair of backticks after `prefix`.
fn quoted_after<'a>(msg: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = msg.strip_prefix(prefix)?;
    let rest = rest.strip_prefix('`')?;
    rest.split_once('`').map(|(name, _)| name)
}

fn typed_error(e: &serde_path_to_error::Error<serde_json::Error>) -> DescriptorError {
    let path = format_path(e.path());
    let msg = e.inner().to_string();
    if let Some(name) = quoted_after(&msg, "missing field ") {
        let field = join_path(&path, name);
        let hint = field_hint(&field).unwrap_or(SCHEMA_HINT).to_string();
        return DescriptorError::new(
            field.clone(),
            format!("missing field `{name}`"),
            format!("this field is required: {hint}"),
        );
    }
    if let Some(name) = quoted_after(&msg, "duplicate field ") {
        return DescriptorError::new(
            join_path(&path, name),
            msg.clone(),
            "each field may appear only once; remove the repeated key",
        );
    }
    if let Some(name) = quoted_after(&msg, "unknown field ") {
        let expected = msg
            .split_once(", expected ")
            .map(|(_, rest)| rest)
            .unwrap_or("");
        let candidates: Vec<&str> = expected
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, s)| s)
            .collect();
        let hint = match closest(name, &candidates) {
            Some(c) => format!(
                "did you mean `{c}`? unknown fields are rejected so that typos are not silently ignored"
            ),
            None => format!(
                "remove it; unknown fields are rejected so that typos are not silently ignored ({SCHEMA_HINT})"
            ),
        };
        return DescriptorError::new(
            if path.is_empty() {
                name.to_string()
            } else {
                path
            },
            msg,
            hint,
        );
    }
    let field = if path.is_empty() {
        "$".to_string()
    } else {
        path
    };
    let hint = field_hint(&field).unwrap_or(SCHEMA_HINT).to_string();
    DescriptorError::new(field, msg, hint)
}

/// The candidate within edit distance 2 of `name`, if any.
fn closest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let sub = prev[j] + usize::from(ca != *cb);
                cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
            }
            prev = cur;
        }
        prev[b.len()]
    }
    candidates
        .iter()
        .map(|c| (distance(&name.to_ascii_lowercase(), c), *c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// What a field expects, for hints on type errors.
fn field_hint(field: &str) -> Option<&'static str> {
    // Array indices and label keys do not change what is expected.
    let mut generic = String::with_capacity(field.len());
    let mut in_index = false;
    for c in field.chars() {
        match c {
            '[' => {
                in_index = true;
                generic.push_str("[]");
            }
            ']' => in_index = false,
            _ if in_index => {}
            _ => generic.push(c),
        }
    }
    let generic = if generic.starts_with("job_config.labels.") {
        "job_config.labels.*"
    } else {
        generic.as_str()
    };
    Some(match generic {
        "version" => "`version` is the number 1",
        "job" => {
            "`job` is a name of lowercase letters, digits, `_` and `-`, starting with a letter"
        }
        "project" => "`project` is a Google Cloud project ID string such as \"my-project\"",
        "location" => "`location` is a BigQuery location string such as \"US\" or \"europe-west1\"",
        "destination" => "`destination` is a string \"project.dataset.table\" or \"dataset.table\"",
        "partitions" => {
            "`partitions` is an object: {\"granularity\": \"day\", \"start\": \"2024-01-01\", \"end\": \"2024-02-01\"}"
        }
        "partitions.granularity" => {
            "`granularity` is one of \"hour\", \"day\", \"month\", \"year\", \"integer_range\""
        }
        "partitions.interval" => "`interval` (integer_range only) is a positive integer such as 10",
        "partitions.start" | "partitions.end" => {
            "a range bound is a string such as \"2024-01-15\" (integer_range: an integer such as 40)"
        }
        "partitions.list" => {
            "`list` is an array of strings such as [\"2024-01-15\", \"2024-01-20\"] (integer_range: integers such as [0, 40])"
        }
        "partitions.list[]" => {
            "list entries are strings such as \"2024-01-15\" (integer_range: integers such as 40)"
        }
        "partitions.order" => "`order` is \"oldest_first\" or \"newest_first\"",
        "source" => "`source` is an object with exactly one of \"query\", \"load\" or \"copy\"",
        "source.query" => "`source.query` is the SQL text as a string",
        "source.load" => {
            "`source.load` is an object: {\"uris\": [\"gs://bucket/{partition_date}/*.json\"], \"format\": \"NEWLINE_DELIMITED_JSON\"}"
        }
        "source.load.uris" => "`uris` is an array of \"gs://...\" strings",
        "source.load.uris[]" => "each URI is a \"gs://bucket/path\" string",
        "source.load.format" => {
            "`format` is one of \"NEWLINE_DELIMITED_JSON\", \"CSV\", \"PARQUET\", \"AVRO\", \"ORC\""
        }
        "source.load.skip_leading_rows" | "source.load.max_bad_records" => "a non-negative integer",
        "source.load.field_delimiter" | "source.load.null_marker" => "a string",
        "source.load.allow_jagged_rows"
        | "source.load.allow_quoted_newlines"
        | "source.load.ignore_unknown_values" => "true or false",
        "source.copy" => "`source.copy` is an object: {\"table\": \"project.dataset.table\"}",
        "source.copy.table" | "checkpoint.table" => {
            "a string \"project.dataset.table\" or \"dataset.table\""
        }
        "checkpoint" => "`checkpoint` is an object: {\"table\": \"project.dataset.table\"}",
        "throttle" => "`throttle` is an object: {\"pause_seconds\": 1, \"pause_ratio\": 0.2}",
        "throttle.pause_seconds" => "`pause_seconds` is a number of seconds from 0 to 86400",
        "throttle.pause_ratio" => "`pause_ratio` is a number from 0 to 100",
        "job_config" => {
            "`job_config` is an object: {\"priority\": \"BATCH\", \"labels\": {\"team\": \"data\"}}"
        }
        "job_config.priority" => "`priority` is \"INTERACTIVE\" or \"BATCH\" (uppercase)",
        "job_config.maximum_bytes_billed" => {
            "`maximum_bytes_billed` is a positive integer, as a number or a string of digits"
        }
        "job_config.labels" => "`labels` is an object of strings: {\"team\": \"data\"}",
        "job_config.labels.*" => {
            "label values are strings of lowercase letters, digits, `_` and `-`"
        }
        "on_failure" => "`on_failure` is \"stop\" or \"continue\"",
        "retry" => "`retry` is an object: {\"max_attempts\": 3, \"initial_backoff_seconds\": 1}",
        "retry.max_attempts" => "`max_attempts` is an integer from 1 to 10",
        "retry.initial_backoff_seconds" | "retry.max_backoff_seconds" => {
            "a positive number of seconds, at most 3600"
        }
        "retry.deadline_seconds" => {
            "`deadline_seconds` is a positive number of seconds, at most 86400"
        }
        "max_runtime_seconds" => "`max_runtime_seconds` is a positive number of seconds",
        "lease" => "`lease` is an object: {\"ttl_seconds\": 180}",
        "lease.ttl_seconds" => "`ttl_seconds` is a number of seconds from 1 to 86400",
        _ => return None,
    })
}

// ---------------------------------------------------------------------------
// Resolution
// ---------------------------------------------------------------------------

/// Values from the command line that take precedence over the descriptor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `--start`: replaces `partitions.start` (a range only; an explicit
    /// `partitions.list` cannot be overridden).
    pub start: Option<String>,
    /// `--end`: replaces `partitions.end`.
    pub end: Option<String>,
    /// `--max-runtime`: replaces `max_runtime_seconds`.
    pub max_runtime: Option<Duration>,
    /// `--project`: replaces `project` and the environment.
    pub project: Option<String>,
}

/// Resolves a parsed descriptor into run settings: the project from
/// `--project`, the descriptor or the environment (in that order), the
/// range from `--start`/`--end` or the descriptor, defaults applied.
/// `env` looks up an environment variable (pure: tests pass a closure).
pub fn resolve(
    d: Descriptor,
    env: &dyn Fn(&str) -> Option<String>,
    overrides: &Overrides,
) -> Result<Settings, DescriptorError> {
    let mut b = Builder::new(Mode::Resolve, env, overrides);
    let settings = b.build(&d);
    match (DescriptorError::from_issues(b.issues), settings) {
        (Some(e), _) => Err(e),
        (None, Some(s)) => Ok(s),
        (None, None) => Err(DescriptorError::new(
            "$",
            "descriptor could not be resolved",
            "this is a bug in bq-backfill; please report it with the descriptor",
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Descriptor only: no environment, no overrides; a missing project or
    /// range is left for resolution.
    Static,
    Resolve,
}

/// Stands in for a project the environment will supply, so that the
/// descriptor's own checks run the same way in both modes.
const UNRESOLVED_PROJECT: &str = "unresolved-project";

struct Builder<'a> {
    mode: Mode,
    env: &'a dyn Fn(&str) -> Option<String>,
    overrides: &'a Overrides,
    issues: Vec<Issue>,
}

impl<'a> Builder<'a> {
    fn new(mode: Mode, env: &'a dyn Fn(&str) -> Option<String>, overrides: &'a Overrides) -> Self {
        Builder {
            mode,
            env,
            overrides,
            issues: Vec::new(),
        }
    }

    fn issue(
        &mut self,
        field: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.issues.push(Issue {
            field: field.into(),
            message: message.into(),
            hint: hint.into(),
        });
    }

    fn problem(&mut self, field: impl Into<String>, p: ident::Problem) {
        self.issue(field, p.message, p.hint);
    }

    /// Validates everything, collecting issues; returns the settings when
    /// every part could be built.
    fn build(&mut self, d: &Descriptor) -> Option<Settings> {
        if let Some(v) = d.version
            && v != DESCRIPTOR_VERSION
        {
            self.issue(
                "version",
                format!("unsupported descriptor version {v}"),
                "set \"version\": 1 or leave it out",
            );
        }
        if let Err(p) = ident::job_name(&d.job) {
            self.problem("job", p);
        }
        let project = self.project(d);
        if let Some(loc) = &d.location
            && let Err(p) = ident::location(loc)
        {
            self.problem("location", p);
        }
        let destination = self.table("destination", &d.destination, project.as_deref());
        let partitions = self.partitions(&d.partitions);
        let granularity = time_granularity(d.partitions.granularity);
        let source = self.source(
            &d.source,
            granularity,
            project.as_deref(),
            destination.as_ref(),
        );
        let checkpoint_table = match (&d.checkpoint, &destination) {
            (Some(c), _) => self.table("checkpoint.table", &c.table, project.as_deref()),
            (None, Some(dest)) => Some(TableRef {
                project: dest.project.clone(),
                dataset: dest.dataset.clone(),
                table: DEFAULT_CHECKPOINT_TABLE.to_string(),
            }),
            (None, None) => None,
        };
        if let (Some(cp), Some(dest)) = (&checkpoint_table, &destination)
            && cp == dest
        {
            self.issue(
                "checkpoint.table",
                format!("the checkpoint table `{cp}` is the destination table"),
                "record progress in a separate table, or leave `checkpoint` out to use `_bq_backfill_audit` in the destination's dataset",
            );
        }
        if let (Some(cp), Some(settings::Source::Copy { table })) = (&checkpoint_table, &source)
            && cp == table
        {
            self.issue(
                "checkpoint.table",
                format!("the checkpoint table `{cp}` is the copy source"),
                "record progress in a separate table",
            );
        }
        let throttle = self.throttle(&d.throttle);
        let job_options = self.job_options(&d.job_config);
        let retry = self.retry(&d.retry);
        let max_runtime = self.max_runtime(d.max_runtime_seconds);
        let lease = self.lease(&d.lease);

        Some(Settings {
            job: d.job.clone(),
            project: project?,
            location: d.location.clone(),
            destination: destination?,
            partitions: partitions?,
            source: source?,
            checkpoint_table: checkpoint_table?,
            throttle: throttle?,
            job_options: job_options?,
            on_failure: match d.on_failure {
                OnFailure::Stop => settings::OnFailure::Stop,
                OnFailure::Continue => settings::OnFailure::Continue,
            },
            retry: retry?,
            max_runtime: max_runtime?,
            lease: lease?,
        })
    }

    fn project(&mut self, d: &Descriptor) -> Option<String> {
        let mut candidates: Vec<(String, String)> = Vec::new();
        if self.mode == Mode::Resolve
            && let Some(p) = &self.overrides.project
        {
            candidates.push(("--project".into(), p.clone()));
        }
        if let Some(p) = &d.project {
            candidates.push(("project".into(), p.clone()));
        }
        if self.mode == Mode::Resolve {
            for var in PROJECT_ENV_VARS {
                if let Some(p) = (self.env)(var).filter(|p| !p.is_empty()) {
                    candidates.push((var.to_string(), p));
                }
            }
        }
        // Only the value that will be used must be valid; a stale
        // environment variable behind a good `--project` is irrelevant.
        match candidates.into_iter().next() {
            Some((field, p)) => match ident::project_id(&p) {
                Ok(()) => Some(p),
                Err(e) => {
                    self.problem(field, e);
                    None
                }
            },
            None if self.mode == Mode::Static => Some(UNRESOLVED_PROJECT.to_string()),
            None => {
                self.issue(
                    "project",
                    "no project given",
                    "set \"project\" in the descriptor, pass --project, or set GOOGLE_CLOUD_PROJECT",
                );
                None
            }
        }
    }

    fn table(&mut self, field: &str, s: &str, project: Option<&str>) -> Option<TableRef> {
        match ident::table_name(s) {
            Ok(t) => Some(TableRef {
                project: t.project.or_else(|| project.map(str::to_string))?,
                dataset: t.dataset,
                table: t.table,
            }),
            Err(p) => {
                self.problem(field, p);
                None
            }
        }
    }

    fn boundary(
        &mut self,
        g: partition::Granularity,
        field: &str,
        b: &Bound,
    ) -> Option<DateTime<Utc>> {
        let s = match b {
            Bound::Text(s) => s.as_str(),
            Bound::Integer(n) => {
                self.issue(
                    field,
                    format!("invalid type: integer `{n}`, expected a string"),
                    format!(
                        "{g} boundaries are strings such as {}; only `integer_range` partitions take integers",
                        g.examples()
                    ),
                );
                return None;
            }
        };
        let t = match partition::parse_instant(s) {
            Ok(t) => t,
            Err(message) => {
                let hint = if message.contains("no UTC offset") {
                    format!(
                        "add `Z` for UTC, e.g. `{s}Z`, or write a {g} boundary as {}",
                        g.examples()
                    )
                } else {
                    format!("write a {g} boundary as {}", g.examples())
                };
                self.issue(field, message, hint);
                return None;
            }
        };
        if t < partition::earliest() || t > partition::latest() {
            self.issue(
                field,
                format!("`{s}` is outside BigQuery's partitionable dates (1960-01-01 to 2159-12-31)"),
                "time-unit partitioned tables keep rows outside that window in __UNPARTITIONED__; choose dates inside it",
            );
            return None;
        }
        if !partition::is_boundary(g, t) {
            let floor = partition::floor(g, t);
            let next = partition::next_start(g, t);
            self.issue(
                field,
                format!("`{s}` is not the start of {} {g} partition", g.article()),
                format!(
                    "partition boundaries are the first instant of each {g} (UTC): use `{}` (the partition containing it) or `{}` (the next one)",
                    display_boundary(g, floor),
                    display_boundary(g, next)
                ),
            );
            return None;
        }
        Some(t)
    }

    fn partitions(&mut self, p: &Partitions) -> Option<PartitionSpec> {
        let order = match p.order {
            Order::OldestFirst => partition::Order::OldestFirst,
            Order::NewestFirst => partition::Order::NewestFirst,
        };
        match time_granularity(p.granularity) {
            Some(g) => {
                if let Some(i) = &p.interval {
                    self.issue(
                        "partitions.interval",
                        format!("`interval` ({i}) applies only to `integer_range` partitions, but the granularity is {g}"),
                        format!("remove `interval`: {g} partitions are one {g} wide; or set `granularity` to \"integer_range\" for an integer-range partitioned table"),
                    );
                }
                let selection = self.selection(p, &TimeAxis(g));
                if p.interval.is_some() {
                    return None;
                }
                Some(PartitionSpec {
                    scheme: partition::Scheme::Time {
                        granularity: g,
                        selection: selection?,
                    },
                    order,
                })
            }
            None => {
                let interval = self.interval(p.interval.as_ref());
                let selection = self.selection(p, &IntegerAxis(interval));
                Some(PartitionSpec {
                    scheme: partition::Scheme::IntegerRange {
                        interval: interval?,
                        selection: selection?,
                    },
                    order,
                })
            }
        }
    }

    /// `partitions.interval` of an `integer_range` descriptor: required, a
    /// positive INT64.
    fn interval(&mut self, v: Option<&Bound>) -> Option<i64> {
        const FIELD: &str = "partitions.interval";
        const HINT: &str = "set `partitions.interval` to the table's rangePartitioning.range.interval, a positive integer such as 10 (`bq show --format=prettyjson dataset.table` shows it)";
        let Some(v) = v else {
            self.issue(FIELD, "`integer_range` partitions need an `interval`", HINT);
            return None;
        };
        let n = match v {
            Bound::Integer(n) => *n,
            Bound::Text(s) => match partition::parse_integer(s) {
                Ok(n) => n,
                Err(message) => {
                    self.issue(FIELD, message, HINT);
                    return None;
                }
            },
        };
        if n <= 0 {
            self.issue(
                FIELD,
                format!("the interval must be positive, found {n}"),
                HINT,
            );
            return None;
        }
        Some(n)
    }

    /// The range or list of `p`, on either axis (time or integers).
    fn selection<A: Axis>(&mut self, p: &Partitions, axis: &A) -> Option<Selection<A::T>> {
        let (o_start, o_end) = if self.mode == Mode::Resolve {
            (
                self.overrides.start.as_deref().map(Bound::from),
                self.overrides.end.as_deref().map(Bound::from),
            )
        } else {
            (None, None)
        };

        if let Some(list) = &p.list {
            let mut ok = true;
            if p.start.is_some() || p.end.is_some() {
                let field = if p.start.is_some() {
                    "partitions.start"
                } else {
                    "partitions.end"
                };
                self.issue(
                    field,
                    "both a range (`start`/`end`) and a `list` are given",
                    "give either `start` and `end`, or `list`, not both",
                );
                ok = false;
            }
            if o_start.is_some() || o_end.is_some() {
                let flag = if o_start.is_some() {
                    "--start"
                } else {
                    "--end"
                };
                self.issue(
                    flag,
                    format!("{flag} cannot override an explicit `partitions.list`"),
                    "remove `partitions.list` and give `start`/`end` (or only the flags), or drop the flags",
                );
                ok = false;
            }
            return self
                .partition_list(axis, list)
                .filter(|_| ok)
                .map(Selection::List);
        }

        let start = o_start
            .map(|s| ("--start", s))
            .or_else(|| p.start.clone().map(|s| ("partitions.start", s)));
        let end = o_end
            .map(|s| ("--end", s))
            .or_else(|| p.end.clone().map(|s| ("partitions.end", s)));
        let (start, end) = match (start, end) {
            (Some(s), Some(e)) => (s, e),
            (None, None) if self.mode == Mode::Static => {
                return Some(Selection::List(Vec::new()));
            }
            (None, None) => {
                self.issue(
                    "partitions",
                    "no partitions selected",
                    "set `partitions.start` and `partitions.end` (or `partitions.list`), or pass --start and --end",
                );
                return None;
            }
            (Some((field, s)), None) => {
                if self.mode == Mode::Static {
                    // `--end` may supply it; still check what is there.
                    axis.parse(self, field, &s);
                    return Some(Selection::List(Vec::new()));
                }
                self.issue(
                    "partitions.end",
                    "the range has a start but no end",
                    "set `partitions.end` (exclusive) or pass --end",
                );
                return None;
            }
            (None, Some((field, e))) => {
                if self.mode == Mode::Static {
                    axis.parse(self, field, &e);
                    return Some(Selection::List(Vec::new()));
                }
                self.issue(
                    "partitions.start",
                    "the range has an end but no start",
                    "set `partitions.start` (inclusive) or pass --start",
                );
                return None;
            }
        };
        let s = axis.parse(self, start.0, &start.1);
        let e = axis.parse(self, end.0, &end.1);
        let (s, e) = (s?, e?);
        if e <= s {
            let message = if e == s {
                format!(
                    "the range is empty: end `{}` equals start `{}`",
                    end.1, start.1
                )
            } else {
                format!("end `{}` is before start `{}`", end.1, start.1)
            };
            self.issue(
                end.0,
                message,
                format!(
                    "the range is half-open [start, end): end is the first partition NOT rebuilt; {}",
                    axis.only_hint(s)
                ),
            );
            return None;
        }
        if let Some(n) = axis.count(s, e)
            && n > partition::MAX_PARTITIONS as u128
        {
            self.issue(
                "partitions",
                format!(
                    "the range covers {n} {} partitions; a table has at most 10000",
                    axis.name()
                ),
                axis.split_hint(),
            );
            return None;
        }
        Some(Selection::Range { start: s, end: e })
    }

    fn partition_list<A: Axis>(&mut self, axis: &A, list: &[Bound]) -> Option<Vec<A::T>> {
        if list.is_empty() {
            self.issue(
                "partitions.list",
                "the partition list is empty",
                "list at least one partition, or use `start`/`end`",
            );
            return None;
        }
        if list.len() > partition::MAX_PARTITIONS {
            self.issue(
                "partitions.list",
                format!(
                    "the list has {} partitions; a table has at most 10000",
                    list.len()
                ),
                "split the list into several runs, each with its own `job` name",
            );
            return None;
        }
        let mut out = Vec::with_capacity(list.len());
        let mut seen: BTreeMap<A::T, usize> = BTreeMap::new();
        let mut ok = true;
        for (i, s) in list.iter().enumerate() {
            let field = format!("partitions.list[{i}]");
            let Some(t) = axis.parse_list_entry(self, &field, s) else {
                ok = false;
                continue;
            };
            if let Some(first) = seen.get(&t) {
                self.issue(
                    field,
                    format!(
                        "`{s}` repeats partition `{}` (partitions.list[{first}])",
                        list[*first]
                    ),
                    "list each partition once",
                );
                ok = false;
                continue;
            }
            seen.insert(t, i);
            out.push(t);
        }
        ok.then_some(out)
    }

    fn source(
        &mut self,
        s: &Source,
        g: Option<partition::Granularity>,
        project: Option<&str>,
        destination: Option<&TableRef>,
    ) -> Option<settings::Source> {
        let given: Vec<&str> = [
            s.query.as_ref().map(|_| "query"),
            s.load.as_ref().map(|_| "load"),
            s.copy.as_ref().map(|_| "copy"),
        ]
        .into_iter()
        .flatten()
        .collect();
        const HINT: &str = "set exactly one of `source.query`, `source.load` or `source.copy`";
        match given.as_slice() {
            [] => {
                self.issue("source", "no source given", HINT);
                None
            }
            [_] => {
                if let Some(q) = &s.query {
                    self.query(q, g).map(|sql| settings::Source::Query { sql })
                } else if let Some(l) = &s.load {
                    self.load(l, g).map(settings::Source::Load)
                } else if let Some(c) = &s.copy {
                    let table = self.table("source.copy.table", &c.table, project)?;
                    if Some(&table) == destination {
                        self.issue(
                            "source.copy.table",
                            format!("the copy source `{table}` is the destination table"),
                            "copy from a different table (e.g. a staging table) into the destination",
                        );
                        return None;
                    }
                    Some(settings::Source::Copy { table })
                } else {
                    None
                }
            }
            many => {
                self.issue(
                    "source",
                    format!(
                        "more than one source given ({})",
                        many.iter()
                            .map(|m| format!("`{m}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    HINT,
                );
                None
            }
        }
    }

    /// The query; `g` is the time granularity (`None`: integer ranges).
    fn query(&mut self, q: &str, g: Option<partition::Granularity>) -> Option<String> {
        const FIELD: &str = "source.query";
        const TIME_PARAMS_HINT: &str = "filter on the partition with the named parameters @partition_date (DATE), @partition_id (STRING), @partition_start and @partition_end (TIMESTAMP), e.g. `WHERE DATE(ts) = @partition_date`";
        const INTEGER_PARAMS_HINT: &str = "filter on the partition with the named parameters @partition_start and @partition_end (INT64, half-open) or @partition_id (STRING), e.g. `WHERE bucket >= @partition_start AND bucket < @partition_end`";
        let (params_hint, template_hint) = match g {
            Some(_) => (
                TIME_PARAMS_HINT,
                "bq-backfill never splices values into SQL text; use the query parameter instead, e.g. `@partition_date` for `{partition_date}` (parameters: @partition_id, @partition_date, @partition_start, @partition_end)",
            ),
            None => (
                INTEGER_PARAMS_HINT,
                "bq-backfill never splices values into SQL text; use the query parameter instead, e.g. `@partition_start` for `{partition_start}` (parameters: @partition_id, @partition_start, @partition_end)",
            ),
        };
        if q.len() > MAX_QUERY_BYTES {
            self.issue(
                FIELD,
                format!("query is {} bytes; BigQuery's limit is 1 MiB", q.len()),
                "move logic into views or user-defined functions to shorten the query",
            );
            return None;
        }
        if q.trim().is_empty() {
            self.issue(
                FIELD,
                "query is empty",
                "write the SELECT that produces one partition's rows",
            );
            return None;
        }
        let scan = sql::scan(q);
        if let Some(t) = &scan.template {
            self.issue(
                FIELD,
                format!("query contains the template placeholder `{t}`"),
                template_hint,
            );
            return None;
        }
        let Some(first) = scan.first_token.as_deref() else {
            self.issue(
                FIELD,
                "query contains only comments",
                "write the SELECT that produces one partition's rows",
            );
            return None;
        };
        if !matches!(first, "SELECT" | "WITH" | "FROM" | "(") {
            self.issue(
                FIELD,
                format!("query starts with `{first}`; only a single SELECT statement is supported"),
                "write a SELECT (or WITH ... SELECT) whose result replaces the partition; bq-backfill does the write itself (WRITE_TRUNCATE into table$partition), so DML, DDL and scripts are not needed",
            );
            return None;
        }
        if scan.multiple_statements {
            self.issue(
                FIELD,
                "query contains more than one statement",
                "remove everything after the first `;`: the query must be a single SELECT",
            );
            return None;
        }
        if scan.positional {
            self.issue(FIELD, "query uses a positional parameter `?`", params_hint);
            return None;
        }
        let unknown: Vec<&String> = scan
            .params
            .iter()
            .filter(|p| !sql::PARAMETERS.contains(&p.as_str()))
            .collect();
        if let Some(p) = unknown.first() {
            self.issue(
                FIELD,
                format!("query uses the parameter `@{p}`, which bq-backfill does not provide"),
                params_hint,
            );
            return None;
        }
        if g.is_none() && scan.params.iter().any(|p| p == "partition_date") {
            self.issue(
                FIELD,
                "query uses `@partition_date`, which integer_range partitions do not have",
                INTEGER_PARAMS_HINT,
            );
            return None;
        }
        if scan.params.is_empty() {
            self.issue(
                FIELD,
                "query does not use any partition parameter, so every partition would receive the same rows",
                params_hint,
            );
            return None;
        }
        Some(q.to_string())
    }

    /// A load source; `g` is the time granularity (`None`: integer ranges).
    fn load(
        &mut self,
        l: &LoadJob,
        g: Option<partition::Granularity>,
    ) -> Option<settings::LoadSource> {
        let mut ok = true;
        if l.uris.is_empty() {
            self.issue("source.load.uris", "no URIs given", "list at least one gs:// URI template, e.g. `gs://bucket/events/{partition_date}/*.json`");
            ok = false;
        }
        if l.uris.len() > MAX_LOAD_URIS {
            self.issue(
                "source.load.uris",
                format!(
                    "{} URIs given; BigQuery accepts at most 10000 per load job",
                    l.uris.len()
                ),
                "use wildcards (`*`) to cover many files with one URI",
            );
            ok = false;
        }
        for (i, uri) in l.uris.iter().enumerate() {
            let field = format!("source.load.uris[{i}]");
            match ident::gcs_uri_template(uri) {
                Ok(used) => {
                    if !self.uri_placeholders(&field, uri, &used, g) {
                        ok = false;
                    }
                }
                Err(p) => {
                    self.problem(field, p);
                    ok = false;
                }
            }
        }
        let csv = l.format == SourceFormat::Csv;
        let csv_only: [(&str, bool); 5] = [
            ("skip_leading_rows", l.skip_leading_rows.is_some()),
            ("field_delimiter", l.field_delimiter.is_some()),
            ("allow_jagged_rows", l.allow_jagged_rows.is_some()),
            ("allow_quoted_newlines", l.allow_quoted_newlines.is_some()),
            ("null_marker", l.null_marker.is_some()),
        ];
        for (name, set) in csv_only {
            if set && !csv {
                self.issue(
                    format!("source.load.{name}"),
                    format!(
                        "`{name}` applies only to CSV, but the format is {}",
                        l.format.as_str()
                    ),
                    "remove it, or set `format` to \"CSV\"",
                );
                ok = false;
            }
        }
        if l.max_bad_records.is_some()
            && !matches!(
                l.format,
                SourceFormat::Csv | SourceFormat::NewlineDelimitedJson
            )
        {
            self.issue(
                "source.load.max_bad_records",
                format!("`max_bad_records` applies only to CSV and NEWLINE_DELIMITED_JSON, but the format is {}", l.format.as_str()),
                "remove it",
            );
            ok = false;
        }
        if let Some(d) = &l.field_delimiter
            && (d.is_empty() || d.len() > 16 || d.contains(['\n', '\r']))
        {
            self.issue(
                "source.load.field_delimiter",
                "the field delimiter must be 1 to 16 bytes and contain no line break",
                "use e.g. \",\", \"|\" or \"\\t\"",
            );
            ok = false;
        }
        if let Some(m) = &l.null_marker
            && (m.len() > 1024 || m.contains(['\n', '\r']))
        {
            self.issue(
                "source.load.null_marker",
                "the null marker must be at most 1024 bytes with no line break",
                "use e.g. \"\\\\N\" or \"NULL\"",
            );
            ok = false;
        }
        ok.then(|| settings::LoadSource {
            uris: l.uris.clone(),
            format: l.format.as_str().to_string(),
            skip_leading_rows: l.skip_leading_rows,
            field_delimiter: l.field_delimiter.clone(),
            allow_jagged_rows: l.allow_jagged_rows,
            allow_quoted_newlines: l.allow_quoted_newlines,
            ignore_unknown_values: l.ignore_unknown_values,
            max_bad_records: l.max_bad_records,
            null_marker: l.null_marker.clone(),
        })
    }

    /// Checks that a URI's placeholders suit the partitioning and identify
    /// the partition; records an issue and returns false otherwise.
    fn uri_placeholders(
        &mut self,
        field: &str,
        uri: &str,
        used: &[&str],
        g: Option<partition::Granularity>,
    ) -> bool {
        let Some(g) = g else {
            if let Some(p) = used
                .iter()
                .find(|p| !ident::INTEGER_URI_PLACEHOLDERS.contains(p))
            {
                self.issue(
                    field,
                    format!("the placeholder `{{{p}}}` applies only to time partitions, but the granularity is integer_range"),
                    "integer_range URIs use `{partition_id}`, `{partition_start}` and `{partition_end}`, e.g. `gs://bucket/export/bucket={partition_start}/*.json`",
                );
                return false;
            }
            if used.is_empty() {
                self.issue(
                    field,
                    format!("`{uri}` does not identify the partition, so every integer_range partition would load the same files"),
                    "include `{partition_id}` or `{partition_start}` (or `{partition_end}`)",
                );
                return false;
            }
            return true;
        };
        if let Some(p) = used
            .iter()
            .find(|p| !ident::TIME_URI_PLACEHOLDERS.contains(p))
        {
            self.issue(
                field,
                format!("the placeholder `{{{p}}}` applies only to integer_range partitions, but the granularity is {g}"),
                format!("{g} URIs use `{{partition_id}}`, `{{partition_date}}`, `{{year}}`, `{{month}}`, `{{day}}` and `{{hour}}`"),
            );
            return false;
        }
        if let Some(p) = used.iter().find(|p| finer_than(p, g)) {
            self.issue(
                field,
                format!("the placeholder `{{{p}}}` is finer than {g} partitions"),
                format!("{g} partitions have no {p}; remove `{{{p}}}` from the URI"),
            );
            return false;
        }
        if !identifies_partition(used, g) {
            self.issue(
                field,
                format!("`{uri}` does not identify the partition, so every {g} partition would load the same files"),
                format!("include `{{partition_id}}`{}", match g {
                    partition::Granularity::Hour => ", or `{partition_date}` with `{hour}`",
                    partition::Granularity::Day => " or `{partition_date}` (or `{year}`, `{month}` and `{day}`)",
                    partition::Granularity::Month => " or `{year}` and `{month}`",
                    partition::Granularity::Year => " or `{year}`",
                }),
            );
            return false;
        }
        true
    }

    /// A number in `[min, max]` (`min` excluded when `min_exclusive`).
    fn number(
        &mut self,
        field: &str,
        v: f64,
        min: f64,
        min_exclusive: bool,
        max: f64,
        hint: &str,
    ) -> Option<f64> {
        let low = if min_exclusive { v > min } else { v >= min };
        if v.is_finite() && low && v <= max {
            return Some(v);
        }
        let range = if min_exclusive {
            format!("greater than {min} and at most {max}")
        } else {
            format!("from {min} to {max}")
        };
        self.issue(field, format!("{v} is out of range: must be {range}"), hint);
        None
    }

    fn throttle(&mut self, t: &Throttle) -> Option<settings::Throttle> {
        let s = self.number(
            "throttle.pause_seconds",
            t.pause_seconds,
            0.0,
            false,
            MAX_PAUSE_SECONDS,
            "use 0 for no fixed pause; at most a day",
        );
        let r = self.number(
            "throttle.pause_ratio",
            t.pause_ratio,
            0.0,
            false,
            MAX_PAUSE_RATIO,
            "e.g. 0.2 pauses for a fifth of each partition's runtime; 0 disables it",
        );
        Some(settings::Throttle {
            pause_seconds: s?,
            pause_ratio: r?,
        })
    }

    fn job_options(&mut self, j: &JobConfig) -> Option<settings::JobOptions> {
        let mut ok = true;
        let maximum_bytes_billed = match j.maximum_bytes_billed {
            None => None,
            Some(ByteCount(n)) => match i64::try_from(n) {
                Ok(v) if v > 0 => Some(v),
                _ => {
                    self.issue(
                        "job_config.maximum_bytes_billed",
                        format!("{n} is out of range: must be from 1 to {}", i64::MAX),
                        "give the byte limit as a positive integer, e.g. 1000000000000 for 1 TB; leave it out for no limit",
                    );
                    ok = false;
                    None
                }
            },
        };
        if j.labels.0.len() > MAX_USER_LABELS {
            self.issue(
                "job_config.labels",
                format!(
                    "{} labels given; at most {MAX_USER_LABELS} are allowed",
                    j.labels.0.len()
                ),
                "BigQuery allows 64 labels per job and bq-backfill adds its own; remove some",
            );
            ok = false;
        }
        for (k, v) in &j.labels.0 {
            let field = format!("job_config.labels.{k}");
            if let Err(p) = ident::label_key(k) {
                self.problem(field, p);
                ok = false;
            } else if k.starts_with(RESERVED_LABEL_PREFIX) {
                self.issue(
                    field,
                    format!("label key `{k}` uses the reserved prefix `{RESERVED_LABEL_PREFIX}`"),
                    "bq-backfill sets `bq-backfill*` labels itself; choose another key",
                );
                ok = false;
            } else if let Err(p) = ident::label_value(v) {
                self.problem(field, p);
                ok = false;
            }
        }
        ok.then(|| settings::JobOptions {
            priority: match j.priority {
                Priority::Interactive => settings::Priority::Interactive,
                Priority::Batch => settings::Priority::Batch,
            },
            maximum_bytes_billed,
            labels: j.labels.0.clone(),
        })
    }

    fn retry(&mut self, r: &Retry) -> Option<RetryPolicy> {
        let mut ok = true;
        if !(1..=10).contains(&r.max_attempts) {
            self.issue(
                "retry.max_attempts",
                format!("{} is out of range: must be from 1 to 10", r.max_attempts),
                "1 means no job-level retry; 3 is the default",
            );
            ok = false;
        }
        let initial = self.number(
            "retry.initial_backoff_seconds",
            r.initial_backoff_seconds,
            0.0,
            true,
            MAX_BACKOFF_SECONDS,
            "1 second is the default",
        );
        let max = self.number(
            "retry.max_backoff_seconds",
            r.max_backoff_seconds,
            0.0,
            true,
            MAX_BACKOFF_SECONDS,
            "60 seconds is the default",
        );
        let deadline = self.number(
            "retry.deadline_seconds",
            r.deadline_seconds,
            0.0,
            true,
            MAX_DEADLINE_SECONDS,
            "600 seconds is the default",
        );
        if let (Some(i), Some(m)) = (initial, max)
            && m < i
        {
            self.issue(
                "retry.max_backoff_seconds",
                format!("max_backoff_seconds ({m}) is less than initial_backoff_seconds ({i})"),
                "the cap must be at least the first backoff",
            );
            ok = false;
        }
        let (initial, max, deadline) = (initial?, max?, deadline?);
        ok.then(|| RetryPolicy {
            initial_backoff: Duration::from_secs_f64(initial),
            max_backoff: Duration::from_secs_f64(max),
            deadline: Duration::from_secs_f64(deadline),
            max_attempts: r.max_attempts,
        })
    }

    fn max_runtime(&mut self, v: Option<f64>) -> Option<Option<Duration>> {
        const HINT: &str = "give the time budget in seconds, e.g. 3300 to stop starting partitions after 55 minutes; leave it out for no budget";
        let (field, secs) = match (self.mode, self.overrides.max_runtime, v) {
            (Mode::Resolve, Some(d), _) => ("--max-runtime", d.as_secs_f64()),
            (_, _, Some(v)) => ("max_runtime_seconds", v),
            (_, _, None) => return Some(None),
        };
        let secs = self.number(field, secs, 0.0, true, MAX_RUNTIME_SECONDS, HINT)?;
        Some(Some(Duration::from_secs_f64(secs)))
    }

    fn lease(&mut self, l: &Lease) -> Option<settings::LeaseOptions> {
        let ttl = self.number(
            "lease.ttl_seconds",
            l.ttl_seconds,
            MIN_LEASE_SECONDS,
            false,
            MAX_LEASE_SECONDS,
            "180 (three minutes) is the default; a crashed run's lease is taken over after this long",
        )?;
        Some(settings::LeaseOptions {
            ttl: Duration::from_secs_f64(ttl),
        })
    }
}

/// What range and list validation needs to know about the values
/// partitions start at: instants (time granularities) or integers.
trait Axis {
    type T: Ord + Copy;
    /// Parses a bound; records an issue naming `field` when it is invalid.
    fn parse(&self, b: &mut Builder<'_>, field: &str, v: &Bound) -> Option<Self::T>;
    /// Parses a list entry (a partition's start).
    fn parse_list_entry(&self, b: &mut Builder<'_>, field: &str, v: &Bound) -> Option<Self::T> {
        self.parse(b, field, v)
    }
    /// How many partitions start in [s, e); `None` when unknown.
    fn count(&self, s: Self::T, e: Self::T) -> Option<u128>;
    /// The end that rebuilds only the partition starting at `s`, for hints.
    fn only_hint(&self, s: Self::T) -> String;
    /// The granularity, for messages.
    fn name(&self) -> String;
    /// How to split an oversized range.
    fn split_hint(&self) -> &'static str;
}

struct TimeAxis(partition::Granularity);

impl Axis for TimeAxis {
    type T = DateTime<Utc>;

    fn parse(&self, b: &mut Builder<'_>, field: &str, v: &Bound) -> Option<DateTime<Utc>> {
        b.boundary(self.0, field, v)
    }

    fn parse_list_entry(
        &self,
        b: &mut Builder<'_>,
        field: &str,
        v: &Bound,
    ) -> Option<DateTime<Utc>> {
        let t = b.boundary(self.0, field, v)?;
        if t >= partition::latest() {
            b.issue(
                field,
                format!(
                    "`{v}` is outside BigQuery's partitionable dates (1960-01-01 to 2159-12-31)"
                ),
                "choose dates inside that window",
            );
            return None;
        }
        Some(t)
    }

    fn count(&self, s: DateTime<Utc>, e: DateTime<Utc>) -> Option<u128> {
        let spec = PartitionSpec {
            scheme: partition::Scheme::Time {
                granularity: self.0,
                selection: Selection::Range { start: s, end: e },
            },
            order: partition::Order::OldestFirst,
        };
        Some(partition::count(&spec) as u128)
    }

    fn only_hint(&self, s: DateTime<Utc>) -> String {
        let g = self.0;
        format!(
            "to rebuild only `{}` set end to `{}`",
            display_boundary(g, s),
            display_boundary(g, partition::next_start(g, s))
        )
    }

    fn name(&self) -> String {
        self.0.to_string()
    }

    fn split_hint(&self) -> &'static str {
        "split the range into several runs (each with its own `job` name), e.g. one per year"
    }
}

/// Integer-range bounds; the interval is `None` when it is itself invalid.
struct IntegerAxis(Option<i64>);

impl Axis for IntegerAxis {
    type T = i64;

    fn parse(&self, b: &mut Builder<'_>, field: &str, v: &Bound) -> Option<i64> {
        match v {
            Bound::Integer(n) => Some(*n),
            Bound::Text(s) => match partition::parse_integer(s) {
                Ok(n) => Some(n),
                Err(message) => {
                    b.issue(
                        field,
                        message,
                        "integer_range bounds and list entries are integers (INT64), e.g. 0, 40 or -10, as JSON numbers or strings of digits",
                    );
                    None
                }
            },
        }
    }

    fn count(&self, s: i64, e: i64) -> Option<u128> {
        self.0.map(|i| partition::integer_count(s, e, i))
    }

    fn only_hint(&self, s: i64) -> String {
        match self.0.and_then(|i| s.checked_add(i)) {
            Some(next) => format!("to rebuild only `{s}` set end to `{next}`"),
            None => format!("to rebuild only `{s}` set end to `{s}` + interval"),
        }
    }

    fn name(&self) -> String {
        partition::INTEGER_RANGE.to_string()
    }

    fn split_hint(&self) -> &'static str {
        "split the range into several runs (each with its own `job` name), or check `partitions.interval`"
    }
}

/// The time granularity; `None` for `integer_range`.
fn time_granularity(g: Granularity) -> Option<partition::Granularity> {
    match g {
        Granularity::Hour => Some(partition::Granularity::Hour),
        Granularity::Day => Some(partition::Granularity::Day),
        Granularity::Month => Some(partition::Granularity::Month),
        Granularity::Year => Some(partition::Granularity::Year),
        Granularity::IntegerRange => None,
    }
}

/// The readable spelling of a boundary at granularity `g`.
fn display_boundary(g: partition::Granularity, t: DateTime<Utc>) -> String {
    let f = match g {
        partition::Granularity::Hour => "%Y-%m-%dT%H",
        partition::Granularity::Day => "%Y-%m-%d",
        partition::Granularity::Month => "%Y-%m",
        partition::Granularity::Year => "%Y",
    };
    t.format(f).to_string()
}

fn rank(g: partition::Granularity) -> u8 {
    match g {
        partition::Granularity::Year => 0,
        partition::Granularity::Month => 1,
        partition::Granularity::Day => 2,
        partition::Granularity::Hour => 3,
    }
}

/// A URI placeholder that names a unit smaller than the partition.
fn finer_than(placeholder: &str, g: partition::Granularity) -> bool {
    let unit = match placeholder {
        "month" => partition::Granularity::Month,
        "day" => partition::Granularity::Day,
        "hour" => partition::Granularity::Hour,
        _ => return false,
    };
    rank(unit) > rank(g)
}

/// Whether the placeholders pin down one partition of granularity `g`.
fn identifies_partition(used: &[&str], g: partition::Granularity) -> bool {
    if used.contains(&"partition_id") {
        return true;
    }
    let has = |p: &str| used.contains(&p);
    let date = has("partition_date");
    let year = date || has("year");
    let month = date || has("month");
    let day = date || has("day");
    match g {
        partition::Granularity::Year => year,
        partition::Granularity::Month => year && month,
        partition::Granularity::Day => year && month && day,
        partition::Granularity::Hour => year && month && day && has("hour"),
    }
}

#[cfg(test)]
mod tests;
