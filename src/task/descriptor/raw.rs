//! The raw serde types of the v1 descriptor, exactly as written in JSON,
//! and the JsonSchema helpers that the published schema is generated with.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::MAX_USER_LABELS;
use crate::bq::retry::RetryPolicy;

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
    /// How many partitions run at once, 1 (the default, the safe choice)
    /// to 16; each slot pauses per `throttle`. `--concurrency` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 16))]
    pub concurrency: Option<u32>,
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
    /// Checks run for every partition after its job, before it counts as
    /// done (and, with `write.mode: "staged"`, before anyone can read it).
    /// A failed check records VERIFY_FAILED and follows `on_failure`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub verify: Vec<Check>,
    /// How the partition reaches the destination: `direct` (default) or
    /// `staged` (write-audit-publish).
    #[serde(default)]
    pub write: Write,
}

/// One verification check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// Unique name: letters, digits and `_`, starting with a letter or `_`,
    /// at most 128 characters.
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"))]
    pub name: String,
    /// GoogleSQL SELECT receiving the same partition parameters as the
    /// source query (it must use at least one). `{target}` stands for the
    /// table being checked (the staging table in `staged` mode, else the
    /// destination); bq-backfill replaces it with the backticked table path,
    /// the only text it splices. It must appear, and no other `{...}`
    /// placeholder may.
    pub query: String,
    /// What the query must return.
    pub expect: Expect,
}

/// What a check's query must return: `"zero_rows"` (no rows at all), or
/// one scalar (one row, one column) checked by `{"row_count": {"min", "max"}}`,
/// `{"within_percent_of_current": N}` (compared with the same query over
/// the destination's partition as it is before the write; passes when that
/// is 0) or `{"equals_query": "SELECT ..."}` (equal to that query's scalar).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Expect {
    ZeroRows,
    RowCount(RowCount),
    WithinPercentOfCurrent(f64),
    EqualsQuery(String),
}

/// Bounds of `row_count` (inclusive); at least one is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RowCount {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max: Option<i64>,
}

/// The write strategy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Write {
    /// `direct` (default): the job replaces `destination$P`, then the checks
    /// run and report. `staged`: the job replaces `staging$P`, the checks run
    /// there, and a copy job publishes it into `destination$P` only if every
    /// check passed.
    #[serde(default)]
    pub mode: WriteMode,
    /// `staged` only (and required there): the dataset, in the
    /// destination's project, of the staging table
    /// `<destination table>__bqb_stage` (created when missing, with the
    /// destination's schema and partitioning, expiring 7 days after its
    /// last use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_]{1,1024}$"))]
    pub staging_dataset: Option<String>,
}

/// `direct` or `staged`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    #[default]
    Direct,
    Staged,
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
    /// At most this many partition jobs start in any 10 s, across every
    /// slot (BigQuery allows about 50 partition modifications per table per
    /// 10 s, shared with the table's other writers), 1 to 50. Default: 50
    /// with `concurrency` above 1; a single slot is not limited (it waits
    /// for each job, and a rate-limit error is retried with backoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 50))]
    pub partition_writes_per_10s: Option<u32>,
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
            partition_writes_per_10s: None,
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
    /// (each attempt is a new job), 1 to 10. Jobs that meet BigQuery's rate
    /// limits do not count (see `deadline_seconds`).
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
    /// Total seconds one API call may spend retrying, and one partition
    /// re-running jobs that met BigQuery's rate limits.
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
