//! Response shapes read from the API, and their conversion to the public types.
//!
//! Requests are written with gcp-bigquery-client's model types. Responses
//! are read into these minimal structs instead: serde ignores fields they do
//! not name, so a new or differently-typed field elsewhere in a job or table
//! resource (the crate's models are strict about e.g. field types) cannot
//! make a healthy response undecodable.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Deserializer};

use super::{
    BqError, JobFailure, JobInfo, JobState, JobStats, QueryResult, RangePartitioningMeta,
    TableMeta, TimePartitioningMeta,
};

/// INT64 values arrive as decimal strings; tolerate plain numbers too.
fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Int(i64),
        Float(f64),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Int(i)) => Ok(Some(i)),
        Some(Raw::Float(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
        Some(Raw::Float(f)) => Err(serde::de::Error::custom(format!(
            "expected an int64, got {f}"
        ))),
        Some(Raw::Text(s)) => {
            s.trim().parse().map(Some).map_err(|_| {
                serde::de::Error::custom(format!("expected an int64 string, got {s:?}"))
            })
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ErrorProto {
    pub reason: Option<String>,
    pub message: Option<String>,
}

/// `{"error": {...}}`, the body of every non-2xx answer.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody {
    pub message: Option<String>,
    pub status: Option<String>,
    #[serde(default)]
    pub errors: Vec<ErrorProto>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JobReference {
    pub job_id: Option<String>,
    pub location: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Job {
    pub job_reference: Option<JobReference>,
    pub configuration: Option<JobConfiguration>,
    pub status: Option<JobStatus>,
    pub statistics: Option<JobStatistics>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JobConfiguration {
    pub job_type: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub query: Option<serde::de::IgnoredAny>,
    pub load: Option<serde::de::IgnoredAny>,
    pub copy: Option<serde::de::IgnoredAny>,
    pub extract: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JobStatus {
    pub state: Option<String>,
    pub error_result: Option<ErrorProto>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JobStatistics {
    #[serde(default, deserialize_with = "int64")]
    pub creation_time: Option<i64>,
    #[serde(default, deserialize_with = "int64")]
    pub start_time: Option<i64>,
    #[serde(default, deserialize_with = "int64")]
    pub end_time: Option<i64>,
    #[serde(default, deserialize_with = "int64")]
    pub total_bytes_processed: Option<i64>,
    pub query: Option<QueryStatistics>,
    pub load: Option<LoadStatistics>,
    pub copy: Option<CopyStatistics>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct QueryStatistics {
    #[serde(default, deserialize_with = "int64")]
    pub total_bytes_billed: Option<i64>,
    #[serde(default, deserialize_with = "int64")]
    pub total_bytes_processed: Option<i64>,
    #[serde(default, deserialize_with = "int64")]
    pub num_dml_affected_rows: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LoadStatistics {
    #[serde(default, deserialize_with = "int64")]
    pub output_rows: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CopyStatistics {
    #[serde(default, deserialize_with = "int64")]
    pub copied_rows: Option<i64>,
}

fn millis(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.and_then(|ms| Utc.timestamp_millis_opt(ms).single())
}

impl Job {
    /// Converts a job resource; `fallback_id` is used when the answer lacks a job reference.
    pub(crate) fn into_info(self, fallback_id: &str) -> Result<JobInfo, BqError> {
        let status = self.status.unwrap_or_default();
        let state = match status.state.as_deref() {
            None | Some("PENDING") => JobState::Pending,
            Some("RUNNING") => JobState::Running,
            Some("DONE") => JobState::Done,
            Some(other) => {
                return Err(BqError::Decode {
                    message: format!("job {fallback_id} has unknown state {other:?}"),
                });
            }
        };
        let error = status.error_result.map(|e| JobFailure {
            reason: e.reason.unwrap_or_default(),
            message: e.message.unwrap_or_default(),
        });
        let config = self.configuration.unwrap_or_default();
        let job_type = match config.job_type {
            Some(t) if !t.is_empty() => t.to_ascii_uppercase(),
            _ if config.query.is_some() => "QUERY".to_string(),
            _ if config.load.is_some() => "LOAD".to_string(),
            _ if config.copy.is_some() => "COPY".to_string(),
            _ if config.extract.is_some() => "EXTRACT".to_string(),
            _ => "UNKNOWN".to_string(),
        };
        let stats = self.statistics.unwrap_or_default();
        let query = stats.query.unwrap_or_default();
        let succeeded = state == JobState::Done && error.is_none();
        let rows_written = match job_type.as_str() {
            _ if !succeeded => None,
            "LOAD" => stats.load.and_then(|l| l.output_rows),
            "COPY" => stats.copy.and_then(|c| c.copied_rows),
            // getQueryResults' totalRows replaces this for non-DML queries (see wait_for_job).
            "QUERY" => query.num_dml_affected_rows,
            _ => None,
        };
        let job_id = self
            .job_reference
            .and_then(|r| r.job_id)
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| fallback_id.to_string());
        Ok(JobInfo {
            job_id,
            state,
            error,
            labels: config.labels.unwrap_or_default(),
            job_type,
            stats: JobStats {
                creation_time: millis(stats.creation_time),
                start_time: millis(stats.start_time),
                end_time: millis(stats.end_time),
                bytes_processed: stats.total_bytes_processed.or(query.total_bytes_processed),
                bytes_billed: query.total_bytes_billed,
                rows_written,
            },
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Table {
    pub time_partitioning: Option<TimePartitioning>,
    pub range_partitioning: Option<RangePartitioning>,
    #[serde(default, deserialize_with = "int64")]
    pub num_rows: Option<i64>,
    /// Milliseconds since the epoch (an int64 string on the wire).
    #[serde(default, deserialize_with = "int64")]
    pub creation_time: Option<i64>,
    pub schema: Option<Schema>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct TimePartitioning {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub field: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RangePartitioning {
    pub field: Option<String>,
    #[serde(default)]
    pub range: Range,
}

/// `rangePartitioning.range`: int64s, as strings on the wire.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Range {
    #[serde(default, deserialize_with = "int64")]
    pub start: Option<i64>,
    #[serde(default, deserialize_with = "int64")]
    pub end: Option<i64>,
    #[serde(default, deserialize_with = "int64")]
    pub interval: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Schema {
    #[serde(default)]
    pub fields: Vec<Field>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Field {
    pub name: String,
    #[serde(rename = "type", default)]
    pub field_type: String,
}

impl Table {
    pub(crate) fn into_meta(self) -> TableMeta {
        TableMeta {
            time_partitioning: self.time_partitioning.map(|tp| TimePartitioningMeta {
                // The API omits `type` only for legacy day-partitioned tables.
                kind: tp
                    .kind
                    .filter(|k| !k.is_empty())
                    .unwrap_or_else(|| "DAY".to_string()),
                field: tp.field.filter(|f| !f.is_empty()),
            }),
            range_partitioning: self.range_partitioning.map(|rp| RangePartitioningMeta {
                field: rp.field.unwrap_or_default(),
                // The API always sends the three; an absent one reads as
                // zero, which the preflight refuses as a mismatch.
                start: rp.range.start.unwrap_or_default(),
                end: rp.range.end.unwrap_or_default(),
                interval: rp.range.interval.unwrap_or_default(),
            }),
            num_rows: self.num_rows,
            creation_time: self.creation_time,
            schema: self
                .schema
                .unwrap_or_default()
                .fields
                .into_iter()
                .map(|f| (f.name, f.field_type))
                .collect(),
        }
    }
}

/// The common part of `jobs.query` and `jobs.getQueryResults` answers.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct QueryResults {
    pub job_reference: Option<JobReference>,
    pub job_complete: Option<bool>,
    pub schema: Option<Schema>,
    #[serde(default)]
    pub rows: Vec<Row>,
    pub page_token: Option<String>,
    #[serde(default, deserialize_with = "int64")]
    pub total_rows: Option<i64>,
    #[serde(default, deserialize_with = "int64")]
    pub num_dml_affected_rows: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Row {
    #[serde(default)]
    pub f: Vec<Cell>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Cell {
    #[serde(default)]
    pub v: serde_json::Value,
}

impl QueryResults {
    /// Appends this page's rows; scalars stay strings, nested values become JSON text.
    pub(crate) fn append_rows(&mut self, out: &mut QueryResult) {
        for row in self.rows.drain(..) {
            out.rows.push(
                row.f
                    .into_iter()
                    .map(|cell| match cell.v {
                        serde_json::Value::Null => None,
                        serde_json::Value::String(s) => Some(s),
                        other => Some(other.to_string()),
                    })
                    .collect(),
            );
        }
    }

    pub(crate) fn field_names(&self) -> Vec<String> {
        self.schema
            .as_ref()
            .map(|s| s.fields.iter().map(|f| f.name.clone()).collect())
            .unwrap_or_default()
    }
}

/// `tabledata.insertAll` answer.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InsertAllResponse {
    #[serde(default)]
    pub insert_errors: Vec<InsertError>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct InsertError {
    #[serde(default)]
    pub index: Option<u64>,
    #[serde(default)]
    pub errors: Vec<ErrorProto>,
}
