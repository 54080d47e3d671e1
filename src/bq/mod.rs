//! The BigQuery client boundary: every call to the BigQuery REST API goes
//! through this module, and every call goes through [`crate::bq::retry`].
//!
//! Requests are sent with reqwest directly rather than through
//! gcp-bigquery-client's `Client`, whose response handling
//! (`process_response`) drops the HTTP status and turns a non-JSON error body
//! (a 502 page from Google's front end, a proxy's 503) into a decoding error
//! that looks like a bug; transient failures could then not be told from
//! permanent ones. Doing the HTTP here also gives per-request timeouts (long
//! polls need more than the default), one attempt per call for the retry
//! loop, and tolerant response decoding (see `wire.rs`). The crate's model
//! types are still the wire format of what we send (`JobConfiguration`,
//! `Table`, `QueryRequest`, `TableDataInsertAllRequest`), but only inside
//! this module: callers describe jobs with [`JobSpec`] (`job.rs`).
//!
//! Endpoint selection follows the Google client libraries: see [`Endpoint`].

mod auth;
mod job;
pub mod retry;

pub use job::{Destination, JobSpec, LoadJob, QueryJob};
#[cfg(test)]
mod tests;
mod wire;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use gcp_bigquery_client::model::clustering::Clustering;
use gcp_bigquery_client::model::dataset::Dataset;
use gcp_bigquery_client::model::field_type::FieldType;
use gcp_bigquery_client::model::job::Job;
use gcp_bigquery_client::model::job_configuration::JobConfiguration;
use gcp_bigquery_client::model::job_reference::JobReference;
use gcp_bigquery_client::model::query_parameter::QueryParameter;
use gcp_bigquery_client::model::query_parameter_type::QueryParameterType;
use gcp_bigquery_client::model::query_parameter_value::QueryParameterValue;
use gcp_bigquery_client::model::query_request::QueryRequest;
use gcp_bigquery_client::model::table::Table;
use gcp_bigquery_client::model::table_data_insert_all_request::TableDataInsertAllRequest;
use gcp_bigquery_client::model::table_data_insert_all_request_rows::TableDataInsertAllRequestRows;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use gcp_bigquery_client::model::table_reference::TableReference;
use gcp_bigquery_client::model::table_schema::TableSchema;
use gcp_bigquery_client::model::time_partitioning::TimePartitioning;
use gcp_bigquery_client::model::view_definition::ViewDefinition;
use reqwest::{Method, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use self::retry::{Class, RetryObserver, RetryPolicy, Retryable, describe_attempts};
pub use crate::bq::retry::RetryNotice;
use crate::task::settings::TableRef;
use auth::Credentials;

/// Google's production endpoint.
const GOOGLE_BASE_URL: &str = "https://bigquery.googleapis.com/bigquery/v2";
/// The environment variable every Google client library honours for emulators.
pub const EMULATOR_HOST_VAR: &str = "BIGQUERY_EMULATOR_HOST";
/// How long one `getQueryResults`/`jobs.query` call may wait server-side.
const LONG_POLL: Duration = Duration::from_secs(10);
/// A long poll that answers "not complete" faster than this is treated as a
/// server that does not long-poll, and followed by a backoff sleep.
const FAST_POLL: Duration = Duration::from_secs(1);
const POLL_INITIAL: Duration = Duration::from_millis(250);
const POLL_MAX: Duration = Duration::from_secs(5);
/// The shortest sleep between two jobs.get of a load or copy job.
const JOB_POLL_MIN: Duration = Duration::from_millis(100);
const CONNECT_TIMEOUT_CAP: Duration = Duration::from_secs(10);

/// The retry deadline, and the longest request, before the endpoint has answered once.
const FIRST_CONTACT_DEADLINE: Duration = Duration::from_secs(8);

/// A call still unanswered this long after its long-poll says so on stderr.
const SLOW_CALL_NOTICE: Duration = Duration::from_secs(5);

/// Where the API lives and whether requests carry credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `BIGQUERY_EMULATOR_HOST=host:port`: plain HTTP, no credentials.
    Emulator { host: String },
    /// `--api-endpoint URL`: that server, with Google credentials.
    Custom { url: String },
    /// `https://bigquery.googleapis.com`, with Google credentials.
    Google,
}

impl Endpoint {
    /// Picks the endpoint: an explicit `--api-endpoint` wins over the ambient
    /// `BIGQUERY_EMULATOR_HOST`, which wins over Google. Empty values count
    /// as unset.
    pub fn from_env(
        api_endpoint_flag: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Endpoint {
        if let Some(url) = api_endpoint_flag.map(str::trim).filter(|u| !u.is_empty()) {
            return Endpoint::Custom {
                url: url.to_string(),
            };
        }
        if let Some(host) = env(EMULATOR_HOST_VAR)
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
        {
            return Endpoint::Emulator { host };
        }
        Endpoint::Google
    }

    /// The REST base URL, ending in `/bigquery/v2` (no trailing slash).
    pub fn base_url(&self) -> String {
        match self {
            Endpoint::Emulator { host } => {
                // Tolerate a scheme: some tools export the variable as a URL.
                let host = host
                    .strip_prefix("http://")
                    .unwrap_or(host)
                    .trim_end_matches('/');
                format!("http://{host}/bigquery/v2")
            }
            Endpoint::Custom { url } => {
                let url = url.trim_end_matches('/');
                if url.ends_with("/bigquery/v2") {
                    url.to_string()
                } else {
                    format!("{url}/bigquery/v2")
                }
            }
            Endpoint::Google => GOOGLE_BASE_URL.to_string(),
        }
    }

    /// Whether requests carry Google credentials.
    pub fn uses_credentials(&self) -> bool {
        !matches!(self, Endpoint::Emulator { .. })
    }
}

/// Everything [`BigQuery::connect`] needs.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub endpoint: Endpoint,
    /// The project that runs (and is billed for) jobs and queries.
    pub project: String,
    /// Job location; required by BigQuery for jobs outside the US/EU multi-regions.
    pub location: Option<String>,
    pub retry: RetryPolicy,
    /// Timeout of one HTTP request (long polls add their server-side wait).
    pub request_timeout: Duration,
}

/// A failed BigQuery API call.
#[derive(Debug, thiserror::Error)]
pub enum BqError {
    /// BigQuery answered with an error status; `message` is BigQuery's own.
    #[error("bigquery {operation} failed: {message} (http {status}, reason {reason}; {})", describe_attempts(*attempts, *elapsed))]
    Api {
        operation: &'static str,
        status: u16,
        reason: String,
        message: String,
        attempts: u32,
        elapsed: Duration,
        /// The answer's `Retry-After`, if any: the least wait before retrying.
        retry_after: Option<Duration>,
    },
    /// No usable answer: connection refused/reset, closed early, timed out.
    #[error("bigquery {operation} failed: {message} ({})", describe_attempts(*attempts, *elapsed))]
    Transport {
        operation: &'static str,
        /// `timeout`, `connectionError` or `transportError`.
        reason: &'static str,
        message: String,
        attempts: u32,
        elapsed: Duration,
    },
    /// Credentials could not be found or exchanged for a token.
    #[error("bigquery credentials: {message}")]
    Auth {
        message: String,
        /// What to do about it, when more specific than [`BqError::hint`].
        hint: Option<String>,
    },
    /// A 2xx answer that is not what the API documents.
    #[error("unexpected bigquery response: {message}")]
    Decode { message: String },
    /// `tabledata.insertAll` accepted the request but rejected rows.
    #[error("bigquery insertAll into {table} rejected {rows} row(s): {message}")]
    InsertErrors {
        table: String,
        rows: usize,
        reason: String,
        message: String,
    },
    /// A request we refuse to send (bad endpoint URL, unknown column type).
    #[error("{message}")]
    Invalid { message: String },
}

impl BqError {
    /// BigQuery's error reason (`invalidQuery`, `backendError`, ...), or a
    /// short description for failures that have none.
    pub fn reason(&self) -> &str {
        match self {
            BqError::Api { reason, .. } => reason,
            BqError::Transport { reason, .. } => reason,
            BqError::Auth { .. } => "auth",
            BqError::Decode { .. } => "decode",
            BqError::InsertErrors { reason, .. } => reason,
            BqError::Invalid { .. } => "invalid",
        }
    }

    /// Whether the same call may succeed later (after the retry deadline
    /// this means "try again later", e.g. exit code 75).
    pub fn is_transient(&self) -> bool {
        match self {
            BqError::Api { status, reason, .. } => {
                retry::classify_http(*status, Some(reason)) == Class::Transient
            }
            BqError::Transport { .. } => true,
            _ => false,
        }
    }

    /// Whether the credentials lack access: 401, 403 `accessDenied`/`forbidden`, or no credentials at all.
    pub fn is_permission(&self) -> bool {
        match self {
            BqError::Api { status: 401, .. } => true,
            BqError::Api {
                status: 403,
                reason,
                ..
            } => reason == "accessDenied" || reason == "forbidden",
            BqError::Auth { .. } => true,
            _ => false,
        }
    }

    /// The API method (or `oauth2.token`) that failed, if known.
    pub fn operation(&self) -> &str {
        match self {
            BqError::Api { operation, .. } | BqError::Transport { operation, .. } => operation,
            _ => "",
        }
    }

    /// How many attempts were made (1 for failures that are never retried).
    pub fn attempts(&self) -> u32 {
        match self {
            BqError::Api { attempts, .. } | BqError::Transport { attempts, .. } => *attempts,
            _ => 1,
        }
    }

    /// The HTTP status, for API errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            BqError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// HTTP 404 with BigQuery's error body. A bare 404 (a proxy, a wrong
    /// `--api-endpoint`) is not "the table does not exist".
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404) && self.reason() != "http404"
    }

    /// HTTP 409 (`duplicate`: the job, table or dataset already exists).
    pub fn is_already_exists(&self) -> bool {
        self.status() == Some(409)
    }

    /// A known fix, as a `hint:` line.
    pub fn hint(&self) -> Option<&'static str> {
        if matches!(self, BqError::Auth { .. }) || matches!(self, BqError::Api { status: 401, .. })
        {
            return Some(
                "hint: run `gcloud auth application-default login`, or point GOOGLE_APPLICATION_CREDENTIALS at a credentials file",
            );
        }
        if self.is_permission() {
            return Some(
                "hint: the account needs roles/bigquery.jobUser on the project and roles/bigquery.dataEditor on the datasets",
            );
        }
        match self.reason() {
            "quotaExceeded" => Some(
                "hint: a BigQuery quota is exhausted; raise it or resume the backfill after it resets",
            ),
            "notFound" => Some(
                "hint: check the project, dataset and table names; for datasets outside the US/EU multi-regions pass their location (--location or \"location\")",
            ),
            "timeout" | "connectionError" if self.operation() == "oauth2.token" => Some(
                "hint: check network access to the token endpoint: the credentials file's token_uri or token_url, the metadata server, or a proxy in between",
            ),
            "timeout" | "connectionError" => Some(
                "hint: check network access to the endpoint (BIGQUERY_EMULATOR_HOST / --api-endpoint if set)",
            ),
            _ => None,
        }
    }
}

impl Retryable for BqError {
    fn is_transient(&self) -> bool {
        BqError::is_transient(self)
    }

    fn reason(&self) -> &str {
        BqError::reason(self)
    }

    fn set_attempts(&mut self, total: u32, took: Duration) {
        if let BqError::Api {
            attempts, elapsed, ..
        }
        | BqError::Transport {
            attempts, elapsed, ..
        } = self
        {
            *attempts = total;
            *elapsed = took;
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            BqError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// `status.state` of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    Pending,
    Running,
    Done,
}

/// `status.errorResult` of a DONE job: the job failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobFailure {
    pub reason: String,
    pub message: String,
}

/// Statistics worth recording in the audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JobStats {
    pub creation_time: Option<DateTime<Utc>>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub bytes_processed: Option<i64>,
    pub bytes_billed: Option<i64>,
    /// Rows in the destination after a successful job: query → result rows
    /// (or DML affected rows), load → `outputRows`, copy → `copiedRows`.
    pub rows_written: Option<i64>,
}

/// What we know about one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    pub job_id: String,
    pub state: JobState,
    /// Set iff the job is DONE and failed.
    pub error: Option<JobFailure>,
    pub labels: BTreeMap<String, String>,
    /// QUERY, LOAD, COPY (EXTRACT, UNKNOWN).
    pub job_type: String,
    pub stats: JobStats,
}

/// Result of [`BigQuery::insert_job`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    /// The job was created by this call.
    Created(JobInfo),
    /// A job with this ID already existed (ours from an attempt whose answer
    /// was lost, or someone else's: compare the labels).
    Existing(JobInfo),
}

/// A table's time partitioning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimePartitioningMeta {
    /// HOUR, DAY, MONTH or YEAR.
    pub kind: String,
    /// The partitioning column; `None` for ingestion-time partitioning.
    pub field: Option<String>,
}

/// A table's integer-range partitioning (`rangePartitioning`): partitions
/// start at `start`, `start + interval`, ... below `end`; values outside
/// [start, end) go to `__UNPARTITIONED__`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangePartitioningMeta {
    /// The INT64 partitioning column.
    pub field: String,
    /// Inclusive start of the range.
    pub start: i64,
    /// Exclusive end of the range.
    pub end: i64,
    /// Width of each partition.
    pub interval: i64,
}

/// What the backfiller needs to know about an existing table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMeta {
    pub time_partitioning: Option<TimePartitioningMeta>,
    pub range_partitioning: Option<RangePartitioningMeta>,
    pub num_rows: Option<i64>,
    /// When the table was created (ms since the epoch): tells a recreated
    /// table from the one it replaced.
    pub creation_time: Option<i64>,
    /// Top-level columns: (name, type).
    pub schema: Vec<(String, String)>,
}

/// One column of a table to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: String,
    /// BigQuery type name: STRING, INT64, TIMESTAMP, ...
    pub field_type: String,
    /// NULLABLE, REQUIRED or REPEATED (empty = NULLABLE).
    pub mode: String,
}

/// A table to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewTable {
    pub schema: Vec<FieldSpec>,
    /// Day-partition on this column.
    pub partition_day_field: Option<String>,
    pub clustering: Vec<String>,
    pub description: Option<String>,
    /// A logical view over this GoogleSQL query instead of a table (the
    /// schema is then BigQuery's to derive).
    pub view_query: Option<String>,
}

/// A named query parameter (`@name` in GoogleSQL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryParam {
    pub name: String,
    /// STRING, INT64, DATE, TIMESTAMP, BOOL or FLOAT64.
    pub type_: String,
    /// The value in BigQuery's parameter text form; `None` is SQL NULL.
    pub value: Option<String>,
}

impl QueryParam {
    fn typed(name: impl Into<String>, type_: &str, value: Option<String>) -> Self {
        QueryParam {
            name: name.into(),
            type_: type_.to_string(),
            value,
        }
    }

    pub fn string(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self::typed(name, "STRING", Some(value.into()))
    }

    pub fn int64(name: impl Into<String>, value: i64) -> Self {
        Self::typed(name, "INT64", Some(value.to_string()))
    }

    pub fn float64(name: impl Into<String>, value: f64) -> Self {
        Self::typed(name, "FLOAT64", Some(value.to_string()))
    }

    pub fn bool(name: impl Into<String>, value: bool) -> Self {
        Self::typed(name, "BOOL", Some(value.to_string()))
    }

    /// As `YYYY-MM-DD`.
    pub fn date(name: impl Into<String>, value: NaiveDate) -> Self {
        Self::typed(name, "DATE", Some(value.format("%Y-%m-%d").to_string()))
    }

    /// As `YYYY-MM-DD HH:MM:SS.ffffff+00:00`, the form the official clients send.
    pub fn timestamp(name: impl Into<String>, value: DateTime<Utc>) -> Self {
        Self::typed(
            name,
            "TIMESTAMP",
            Some(value.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string()),
        )
    }

    /// A typed NULL.
    pub fn null(name: impl Into<String>, type_: &str) -> Self {
        Self::typed(name, type_, None)
    }

    fn to_model(&self) -> QueryParameter {
        QueryParameter {
            name: Some(self.name.clone()),
            parameter_type: Some(QueryParameterType {
                r#type: self.type_.clone(),
                ..Default::default()
            }),
            parameter_value: Some(QueryParameterValue {
                value: self.value.clone(),
                ..Default::default()
            }),
        }
    }
}

/// All rows of a query, every value in BigQuery's string form (INT64 as
/// decimal text, TIMESTAMP as float seconds since the epoch, DATE as
/// `YYYY-MM-DD`); NULL is `None`; RECORD/REPEATED values are JSON text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryResult {
    /// Top-level column names, in order.
    pub fields: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl QueryResult {
    /// The index of column `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f == name)
    }

    /// The value of column `name` in row `row` (`None` for NULL, a missing
    /// row or an unknown column).
    pub fn get(&self, row: usize, name: &str) -> Option<&str> {
        let col = self.column(name)?;
        self.rows.get(row)?.get(col)?.as_deref()
    }
}

/// A connected BigQuery client; cheap to clone.
#[derive(Clone)]
pub struct BigQuery {
    inner: Arc<Inner>,
    observer: Option<RetryObserver>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    endpoint: Endpoint,
    project: String,
    location: Option<String>,
    retry: RetryPolicy,
    request_timeout: Duration,
    credentials: Credentials,
    /// Whether the endpoint has answered (anything but a transport failure) yet.
    contacted: AtomicBool,
}

impl fmt::Debug for BigQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Deliberately manual: the credentials must never be printed.
        f.debug_struct("BigQuery")
            .field("base_url", &self.inner.base.as_str())
            .field("project", &self.inner.project)
            .field("location", &self.inner.location)
            .field("credentials", &self.inner.credentials)
            .finish_non_exhaustive()
    }
}

/// One API request, sent once per attempt.
/// An HTTP error BigQuery answered with (not a token endpoint's).
fn answered_by_bigquery(e: &BqError) -> bool {
    matches!(e, BqError::Api { operation, .. } if *operation != "oauth2.token")
}

struct Call<'a> {
    operation: &'static str,
    method: Method,
    path: &'a [&'a str],
    query: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    /// Server-side wait the request asks for (added to the timeout).
    long_poll: Duration,
}

impl<'a> Call<'a> {
    fn new(operation: &'static str, method: Method, path: &'a [&'a str]) -> Self {
        Call {
            operation,
            method,
            path,
            query: Vec::new(),
            body: None,
            long_poll: Duration::ZERO,
        }
    }

    fn json(mut self, body: &impl Serialize) -> Result<Self, BqError> {
        let bytes = serde_json::to_vec(body).map_err(|e| BqError::Invalid {
            message: format!("cannot encode the {} request: {e}", self.operation),
        })?;
        self.body = Some(bytes);
        Ok(self)
    }

    fn query(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }

    fn location(self, location: Option<&str>) -> Self {
        match location {
            Some(loc) => self.query("location", loc),
            None => self,
        }
    }
}

/// What a checked `getQueryResults` found.
enum Fetched {
    Page(wire::QueryResults),
    /// getQueryResults failed because the job is over (and usually failed);
    /// the error is what getQueryResults said.
    JobDone(JobInfo, BqError),
}

impl BigQuery {
    /// Builds the client. For Google endpoints this looks up
    /// application-default credentials (no token is fetched yet).
    pub async fn connect(cfg: ClientConfig) -> Result<BigQuery, BqError> {
        let base_text = cfg.endpoint.base_url();
        let base = Url::parse(&base_text)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && !u.cannot_be_a_base() && u.host().is_some())
            .ok_or_else(|| BqError::Invalid {
                message: format!("invalid bigquery endpoint {base_text:?}\nhint: use host:port for BIGQUERY_EMULATOR_HOST and an http(s) URL for --api-endpoint"),
            })?;
        if cfg.project.trim().is_empty() {
            return Err(BqError::Invalid {
                message: "no bigquery project given".to_string(),
            });
        }
        // hickory: DNS without glibc's NSS, which a static binary cannot load.
        let http = reqwest::Client::builder()
            .hickory_dns(true)
            .connect_timeout(cfg.request_timeout.min(CONNECT_TIMEOUT_CAP))
            .user_agent(concat!("bq-backfill/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| BqError::Invalid {
                message: format!("cannot set up the http client: {e}"),
            })?;
        let credentials = if cfg.endpoint.uses_credentials() {
            auth::discover(&|name| std::env::var(name).ok(), &http).await?
        } else {
            Credentials::None
        };
        Ok(BigQuery {
            inner: Arc::new(Inner {
                http,
                base,
                endpoint: cfg.endpoint,
                project: cfg.project,
                location: cfg.location.filter(|l| !l.is_empty()),
                retry: cfg.retry,
                request_timeout: cfg.request_timeout,
                credentials,
                contacted: AtomicBool::new(false),
            }),
            observer: None,
        })
    }

    /// Called before each backoff sleep (for `retry_scheduled` events).
    pub fn with_retry_observer(mut self, f: RetryObserver) -> Self {
        self.observer = Some(f);
        self
    }

    /// The endpoint this client talks to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    /// The project that runs jobs.
    pub fn project(&self) -> &str {
        &self.inner.project
    }

    /// The job location, if configured.
    pub fn location(&self) -> Option<&str> {
        self.inner.location.as_deref()
    }

    /// `tables.get`; a missing table (or dataset) is `Ok(None)`.
    pub async fn get_table(&self, t: &TableRef) -> Result<Option<TableMeta>, BqError> {
        let path = [
            "projects", &t.project, "datasets", &t.dataset, "tables", &t.table,
        ];
        match self
            .execute_json::<wire::Table>(&Call::new("tables.get", Method::GET, &path))
            .await
        {
            Ok(table) => Ok(Some(table.into_meta())),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `tables.insert`; `Ok(false)` if the table already exists (also when
    /// an earlier attempt of this call created it and its answer was lost).
    pub async fn create_table(&self, t: &TableRef, spec: &NewTable) -> Result<bool, BqError> {
        let mut body =
            serde_json::to_value(table_model(t, spec)?).map_err(|e| BqError::Invalid {
                message: format!("cannot encode the tables.insert request: {e}"),
            })?;
        if spec.view_query.is_some()
            && let Some(fields) = body.as_object_mut()
        {
            // A view's schema is derived from its query.
            fields.remove("schema");
        }
        self.insert_table(t, &body).await
    }

    /// `tables.insert` of `body` into `t`'s dataset; `Ok(false)` if the
    /// table already exists (also when an earlier attempt created it).
    async fn insert_table(&self, t: &TableRef, body: &serde_json::Value) -> Result<bool, BqError> {
        let path = ["projects", &t.project, "datasets", &t.dataset, "tables"];
        let call = Call::new("tables.insert", Method::POST, &path).json(body)?;
        match self.execute(&call).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_already_exists() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Adds NULLABLE columns to an existing table: `tables.get` for its
    /// schema as BigQuery has it (nested fields, modes and descriptions
    /// untouched), then `tables.patch` with that schema plus the missing
    /// `columns`. Adding NULLABLE columns is a change BigQuery allows on a
    /// live table; columns already there are left as they are, so two
    /// runners upgrading at once send the same schema.
    pub async fn add_columns(&self, t: &TableRef, columns: &[FieldSpec]) -> Result<(), BqError> {
        let path = [
            "projects", &t.project, "datasets", &t.dataset, "tables", &t.table,
        ];
        let table: serde_json::Value = self
            .execute_json(&Call::new("tables.get", Method::GET, &path))
            .await?;
        let mut fields = table
            .pointer("/schema/fields")
            .and_then(|f| f.as_array())
            .cloned()
            .unwrap_or_default();
        let has = |fields: &[serde_json::Value], name: &str| {
            fields.iter().any(|f| {
                f.get("name")
                    .and_then(|n| n.as_str())
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
        };
        let before = fields.len();
        for c in columns {
            if !has(&fields, &c.name) {
                fields.push(serde_json::json!({
                    "name": c.name, "type": c.field_type, "mode": "NULLABLE",
                }));
            }
        }
        if fields.len() == before {
            return Ok(());
        }
        let body = serde_json::json!({ "schema": { "fields": fields } });
        let call = Call::new("tables.patch", Method::PATCH, &path).json(&body)?;
        self.execute(&call).await.map(|_| ())
    }

    /// `tables.insert` of `t` with `like`'s schema, partitioning and
    /// clustering (as `tables.get` returns them), expiring at
    /// `expires_ms` (ms since the epoch). `Ok(false)` if `t` exists;
    /// `Err` not found if `like` is missing.
    pub async fn create_table_like(
        &self,
        t: &TableRef,
        like: &TableRef,
        expires_ms: i64,
    ) -> Result<bool, BqError> {
        let path = [
            "projects",
            &like.project,
            "datasets",
            &like.dataset,
            "tables",
            &like.table,
        ];
        let source: serde_json::Value = self
            .execute_json(&Call::new("tables.get", Method::GET, &path))
            .await?;
        let mut body = serde_json::json!({
            "tableReference": {"projectId": t.project, "datasetId": t.dataset, "tableId": t.table},
            "expirationTime": expires_ms.to_string(),
            "description": format!("bq-backfill staging table of {like}; expires unless used"),
        });
        for key in [
            "schema",
            "timePartitioning",
            "rangePartitioning",
            "clustering",
        ] {
            if let Some(v) = source.get(key).filter(|v| !v.is_null()) {
                body[key] = v.clone();
            }
        }
        self.insert_table(t, &body).await
    }

    /// `tables.patch` of the table's `expirationTime` (ms since the epoch).
    pub async fn set_expiration(&self, t: &TableRef, expires_ms: i64) -> Result<(), BqError> {
        let path = [
            "projects", &t.project, "datasets", &t.dataset, "tables", &t.table,
        ];
        let body = serde_json::json!({ "expirationTime": expires_ms.to_string() });
        let call = Call::new("tables.patch", Method::PATCH, &path).json(&body)?;
        self.execute(&call).await.map(|_| ())
    }

    /// `datasets.insert` in the configured location; `Ok(false)` if it exists.
    pub async fn create_dataset(&self, project: &str, dataset: &str) -> Result<bool, BqError> {
        let mut body = Dataset::new(project, dataset);
        body.location = self.inner.location.clone();
        let path = ["projects", project, "datasets"];
        let call = Call::new("datasets.insert", Method::POST, &path).json(&body)?;
        match self.execute(&call).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_already_exists() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Dry-runs `spec` (`jobs.insert` with `dryRun`): BigQuery validates the
    /// query against the tables and the destination and says how many bytes
    /// it would read; nothing runs, nothing is billed. Returns those bytes.
    pub async fn dry_run(&self, spec: &JobSpec) -> Result<i64, BqError> {
        let mut configuration = spec.to_model();
        configuration.dry_run = Some(true);
        let mut job = job_model(
            "",
            &self.inner.project,
            self.inner.location.as_deref(),
            configuration,
            &BTreeMap::new(),
        );
        // A dry run has no job ID: BigQuery creates no job.
        if let Some(reference) = job.job_reference.as_mut() {
            reference.job_id = None;
        }
        let path = ["projects", &self.inner.project, "jobs"];
        let call = Call::new("jobs.insert", Method::POST, &path).json(&job)?;
        let answer: wire::Job = self.execute_json(&call).await?;
        Ok(answer
            .into_info("dry-run")?
            .stats
            .bytes_processed
            .unwrap_or(0))
    }

    /// `jobs.insert` with our own job ID and `labels` added to the
    /// configuration. Transient failures are retried with the SAME job ID
    /// (the outcome of a failed insert is unknown); HTTP 409 at any attempt
    /// means the ID exists, and the job is fetched and returned as
    /// [`InsertOutcome::Existing`]. Query jobs are GoogleSQL
    /// (`useLegacySql: false`) because the API's default is legacy SQL.
    pub async fn insert_job(
        &self,
        job_id: &str,
        spec: &JobSpec,
        labels: &BTreeMap<String, String>,
    ) -> Result<InsertOutcome, BqError> {
        let job = job_model(
            job_id,
            &self.inner.project,
            self.inner.location.as_deref(),
            spec.to_model(),
            labels,
        );
        let path = ["projects", &self.inner.project, "jobs"];
        let call = Call::new("jobs.insert", Method::POST, &path).json(&job)?;
        match self.execute_json::<wire::Job>(&call).await {
            Ok(created) => Ok(InsertOutcome::Created(created.into_info(job_id)?)),
            Err(e) if e.is_already_exists() => match self.get_job(job_id).await? {
                Some(existing) => Ok(InsertOutcome::Existing(existing)),
                None => Err(job_not_found(format!(
                    "jobs.insert reports job {job_id} exists, but jobs.get cannot find it (wrong location?)"
                ))),
            },
            Err(e) => Err(e),
        }
    }

    /// `jobs.get`; an unknown job is `Ok(None)`.
    pub async fn get_job(&self, job_id: &str) -> Result<Option<JobInfo>, BqError> {
        let path = ["projects", &self.inner.project, "jobs", job_id];
        let call = Call::new("jobs.get", Method::GET, &path).location(self.location());
        match self.execute_json::<wire::Job>(&call).await {
            Ok(job) => Ok(Some(job.into_info(job_id)?)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `jobs.cancel`: returns at once; the job ends later with reason `stopped`.
    pub async fn cancel_job(&self, job_id: &str) -> Result<(), BqError> {
        let path = ["projects", &self.inner.project, "jobs", job_id, "cancel"];
        let call = Call::new("jobs.cancel", Method::POST, &path).location(self.location());
        self.execute(&call).await.map(|_| ())
    }

    /// Waits until the job is DONE and returns it; a job that failed is
    /// `Ok` with [`JobInfo::error`] set. Query jobs are long-polled with
    /// `jobs.getQueryResults` (which also yields the result row count); load
    /// and copy jobs are polled with `jobs.get` every 0.25 s → 5 s.
    /// Cancel-safe: dropping the future abandons only the waiting.
    pub async fn wait_for_job(&self, job_id: &str) -> Result<JobInfo, BqError> {
        let info = self.require_job(job_id).await?;
        self.wait_for(info).await
    }

    /// [`BigQuery::wait_for_job`] for a job whose state is already known
    /// (from jobs.insert or jobs.get), saving the jobs.get that only learns
    /// its type.
    pub async fn wait_for(&self, mut info: JobInfo) -> Result<JobInfo, BqError> {
        let job_id = info.job_id.clone();
        let job_id = job_id.as_str();
        if info.job_type.is_empty() {
            info = self.require_job(job_id).await?;
        }
        if info.job_type == "QUERY" {
            return self.wait_for_query(job_id).await;
        }
        // Load and copy jobs have no long-poll: jobs.get, at intervals that grow with the wait.
        let began = tokio::time::Instant::now();
        while info.state != JobState::Done {
            tokio::time::sleep(job_poll_delay(began.elapsed())).await;
            info = self.require_job(job_id).await?;
        }
        Ok(info)
    }

    /// `jobs.query` with named parameters, then `jobs.getQueryResults` until
    /// the query is complete and every page is read. Retries reuse one
    /// `requestId`, so BigQuery runs the query at most once.
    pub async fn query(&self, sql: &str, params: &[QueryParam]) -> Result<QueryResult, BqError> {
        let request = QueryRequest {
            parameter_mode: Some("NAMED".to_string()),
            query_parameters: Some(params.iter().map(QueryParam::to_model).collect()),
            location: self.inner.location.clone(),
            timeout_ms: Some(LONG_POLL.as_millis() as i32),
            request_id: Some(uuid::Uuid::new_v4().to_string()),
            ..QueryRequest::new(sql)
        };
        let path = ["projects", &self.inner.project, "queries"];
        let mut call = Call::new("jobs.query", Method::POST, &path).json(&request)?;
        call.long_poll = LONG_POLL;
        let mut page: wire::QueryResults = self.execute_json(&call).await?;

        let reference = page.job_reference.take().unwrap_or_default();
        let location = reference.location.or_else(|| self.inner.location.clone());
        let job_id = reference.job_id.filter(|id| !id.is_empty());
        let need_job_id = || {
            job_id.clone().ok_or_else(|| BqError::Decode {
                message: "jobs.query answer lacks jobReference.jobId".to_string(),
            })
        };
        let mut poll = Poll::new();
        while page.job_complete != Some(true) {
            let started = tokio::time::Instant::now();
            page = match self
                .fetch_results(&need_job_id()?, location.as_deref(), None, None, false)
                .await?
            {
                Fetched::Page(next) => next,
                Fetched::JobDone(_, err) => return Err(err),
            };
            if page.job_complete != Some(true) && started.elapsed() < FAST_POLL {
                tokio::time::sleep(poll.next_delay()).await;
            }
        }
        let mut result = QueryResult {
            fields: page.field_names(),
            rows: Vec::new(),
        };
        page.append_rows(&mut result);
        while let Some(token) = page.page_token.take().filter(|t| !t.is_empty()) {
            page = match self
                .fetch_results(
                    &need_job_id()?,
                    location.as_deref(),
                    Some(&token),
                    None,
                    false,
                )
                .await?
            {
                Fetched::Page(next) => next,
                Fetched::JobDone(_, err) => return Err(err),
            };
            if result.fields.is_empty() {
                result.fields = page.field_names();
            }
            page.append_rows(&mut result);
        }
        Ok(result)
    }

    /// `tabledata.insertAll` with one insertId per row (BigQuery's
    /// best-effort dedup makes retries safe); any `insertErrors` → `Err`.
    pub async fn insert_rows(
        &self,
        t: &TableRef,
        rows: &[(String, serde_json::Value)],
    ) -> Result<(), BqError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut body = TableDataInsertAllRequest::new();
        body.add_rows(
            rows.iter()
                .map(|(id, json)| TableDataInsertAllRequestRows {
                    insert_id: Some(id.clone()),
                    json: json.clone(),
                })
                .collect(),
        )
        .map_err(|e| BqError::Invalid {
            message: format!("cannot build the insertAll request: {e}"),
        })?;
        let path = [
            "projects",
            &t.project,
            "datasets",
            &t.dataset,
            "tables",
            &t.table,
            "insertAll",
        ];
        let call = Call::new("tabledata.insertAll", Method::POST, &path).json(&body)?;
        let answer: wire::InsertAllResponse = self.execute_json(&call).await?;
        if answer.insert_errors.is_empty() {
            return Ok(());
        }
        // Rows that were fine but sent along with a bad one come back as `stopped`; show the cause first.
        let mut details: Vec<(String, String)> = answer
            .insert_errors
            .iter()
            .flat_map(|row| {
                row.errors.iter().map(move |e| {
                    let reason = e.reason.clone().unwrap_or_default();
                    let index = row
                        .index
                        .map(|i| format!("row {i}"))
                        .unwrap_or_else(|| "a row".to_string());
                    (
                        reason.clone(),
                        format!("{index}: {reason}: {}", e.message.as_deref().unwrap_or("")),
                    )
                })
            })
            .collect();
        details.sort_by_key(|(reason, _)| reason == "stopped");
        let reason = details
            .first()
            .map(|(r, _)| r.clone())
            .unwrap_or_else(|| "invalid".to_string());
        let message = details
            .iter()
            .take(3)
            .map(|(_, m)| m.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        Err(BqError::InsertErrors {
            table: t.to_string(),
            rows: answer.insert_errors.len(),
            reason,
            message,
        })
    }

    async fn require_job(&self, job_id: &str) -> Result<JobInfo, BqError> {
        self.get_job(job_id)
            .await?
            .ok_or_else(|| job_not_found(format!("job {job_id} not found")))
    }

    async fn wait_for_query(&self, job_id: &str) -> Result<JobInfo, BqError> {
        let mut poll = Poll::new();
        loop {
            let started = tokio::time::Instant::now();
            match self
                .fetch_results(job_id, self.location(), None, Some(0), true)
                .await?
            {
                Fetched::JobDone(info, _) => return Ok(info),
                Fetched::Page(page) if page.job_complete == Some(true) => {
                    let mut info = self.require_job(job_id).await?;
                    if info.state == JobState::Done {
                        if info.error.is_none() {
                            info.stats.rows_written = page
                                .num_dml_affected_rows
                                .or(page.total_rows)
                                .or(info.stats.rows_written);
                        }
                        return Ok(info);
                    }
                    // jobs.get can lag getQueryResults by a moment.
                    tokio::time::sleep(poll.next_delay()).await;
                }
                Fetched::Page(_) => {
                    if started.elapsed() < FAST_POLL {
                        tokio::time::sleep(poll.next_delay()).await;
                    }
                }
            }
        }
    }

    /// `jobs.getQueryResults`, retried like any call, except that a failing
    /// answer is checked against `jobs.get`: a query job that failed reports
    /// its error through getQueryResults, possibly as a 5xx `backendError`
    /// that retrying can never fix. `done_is_enough`: the caller only waits
    /// for the job to end (any DONE settles it); otherwise it needs the rows,
    /// and a transient error on a job that succeeded is retried.
    async fn fetch_results(
        &self,
        job_id: &str,
        location: Option<&str>,
        page_token: Option<&str>,
        max_results: Option<u32>,
        done_is_enough: bool,
    ) -> Result<Fetched, BqError> {
        let path = ["projects", &self.inner.project, "queries", job_id];
        let mut call = Call::new("jobs.getQueryResults", Method::GET, &path)
            .location(location)
            .query("timeoutMs", LONG_POLL.as_millis().to_string());
        if let Some(token) = page_token {
            call = call.query("pageToken", token);
        }
        if let Some(max) = max_results {
            call = call.query("maxResults", max.to_string());
        }
        call.long_poll = LONG_POLL;
        let job_path = ["projects", &self.inner.project, "jobs", job_id];
        let job_call = Call::new("jobs.get", Method::GET, &job_path).location(location);
        let call = &call;
        let job_call = &job_call;
        retry::retry(
            &self.inner.retry,
            call.operation,
            self.observer.as_deref(),
            || async move {
                let err = match self.attempt(call).await {
                    Ok(body) => return decode(call.operation, &body).map(Fetched::Page),
                    Err(err @ BqError::Api { .. }) => err,
                    Err(other) => return Err(other),
                };
                // One attempt only: if jobs.get fails too, the retry loop decides on getQueryResults' error.
                match self
                    .attempt(job_call)
                    .await
                    .and_then(|body| decode::<wire::Job>("jobs.get", &body))
                {
                    // For rows, DONE explains the error only if the job
                    // failed or the error is not worth retrying: a transient
                    // error on a job that succeeded is retried like any other.
                    Ok(job) => match job.into_info(job_id) {
                        Ok(info)
                            if info.state == JobState::Done
                                && (done_is_enough
                                    || info.error.is_some()
                                    || !err.is_transient()) =>
                        {
                            Ok(Fetched::JobDone(info, err))
                        }
                        _ => Err(err),
                    },
                    Err(_) => Err(err),
                }
            },
        )
        .await
    }

    async fn execute_json<T: DeserializeOwned>(&self, call: &Call<'_>) -> Result<T, BqError> {
        let body = self.execute(call).await?;
        decode(call.operation, &body)
    }

    /// Sends `call` until it succeeds, fails permanently or the retry deadline passes.
    ///
    /// Until the endpoint has answered once, the deadline is
    /// [`FIRST_CONTACT_DEADLINE`]: a wrong endpoint or a missing emulator
    /// fails within seconds, naming the URL, instead of retrying for the
    /// whole deadline. A call that is slow says so on stderr.
    async fn execute(&self, call: &Call<'_>) -> Result<Vec<u8>, BqError> {
        let first_contact = !self.inner.contacted.load(Ordering::Relaxed);
        let mut policy = self.inner.retry;
        if first_contact {
            policy.deadline = policy.deadline.min(FIRST_CONTACT_DEADLINE);
        }
        let attempts = retry::retry(&policy, call.operation, self.observer.as_deref(), || {
            self.attempt_noting_contact(call)
        });
        let started = tokio::time::Instant::now();
        let mut result = with_slow_notice(attempts, call, self.inner.base.as_str()).await;
        let capped = policy.deadline < self.inner.retry.deadline;
        if let Err(first) = &result
            && capped
            && answered_by_bigquery(first)
            && first.is_transient()
        {
            // BigQuery itself answered (a 5xx, a rate limit): the cap was for
            // endpoints that do not answer at all; retry for the rest of the deadline.
            let before = first.attempts();
            let mut rest = self.inner.retry;
            rest.deadline = rest.deadline.saturating_sub(started.elapsed());
            let attempts = retry::retry(&rest, call.operation, self.observer.as_deref(), || {
                self.attempt(call)
            });
            result = with_slow_notice(attempts, call, self.inner.base.as_str())
                .await
                .map_err(|mut e| {
                    let total = before + e.attempts();
                    retry::Retryable::set_attempts(&mut e, total, started.elapsed());
                    e
                });
        }
        match result {
            Err(BqError::Transport {
                operation,
                reason,
                message,
                attempts,
                elapsed,
            }) if first_contact
                && operation != "oauth2.token"
                && !self.inner.contacted.load(Ordering::Relaxed) =>
            {
                Err(BqError::Transport {
                    operation,
                    reason,
                    message: format!(
                        "no answer from {} at first contact: {message}",
                        self.inner.base
                    ),
                    attempts,
                    elapsed,
                })
            }
            other => other,
        }
    }

    /// [`BigQuery::attempt`], noting when BigQuery has answered: a success
    /// or an HTTP error from it (not a token endpoint's, not a transport failure).
    async fn attempt_noting_contact(&self, call: &Call<'_>) -> Result<Vec<u8>, BqError> {
        let mut result = self.attempt(call).await;
        if let Err(BqError::Api { status: 401, .. }) = &result
            && self.inner.credentials.invalidate_last().await
        {
            tracing::info!(
                "bigquery {}: the access token was refused (401); trying once more with a new one",
                call.operation
            );
            result = self.attempt(call).await;
        }
        if result.is_ok() || result.as_ref().is_err_and(answered_by_bigquery) {
            self.inner.contacted.store(true, Ordering::Relaxed);
        }
        result
    }

    /// Sends `call` once.
    async fn attempt(&self, call: &Call<'_>) -> Result<Vec<u8>, BqError> {
        let mut url = self.inner.base.clone();
        url.path_segments_mut()
            .map_err(|_| BqError::Invalid {
                message: format!("invalid bigquery endpoint {}", self.inner.base),
            })?
            .pop_if_empty()
            .extend(call.path);
        if !call.query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(call.query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let mut timeout = self.inner.request_timeout;
        if !self.inner.contacted.load(Ordering::Relaxed) {
            timeout = timeout.min(FIRST_CONTACT_DEADLINE);
        }
        let mut request = self
            .inner
            .http
            .request(call.method.clone(), url)
            .timeout(timeout + call.long_poll);
        if let Some(token) = self.inner.credentials.token().await? {
            request = request.bearer_auth(token);
        }
        if let Some(project) = self.inner.credentials.quota_project() {
            request = request.header("x-goog-user-project", project);
        }
        request = match &call.body {
            Some(body) => request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone()),
            // POSTs without a body (jobs.cancel) still need a length for some front ends.
            None if call.method == Method::POST => {
                request.header(reqwest::header::CONTENT_LENGTH, "0")
            }
            None => request,
        };
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(call.operation, &e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, Utc::now()));
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error(call.operation, &e))?;
        if status.is_success() {
            Ok(body.to_vec())
        } else {
            let mut err = api_error(call.operation, status.as_u16(), &body);
            if let BqError::Api { retry_after: r, .. } = &mut err {
                *r = retry_after;
            }
            Err(err)
        }
    }
}

/// Awaits `fut`; if it takes longer than the call's long-poll plus
/// [`SLOW_CALL_NOTICE`], logs what is being waited for, then every minute.
async fn with_slow_notice<T>(fut: impl Future<Output = T>, call: &Call<'_>, base: &str) -> T {
    let mut fut = std::pin::pin!(fut);
    let started = tokio::time::Instant::now();
    let mut next = call.long_poll + SLOW_CALL_NOTICE;
    loop {
        tokio::select! {
            out = &mut fut => return out,
            _ = tokio::time::sleep_until(started + next) => {
                tracing::warn!(
                    "still waiting for bigquery {} at {base} after {} s",
                    call.operation,
                    started.elapsed().as_secs()
                );
                next += Duration::from_secs(60);
            }
        }
    }
}

/// jobs.get's 404 for a job that should exist.
fn job_not_found(message: String) -> BqError {
    BqError::Api {
        operation: "jobs.get",
        status: 404,
        reason: "notFound".to_string(),
        message,
        attempts: 1,
        elapsed: Duration::ZERO,
        retry_after: None,
    }
}

/// A `Retry-After` value: delta-seconds or an HTTP date (RFC 9110 §10.2.3).
/// A date in the past means "now"; anything unparsable is ignored.
fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// The sleep before the next jobs.get of a load or copy job that has been
/// waited on for `waited`: a twentieth of it, between 100 ms and 5 s. The job
/// is seen DONE at most 100 ms or 5 % after it ended (a 2 s job by 2.1 s),
/// and a long job costs a few calls a minute. (Doubling from 250 ms saw a
/// 2 s job only at 3.75 s.)
fn job_poll_delay(waited: Duration) -> Duration {
    (waited / 20).clamp(JOB_POLL_MIN, POLL_MAX)
}

/// Growing sleep between polls of a running job.
struct Poll {
    next: Duration,
}

impl Poll {
    fn new() -> Self {
        Poll { next: POLL_INITIAL }
    }

    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(POLL_MAX);
        delay
    }
}

fn decode<T: DeserializeOwned>(operation: &str, body: &[u8]) -> Result<T, BqError> {
    serde_json::from_slice(body).map_err(|e| BqError::Decode {
        message: format!("{operation}: {e}"),
    })
}

/// Builds the error for a non-2xx answer from BigQuery's envelope, or from
/// the status alone when the body is not an envelope (a front end's HTML page).
fn api_error(operation: &'static str, status: u16, body: &[u8]) -> BqError {
    let (reason, message) = match serde_json::from_slice::<wire::ErrorEnvelope>(body) {
        Ok(envelope) => {
            let first = envelope.error.errors.first();
            let reason = first
                .and_then(|e| e.reason.clone())
                .filter(|r| !r.is_empty())
                .or_else(|| {
                    reason_for_status(envelope.error.status.as_deref()?).map(str::to_string)
                })
                .unwrap_or_else(|| format!("http{status}"));
            let message = envelope
                .error
                .message
                .filter(|m| !m.is_empty())
                .or_else(|| first.and_then(|e| e.message.clone()))
                .unwrap_or_default();
            (reason, message)
        }
        Err(_) if status == 404 => (
            "http404".to_string(),
            format!(
                "{}; BigQuery always explains a 404, so this endpoint may not be BigQuery (check --api-endpoint / BIGQUERY_EMULATOR_HOST)",
                body_snippet(status, body)
            ),
        ),
        Err(_) => (format!("http{status}"), body_snippet(status, body)),
    };
    BqError::Api {
        operation,
        status,
        reason,
        message,
        attempts: 1,
        elapsed: Duration::ZERO,
        retry_after: None,
    }
}

/// BigQuery's reason for a google.rpc status name, for envelopes without `errors`.
fn reason_for_status(status: &str) -> Option<&'static str> {
    Some(match status {
        "ALREADY_EXISTS" => "duplicate",
        "NOT_FOUND" => "notFound",
        "PERMISSION_DENIED" => "accessDenied",
        "INVALID_ARGUMENT" => "invalid",
        "INTERNAL" => "internalError",
        "UNAVAILABLE" => "backendError",
        _ => return None,
    })
}

fn body_snippet(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let collapsed: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.is_empty() {
        let phrase = reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("error");
        return format!("{} (empty response body)", phrase.to_ascii_lowercase());
    }
    let mut snippet: String = collapsed.chars().take(200).collect();
    if snippet.len() < collapsed.len() {
        snippet.push('…');
    }
    format!("non-JSON response: {snippet}")
}

fn transport_error(operation: &'static str, e: &reqwest::Error) -> BqError {
    let reason = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connectionError"
    } else {
        "transportError"
    };
    // reqwest's own message is generic ("error sending request"); the cause chain says what happened.
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = cause.source();
    }
    BqError::Transport {
        operation,
        reason,
        message: parts.join(": "),
        attempts: 1,
        elapsed: Duration::ZERO,
    }
}

fn table_model(t: &TableRef, spec: &NewTable) -> Result<Table, BqError> {
    let fields = spec
        .schema
        .iter()
        .map(|f| {
            let field_type: FieldType = serde_json::from_value(serde_json::Value::String(
                f.field_type.to_ascii_uppercase(),
            ))
            .map_err(|_| BqError::Invalid {
                message: format!(
                    "column {} of {t} has unknown type {:?}",
                    f.name, f.field_type
                ),
            })?;
            let mut field = TableFieldSchema::new(&f.name, field_type);
            field.mode = Some(f.mode.to_ascii_uppercase()).filter(|m| !m.is_empty());
            Ok(field)
        })
        .collect::<Result<Vec<_>, BqError>>()?;
    Ok(Table {
        table_reference: TableReference::new(&t.project, &t.dataset, &t.table),
        schema: TableSchema::new(fields),
        time_partitioning: spec
            .partition_day_field
            .as_deref()
            .map(|f| TimePartitioning::per_day().field(f)),
        clustering: (!spec.clustering.is_empty()).then(|| Clustering {
            fields: Some(spec.clustering.clone()),
        }),
        description: spec.description.clone(),
        view: spec.view_query.as_ref().map(|q| ViewDefinition {
            query: q.clone(),
            use_legacy_sql: Some(false),
            user_defined_function_resources: None,
        }),
        ..Default::default()
    })
}

fn job_model(
    job_id: &str,
    project: &str,
    location: Option<&str>,
    mut configuration: JobConfiguration,
    labels: &BTreeMap<String, String>,
) -> Job {
    if !labels.is_empty() {
        configuration
            .labels
            .get_or_insert_with(Default::default)
            .extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    Job {
        configuration: Some(configuration),
        job_reference: Some(JobReference {
            job_id: Some(job_id.to_string()),
            project_id: Some(project.to_string()),
            location: location.map(str::to_string),
        }),
        ..Default::default()
    }
}
