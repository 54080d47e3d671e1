//! Jobs: creation, the PENDING → RUNNING → DONE lifecycle on a tokio task, and query/load/copy execution.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, watch};

use crate::catalog::{Partitioning, TableKey, parse_schema, split_decorator};
use crate::data::{self, CsvOptions, FieldSchema, RecordBatch, SchemaRef};
use crate::error::{ApiError, ErrorProto};
use crate::location;
use crate::sql::{self, QueryRequest};
use crate::state::{AppState, Snapshot};
use crate::util::{etag, get_bool, get_i64, get_str, lock, now_micros, now_millis, random_id};
use crate::write::{self, WriteDisposition, WriteInput, WriteSpec, parse_table_reference};

/// Dataset holding anonymous query results (hidden, like BigQuery's `_...` datasets).
pub const ANON_DATASET: &str = "_emulator_anonymous";
const MIB: u64 = 1024 * 1024;

/// `status.state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    /// Created, not started.
    #[serde(rename = "PENDING")]
    Pending,
    /// Executing (the configured job delay is spent here).
    #[serde(rename = "RUNNING")]
    Running,
    /// Finished; failed iff `errorResult` is set.
    #[serde(rename = "DONE")]
    Done,
}

impl JobState {
    /// BigQuery's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "PENDING",
            JobState::Running => "RUNNING",
            JobState::Done => "DONE",
        }
    }
}

/// `(project, jobId)`.
pub type JobKey = (String, String);

/// Destination of a job for the concurrency check: table and optional decorator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestKey {
    /// Undecorated table.
    pub table: TableKey,
    /// Decorator, `None` for the whole table.
    pub decorator: Option<String>,
}

impl DestKey {
    fn overlaps(&self, other: &DestKey) -> bool {
        self.table == other.table
            && (self.decorator.is_none()
                || other.decorator.is_none()
                || self.decorator == other.decorator)
    }
}

/// The persistable part of a job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobData {
    /// Project.
    pub project: String,
    /// Job id.
    pub job_id: String,
    /// Location.
    pub location: String,
    /// `QUERY` / `LOAD` / `COPY`.
    pub job_type: String,
    /// The configuration as echoed (with `jobType`).
    pub configuration: Value,
    /// State.
    pub state: JobState,
    /// `status.errorResult`.
    pub error_result: Option<ErrorProto>,
    /// `status.errors`.
    pub errors: Vec<ErrorProto>,
    /// Epoch millis.
    pub creation_time: i64,
    /// Epoch millis.
    pub start_time: Option<i64>,
    /// Epoch millis.
    pub end_time: Option<i64>,
    /// When it went RUNNING and DONE in epoch micros, for `GET /_emulator/jobs` only (BigQuery's
    /// times are millis, too coarse for a benchmark of sub-millisecond jobs).
    #[serde(default)]
    pub run_micros: (Option<i64>, Option<i64>),
    /// Statistics filled when DONE (besides the three times).
    pub statistics: Map<String, Value>,
    /// Destination (`p.d.t$dec`) for listings.
    pub destination: Option<String>,
    /// Destination for the concurrency check (`None` for anonymous results).
    pub dest_key: Option<DestKey>,
    /// Creation order.
    pub seq: u64,
    /// jobs.cancel was called.
    pub cancel_requested: bool,
    /// Error forced by a fault rule.
    pub injected_error: Option<ErrorProto>,
    /// A dataset the job touches is outside its location: the job fails with this when it runs.
    #[serde(default)]
    pub location_error: Option<ErrorProto>,
}

/// A query's result rows, kept for getQueryResults / jobs.query.
pub struct QueryResult {
    /// Result schema.
    pub schema: SchemaRef,
    /// Result rows.
    pub batches: Vec<RecordBatch>,
}

/// A job with its runtime handles.
pub struct Job {
    /// Persistable part.
    pub data: JobData,
    /// Result rows (query jobs, in memory only).
    pub result: Option<Arc<QueryResult>>,
    /// Broadcasts state changes to long-pollers.
    pub state_tx: watch::Sender<JobState>,
    /// Wakes the job task on cancel.
    pub cancel: Arc<Notify>,
    kind: Option<Arc<JobKind>>,
}

/// All jobs.
#[derive(Default)]
pub struct JobStore {
    /// Jobs by key.
    pub jobs: HashMap<JobKey, Job>,
    /// Creation counter.
    pub seq: u64,
    /// RUNNING jobs and their destinations.
    pub running: HashMap<JobKey, Option<DestKey>>,
    /// jobs.query `requestId` → job, for idempotent retries.
    pub request_ids: HashMap<(String, String), JobKey>,
}

impl JobStore {
    /// Current state counts of jobs created after `min_seq`.
    pub fn count_by_state(&self, min_seq: u64) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for j in self.jobs.values().filter(|j| j.data.seq > min_seq) {
            *out.entry(j.data.state.as_str().to_string()).or_default() += 1;
        }
        out
    }

    /// Restores a persisted job (not runnable; see `persist`).
    pub fn restore(&mut self, data: JobData) {
        self.seq = self.seq.max(data.seq);
        let key = (data.project.clone(), data.job_id.clone());
        let state = data.state;
        self.jobs.insert(
            key,
            Job {
                data,
                result: None,
                state_tx: watch::channel(state).0,
                cancel: Arc::new(Notify::new()),
                kind: None,
            },
        );
    }
}

impl JobData {
    /// The REST `Job` resource.
    pub fn to_json(&self) -> Value {
        let mut stats = Map::new();
        stats.insert("creationTime".into(), json!(self.creation_time.to_string()));
        if let Some(t) = self.start_time {
            stats.insert("startTime".into(), json!(t.to_string()));
        }
        if let Some(t) = self.end_time {
            stats.insert("endTime".into(), json!(t.to_string()));
        }
        for (k, v) in &self.statistics {
            stats.insert(k.clone(), v.clone());
        }
        let mut status = Map::new();
        status.insert("state".into(), json!(self.state.as_str()));
        if let Some(e) = &self.error_result {
            status.insert("errorResult".into(), json!(e));
        }
        if !self.errors.is_empty() {
            status.insert("errors".into(), json!(self.errors));
        }
        json!({
            "kind": "bigquery#job",
            "etag": etag(self.end_time.or(self.start_time).unwrap_or(self.creation_time)),
            "id": format!("{}:{}.{}", self.project, self.location, self.job_id),
            "selfLink": format!("/bigquery/v2/projects/{}/jobs/{}?location={}", self.project, self.job_id, self.location),
            "user_email": "emulator@localhost",
            "principal_subject": "user:emulator@localhost",
            "jobReference": self.reference(),
            "configuration": self.configuration,
            "statistics": stats,
            "status": status,
        })
    }

    /// `jobReference`.
    pub fn reference(&self) -> Value {
        json!({"projectId": self.project, "jobId": self.job_id, "location": self.location})
    }

    /// Entry of `GET /_emulator/jobs`.
    pub fn summary(&self) -> Value {
        json!({
            "projectId": self.project,
            "jobId": self.job_id,
            "location": self.location,
            "jobType": self.job_type,
            "state": self.state.as_str(),
            "destination": self.destination,
            "labels": self.configuration.get("labels"),
            "errorResult": self.error_result,
            "creationTime": self.creation_time,
            "startTime": self.start_time,
            "endTime": self.end_time,
            "startMicros": self.run_micros.0,
            "endMicros": self.run_micros.1,
            "cancelRequested": self.cancel_requested,
        })
    }
}

/// A parsed, runnable job configuration.
#[derive(Clone, Debug)]
pub enum JobKind {
    /// Query job.
    Query(QuerySpec),
    /// Load job.
    Load(LoadSpec),
    /// Copy job.
    Copy(CopySpec),
}

/// A query job's settings.
#[derive(Clone, Debug)]
pub struct QuerySpec {
    sql: String,
    legacy_sql: bool,
    parameters: Vec<Value>,
    default_dataset: Option<(String, String)>,
    dest: WriteSpec,
    anonymous: bool,
    maximum_bytes_billed: Option<i64>,
    /// A DML INSERT (its rows are appended to `dest`), or the error that makes the job fail.
    insert: Option<Result<sql::Insert, sql::SqlError>>,
}

/// A load job's settings.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    uris: Vec<String>,
    json: bool,
    schema: Option<Vec<FieldSchema>>,
    skip_leading_rows: usize,
    field_delimiter: u8,
    allow_quoted_newlines: bool,
    allow_jagged_rows: bool,
    null_marker: Option<String>,
    ignore_unknown_values: bool,
    dest: WriteSpec,
}

/// A copy job's settings.
#[derive(Clone, Debug)]
pub struct CopySpec {
    sources: Vec<(String, String, String, Option<String>)>,
    dest: WriteSpec,
}

impl JobKind {
    fn dest(&self) -> &WriteSpec {
        match self {
            JobKind::Query(q) => &q.dest,
            JobKind::Load(l) => &l.dest,
            JobKind::Copy(c) => &c.dest,
        }
    }

    /// The (project, dataset) pairs the job writes and reads, the destination first; they decide
    /// its location. A query's are found by parsing its text (views are not expanded).
    fn datasets(&self, project: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut add = |p: &str, d: &str| {
            let key = (p.to_string(), d.to_string());
            if d != ANON_DATASET && !out.contains(&key) {
                out.push(key);
            }
        };
        let dest = self.dest();
        add(&dest.project, &dest.dataset);
        match self {
            JobKind::Query(q) => {
                let default_dataset = q.default_dataset.as_ref();
                if let Some((p, d)) = default_dataset {
                    add(p, d);
                }
                let req = QueryRequest {
                    sql: &q.sql,
                    default_project: project,
                    default_dataset: default_dataset.map(|(p, d)| (p.as_str(), d.as_str())),
                    parameters: &[],
                };
                for (p, d, _) in sql::referenced_tables(&req) {
                    add(&p, &d);
                }
            }
            JobKind::Load(_) => {}
            JobKind::Copy(c) => {
                for (p, d, _, _) in &c.sources {
                    add(p, d);
                }
            }
        }
        out
    }
}

/// Validates a job id the way BigQuery does.
fn validate_job_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty()
        || id.len() > 1024
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(ApiError::invalid(format!(
            "Invalid job ID \"{id}\". Job IDs must be alphanumeric (plus underscores and dashes) and must be at most 1024 characters long."
        )));
    }
    Ok(())
}

fn with_partitioning(mut spec: WriteSpec, cfg: &Value) -> WriteSpec {
    spec.time_partitioning = cfg
        .get("timePartitioning")
        .filter(|v| !v.is_null())
        .cloned();
    spec.range_partitioning = cfg
        .get("rangePartitioning")
        .filter(|v| !v.is_null())
        .cloned();
    spec.clustering = cfg.get("clustering").filter(|v| !v.is_null()).cloned();
    spec
}

/// Parses `configuration` into a runnable job; `config` is updated with what BigQuery fills in
/// (`jobType`, the anonymous `destinationTable`).
/// Where a DML INSERT writes: its table, appended to, never created (BigQuery's DML jobs have no
/// destinationTable). A statement that failed to parse gets a placeholder; the job fails when it runs.
fn dml_target(
    insert: Option<&Result<sql::Insert, sql::SqlError>>,
    project: &str,
) -> Result<WriteSpec, ApiError> {
    let (p, d, t) = match insert {
        Some(Ok(i)) => i.table.clone(),
        _ => (
            project.to_string(),
            ANON_DATASET.to_string(),
            "dml".to_string(),
        ),
    };
    WriteSpec::from_reference(
        &json!({"projectId": p, "datasetId": d, "tableId": t}),
        project,
        Some("CREATE_NEVER"),
        Some("WRITE_APPEND"),
        WriteDisposition::Append,
    )
}

fn parse_config(project: &str, config: &mut Value) -> Result<JobKind, ApiError> {
    let present: Vec<&str> = ["query", "load", "copy", "extract"]
        .into_iter()
        .filter(|k| config.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    if present.len() != 1 {
        return Err(ApiError::invalid(format!(
            "Job configuration must contain exactly one job-specific configuration object (e.g., query, load, extract, spreadsheetExtract), but there were {}: ",
            present.len()
        )));
    }
    let kind = match present[0] {
        "query" => {
            let q = &config["query"].clone();
            let sql = get_str(q, "query")
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| ApiError::invalid("Required parameter is missing: query"))?
                .to_string();
            if let Some(p) = get_str(q, "priority")
                && p != "INTERACTIVE"
                && p != "BATCH"
            {
                return Err(ApiError::invalid(format!(
                    "Invalid value for priority: {p}"
                )));
            }
            let default_dataset = q.get("defaultDataset").and_then(|d| {
                Some((
                    get_str(d, "projectId").unwrap_or(project).to_string(),
                    get_str(d, "datasetId")?.to_string(),
                ))
            });
            let insert = sql::parse_insert(
                &sql,
                project,
                default_dataset
                    .as_ref()
                    .map(|(p, d): &(String, String)| (p.as_str(), d.as_str())),
            )
            .transpose();
            let (dest, anonymous) = match q.get("destinationTable").filter(|v| !v.is_null()) {
                _ if insert.is_some() => (dml_target(insert.as_ref(), project)?, false),
                Some(dt) => (
                    with_partitioning(
                        WriteSpec::from_reference(
                            dt,
                            project,
                            get_str(q, "createDisposition"),
                            get_str(q, "writeDisposition"),
                            WriteDisposition::Empty,
                        )?,
                        q,
                    ),
                    false,
                ),
                None => {
                    let reference = json!({"projectId": project, "datasetId": ANON_DATASET, "tableId": format!("anon{}", random_id(32))});
                    let spec = WriteSpec::from_reference(
                        &reference,
                        project,
                        None,
                        Some("WRITE_TRUNCATE"),
                        WriteDisposition::Truncate,
                    )?;
                    config["query"]["destinationTable"] = reference;
                    (spec, true)
                }
            };
            JobKind::Query(QuerySpec {
                sql,
                legacy_sql: get_bool(q, "useLegacySql").unwrap_or(true),
                parameters: q
                    .get("queryParameters")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                default_dataset,
                dest,
                anonymous,
                maximum_bytes_billed: get_i64(q, "maximumBytesBilled"),
                insert,
            })
        }
        "load" => {
            let l = &config["load"];
            let uris: Vec<String> = l
                .get("sourceUris")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            if uris.is_empty() {
                return Err(ApiError::invalid(
                    "Required parameter is missing: sourceUris",
                ));
            }
            let json = match get_str(l, "sourceFormat").unwrap_or("CSV") {
                "CSV" => false,
                "NEWLINE_DELIMITED_JSON" => true,
                other => {
                    return Err(ApiError::invalid(format!(
                        "sourceFormat {other} is not supported by the emulator (only CSV and NEWLINE_DELIMITED_JSON)"
                    )));
                }
            };
            let dt = l.get("destinationTable").ok_or_else(|| {
                ApiError::invalid("Required parameter is missing: destinationTable")
            })?;
            let mut dest = with_partitioning(
                WriteSpec::from_reference(
                    dt,
                    project,
                    get_str(l, "createDisposition"),
                    get_str(l, "writeDisposition"),
                    WriteDisposition::Append,
                )?,
                l,
            );
            let schema = match l.get("schema").filter(|v| !v.is_null()) {
                Some(s) => Some(parse_schema(Some(s))?),
                None => None,
            };
            dest.create_schema = schema.clone();
            let delimiter = match get_str(l, "fieldDelimiter").unwrap_or(",") {
                "\\t" | "tab" | "\t" => b'\t',
                d if d.len() == 1 => d.as_bytes()[0],
                d => return Err(ApiError::invalid(format!("Invalid field delimiter: {d}"))),
            };
            JobKind::Load(LoadSpec {
                uris,
                json,
                schema,
                skip_leading_rows: get_i64(l, "skipLeadingRows").unwrap_or(0).max(0) as usize,
                field_delimiter: delimiter,
                allow_quoted_newlines: get_bool(l, "allowQuotedNewlines").unwrap_or(false),
                allow_jagged_rows: get_bool(l, "allowJaggedRows").unwrap_or(false),
                null_marker: get_str(l, "nullMarker").map(str::to_string),
                ignore_unknown_values: get_bool(l, "ignoreUnknownValues").unwrap_or(false),
                dest,
            })
        }
        "copy" => {
            let c = &config["copy"];
            if let Some(op) = get_str(c, "operationType")
                && op != "COPY"
            {
                return Err(ApiError::invalid(format!(
                    "copy operationType {op} is not supported by the emulator"
                )));
            }
            let mut refs: Vec<&Value> = c
                .get("sourceTables")
                .and_then(Value::as_array)
                .map(|a| a.iter().collect())
                .unwrap_or_default();
            if let Some(s) = c.get("sourceTable").filter(|v| !v.is_null()) {
                refs.push(s);
            }
            if refs.is_empty() {
                return Err(ApiError::invalid(
                    "Required parameter is missing: sourceTable",
                ));
            }
            let mut sources = Vec::new();
            for r in refs {
                let (p, d, t) = parse_table_reference(r, project)?;
                let (t, dec) = split_decorator(&t);
                sources.push((p, d, t.to_string(), dec.map(str::to_string)));
            }
            let dt = c.get("destinationTable").ok_or_else(|| {
                ApiError::invalid("Required parameter is missing: destinationTable")
            })?;
            let dest = WriteSpec::from_reference(
                dt,
                project,
                get_str(c, "createDisposition"),
                get_str(c, "writeDisposition"),
                WriteDisposition::Empty,
            )?;
            JobKind::Copy(CopySpec { sources, dest })
        }
        _ => {
            return Err(ApiError::invalid(
                "extract jobs are not supported by the emulator",
            ));
        }
    };
    let job_type = match &kind {
        JobKind::Query(_) => "QUERY",
        JobKind::Load(_) => "LOAD",
        JobKind::Copy(_) => "COPY",
    };
    if let Some(obj) = config.as_object_mut() {
        obj.insert("jobType".into(), json!(job_type));
    }
    Ok(kind)
}

/// What a finished execution wants to write and report.
struct Outcome {
    write: Option<(WriteSpec, WriteInput, write::Prepared)>,
    statistics: Map<String, Value>,
    is_query: bool,
    /// A DML statement: it has statistics but no result rows.
    dml: bool,
}

/// Handles `jobs.insert`: validates, stores the job as PENDING and starts it. Dry runs execute
/// synchronously and are not stored.
pub async fn insert_job(st: &Arc<AppState>, project: &str, body: Value) -> Result<Value, ApiError> {
    let mut config = body
        .get("configuration")
        .filter(|c| c.is_object())
        .cloned()
        .ok_or_else(|| ApiError::invalid("Required parameter is missing: configuration"))?;
    let reference = body.get("jobReference").cloned().unwrap_or(Value::Null);
    let job_id = match get_str(&reference, "jobId") {
        Some(id) => id.to_string(),
        None => format!("job_{}", random_id(28)),
    };
    validate_job_id(&job_id)?;
    let kind = parse_config(project, &mut config)?;
    let requested = get_str(&reference, "location");
    let datasets = kind.datasets(project);
    let placement = location::place(&lock(&st.catalog), requested, &datasets);
    let location = placement.location;
    if get_bool(&config, "dryRun").unwrap_or(false) {
        if let Some(e) = &placement.error {
            return Err(ApiError::from_job_error(e));
        }
        return dry_run(st, project, &job_id, &location, config, kind).await;
    }
    let key = (project.to_string(), job_id.clone());
    let now = now_millis();
    let injected_error = st.faults.job_fault(&job_id);
    {
        let mut jobs = lock(&st.jobs);
        if let Some(existing) = jobs.jobs.get(&key) {
            return Err(ApiError::duplicate(format!(
                "Already Exists: Job {project}:{}.{job_id}",
                existing.data.location
            )));
        }
        jobs.seq += 1;
        let seq = jobs.seq;
        let dest = kind.dest();
        let (destination, dest_key) = match &kind {
            JobKind::Query(q) if q.anonymous => (None, None),
            _ => (
                Some(dest.display()),
                Some(DestKey {
                    table: (
                        dest.project.clone(),
                        dest.dataset.clone(),
                        dest.table.clone(),
                    ),
                    decorator: dest.decorator.clone(),
                }),
            ),
        };
        let data = JobData {
            project: project.to_string(),
            job_id: job_id.clone(),
            location,
            job_type: config["jobType"].as_str().unwrap_or_default().to_string(),
            configuration: config,
            state: JobState::Pending,
            error_result: None,
            errors: Vec::new(),
            creation_time: now,
            start_time: None,
            end_time: None,
            run_micros: (None, None),
            statistics: Map::new(),
            destination,
            dest_key,
            seq,
            cancel_requested: false,
            injected_error,
            location_error: placement.error,
        };
        jobs.jobs.insert(
            key.clone(),
            Job {
                data,
                result: None,
                state_tx: watch::channel(JobState::Pending).0,
                cancel: Arc::new(Notify::new()),
                kind: Some(Arc::new(kind)),
            },
        );
    }
    lock(&st.counters).stats.jobs_created += 1;
    st.mark_dirty();
    // Decided now, not when the task first runs: a test that clears its
    // faults right after the insert answered must not speed this job up.
    let delay = st
        .faults
        .job_delay_for(&key.1)
        .unwrap_or_else(|| st.job_delay());
    tokio::spawn(run_job(Arc::clone(st), key.clone(), delay));
    let jobs = lock(&st.jobs);
    Ok(jobs.jobs[&key].data.to_json())
}

async fn dry_run(
    st: &Arc<AppState>,
    project: &str,
    job_id: &str,
    location: &str,
    config: Value,
    kind: JobKind,
) -> Result<Value, ApiError> {
    let now = now_millis();
    let mut statistics = Map::new();
    if let JobKind::Query(q) = kind {
        let (out, processed, _) = run_sql(st, project, &q)
            .await
            .map_err(|e| ApiError::from_job_error(&e))?;
        statistics.insert("totalBytesProcessed".into(), json!(processed.to_string()));
        statistics.insert(
            "query".into(),
            json!({
                "totalBytesProcessed": processed.to_string(),
                "totalBytesProcessedAccuracy": "PRECISE",
                "totalBytesBilled": "0",
                "statementType": out.statement_type,
                "schema": {"fields": data::from_arrow_schema(&out.schema)},
                "referencedTables": referenced(&out.referenced_tables),
            }),
        );
    } else {
        statistics.insert("totalBytesProcessed".into(), json!("0"));
    }
    let data = JobData {
        project: project.into(),
        job_id: job_id.into(),
        location: location.into(),
        job_type: config["jobType"].as_str().unwrap_or_default().into(),
        configuration: config,
        state: JobState::Done,
        error_result: None,
        errors: Vec::new(),
        creation_time: now,
        start_time: Some(now),
        end_time: Some(now),
        run_micros: (None, None),
        statistics,
        destination: None,
        dest_key: None,
        seq: 0,
        cancel_requested: false,
        injected_error: None,
        location_error: None,
    };
    Ok(data.to_json())
}

fn referenced(tables: &[(String, String, String)]) -> Value {
    tables
        .iter()
        .map(|(p, d, t)| json!({"projectId": p, "datasetId": d, "tableId": t}))
        .collect()
}

/// Bytes billed the way BigQuery bills on-demand queries: rounded up to the next MiB, at least 10 MiB per
/// referenced table; 0 for a query that reads no table.
pub fn bytes_billed(processed: u64, tables: usize) -> u64 {
    if tables == 0 {
        return 0;
    }
    processed
        .div_ceil(MIB)
        .saturating_mul(MIB)
        .max(tables as u64 * 10 * MIB)
}

async fn run_sql(
    st: &Arc<AppState>,
    project: &str,
    q: &QuerySpec,
) -> Result<(sql::QueryOutput, u64, u64), ErrorProto> {
    if q.legacy_sql {
        return Err(ErrorProto::new(
            "invalidQuery",
            "Legacy SQL is not supported by the emulator, and BigQuery uses it when useLegacySql is absent or true; hint: send \"useLegacySql\": false",
        ));
    }
    let text = match &q.insert {
        Some(Ok(insert)) => &insert.select_sql,
        Some(Err(e)) => return Err(ErrorProto::new(e.reason, e.message.clone())),
        None => &q.sql,
    };
    let snapshot = Snapshot::new(Arc::clone(st));
    let mut out = sql::execute(
        QueryRequest {
            sql: text,
            default_project: project,
            default_dataset: q
                .default_dataset
                .as_ref()
                .map(|(p, d)| (p.as_str(), d.as_str())),
            parameters: &q.parameters,
        },
        &snapshot,
    )
    .await
    .map_err(|e| ErrorProto::new(e.reason, e.message))?;
    if q.insert.is_some() {
        out.statement_type = "INSERT".to_string();
    }
    let processed = out.total_bytes_processed;
    let billed = bytes_billed(processed, out.referenced_tables.len());
    Ok((out, processed, billed))
}

async fn exec_query(
    st: Arc<AppState>,
    project: String,
    q: QuerySpec,
) -> Result<Outcome, ErrorProto> {
    let (out, processed, billed) = run_sql(&st, &project, &q).await?;
    if let Some(max) = q.maximum_bytes_billed
        && max >= 0
        && billed > max as u64
    {
        return Err(ErrorProto::new(
            "bytesBilledLimitExceeded",
            format!("Query exceeded limit for bytes billed: {max}. {billed} or higher required."),
        ));
    }
    let mut statistics = Map::new();
    statistics.insert("totalBytesProcessed".into(), json!(processed.to_string()));
    statistics.insert("totalSlotMs".into(), json!("0"));
    statistics.insert(
        "query".into(),
        json!({
            "totalBytesProcessed": processed.to_string(),
            "totalBytesBilled": billed.to_string(),
            "billingTier": 1,
            "cacheHit": false,
            "statementType": out.statement_type,
            "totalSlotMs": "0",
            "referencedTables": referenced(&out.referenced_tables),
        }),
    );
    if q.anonymous {
        let mut cat = lock(&st.catalog);
        if cat.dataset(&project, ANON_DATASET).is_err() {
            cat.insert_dataset(
                &project,
                &json!({"datasetReference": {"datasetId": ANON_DATASET}}),
            )
            .map_err(|e| e.to_proto())?;
        }
    }
    let (schema, batches) = match &q.insert {
        Some(Ok(insert)) => {
            let rows: usize = out.batches.iter().map(|b| b.num_rows()).sum();
            if let Some(Value::Object(stats)) = statistics.get_mut("query") {
                stats.insert("numDmlAffectedRows".into(), json!(rows.to_string()));
                stats.insert(
                    "dmlStats".into(),
                    json!({"insertedRowCount": rows.to_string(), "updatedRowCount": "0", "deletedRowCount": "0"}),
                );
            }
            let table_schema = write::lookup(&lock(&st.catalog), &q.dest)
                .map_err(|e| e.to_proto())?
                .map(|(_, schema, _)| schema)
                .ok_or_else(|| {
                    ErrorProto::new(
                        "notFound",
                        format!(
                            "Not found: Table {}",
                            q.dest.display().replacen('.', ":", 1)
                        ),
                    )
                })?;
            sql::bind(insert, &table_schema, &out.schema, &out.batches)
                .map_err(|e| ErrorProto::new(e.reason, e.message))?
        }
        _ => (out.schema.clone(), out.batches),
    };
    let input = WriteInput {
        schema,
        batches: batches.into_iter().map(|b| (None, b)).collect(),
    };
    let prepared = prepare(&st, &q.dest, &input)?;
    Ok(Outcome {
        write: Some((q.dest, input, prepared)),
        statistics,
        is_query: true,
        dml: q.insert.is_some(),
    })
}

fn prepare(
    st: &AppState,
    spec: &WriteSpec,
    input: &WriteInput,
) -> Result<write::Prepared, ErrorProto> {
    let existing = write::lookup(&lock(&st.catalog), spec).map_err(|e| e.to_proto())?;
    write::prepare(existing, spec, input).map_err(|e| e.to_proto())
}

/// Maps `gs://bucket/path` under the GCS root and expands `*` wildcards.
fn resolve_uri(root: Option<&Path>, uri: &str) -> Result<Vec<std::path::PathBuf>, ErrorProto> {
    let not_found = || ErrorProto::new("notFound", format!("Not found: URI {uri}"));
    let rest = uri.strip_prefix("gs://").ok_or_else(|| {
        ErrorProto::new(
            "invalid",
            format!("Invalid source URI {uri}: only gs:// URIs are supported"),
        )
    })?;
    let Some(root) = root else {
        return Err(ErrorProto::new(
            "notFound",
            format!(
                "Not found: URI {uri} (the emulator maps gs:// to --gcs-root, which is not set)"
            ),
        ));
    };
    if rest.split('/').any(|s| s == "..") {
        return Err(not_found());
    }
    let pattern = root.join(rest);
    let pattern = pattern.to_str().ok_or_else(not_found)?;
    let mut files: Vec<_> = glob::glob(pattern)
        .map_err(|e| ErrorProto::new("invalid", format!("Invalid source URI {uri}: {e}")))?
        .filter_map(Result::ok)
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(not_found());
    }
    Ok(files)
}

async fn exec_load(st: Arc<AppState>, l: LoadSpec) -> Result<Outcome, ErrorProto> {
    let mut files = Vec::new();
    for uri in &l.uris {
        files.extend(resolve_uri(st.gcs_root.as_deref(), uri)?);
    }
    let schema: SchemaRef = match &l.schema {
        Some(s) => data::to_arrow_schema(s).map_err(|e| ErrorProto::new(e.reason, e.message))?,
        None => {
            let cat = lock(&st.catalog);
            match cat.tables.get(&(
                l.dest.project.clone(),
                l.dest.dataset.clone(),
                l.dest.table.clone(),
            )) {
                Some(t) => t.arrow.clone(),
                None => {
                    return Err(ErrorProto::new(
                        "invalid",
                        "No schema specified on job or table. (schema autodetection is not supported by the emulator)",
                    ));
                }
            }
        }
    };
    let mut batches = Vec::new();
    let mut input_bytes = 0u64;
    for f in &files {
        let bytes = tokio::fs::read(f).await.map_err(|e| {
            ErrorProto::new("notFound", format!("Not found: URI {}: {e}", f.display()))
        })?;
        input_bytes += bytes.len() as u64;
        let batch = if l.json {
            let text = String::from_utf8_lossy(&bytes);
            let mut rows = Vec::new();
            for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                match serde_json::from_str::<Value>(line) {
                    Ok(Value::Object(m)) => rows.push(m),
                    _ => {
                        return Err(ErrorProto::new(
                            "invalid",
                            format!(
                                "Error while reading data, error message: JSON parsing error in row starting at line {} of file {}",
                                i + 1,
                                f.display()
                            ),
                        ));
                    }
                }
            }
            data::json_rows_to_batch(&schema, &rows, l.ignore_unknown_values)
        } else {
            let opts = CsvOptions {
                skip_leading_rows: l.skip_leading_rows,
                field_delimiter: l.field_delimiter,
                allow_quoted_newlines: l.allow_quoted_newlines,
                allow_jagged_rows: l.allow_jagged_rows,
                null_marker: l.null_marker.clone(),
            };
            data::csv_to_batch(&schema, &bytes, &opts)
        }
        .map_err(|e| ErrorProto::new(e.reason, format!("Error while reading data from {}: {}", f.display(), e.message)))?;
        batches.push((None, batch));
    }
    let mut statistics = Map::new();
    statistics.insert("totalBytesProcessed".into(), json!("0"));
    statistics.insert(
        "load".into(),
        json!({"inputFiles": files.len().to_string(), "inputFileBytes": input_bytes.to_string(), "badRecords": "0"}),
    );
    let input = WriteInput { schema, batches };
    let prepared = prepare(&st, &l.dest, &input)?;
    Ok(Outcome {
        write: Some((l.dest, input, prepared)),
        statistics,
        is_query: false,
        dml: false,
    })
}

async fn exec_copy(st: Arc<AppState>, c: CopySpec) -> Result<Outcome, ErrorProto> {
    let mut dest = c.dest.clone();
    let mut schema = None;
    let mut batches = Vec::new();
    {
        let cat = lock(&st.catalog);
        for (p, d, t, dec) in &c.sources {
            let table = cat.table(p, d, t).map_err(|e| e.to_proto())?;
            if table.meta.is_view() {
                return Err(crate::catalog::view_refused("copy", &table.meta).to_proto());
            }
            let pid = match dec {
                Some(dec) => Some(
                    table
                        .meta
                        .resolve_decorator(dec)
                        .map_err(|e| e.to_proto())?,
                ),
                None => None,
            };
            let ingestion = matches!(
                table.meta.partitioning,
                Partitioning::Time { field: None, .. }
            );
            for (part, rows) in &table.partitions {
                if pid.as_ref().is_some_and(|p| p != part) {
                    continue;
                }
                for b in rows {
                    batches.push((ingestion.then(|| part.clone()), b.clone()));
                }
            }
            if schema.is_none() {
                schema = Some(table.arrow.clone());
                dest.create_schema = Some(table.meta.schema.clone());
                dest.inherit_partitioning = Some((
                    table.meta.time_partitioning.clone(),
                    table.meta.range_partitioning.clone(),
                ));
                dest.clustering = table.meta.clustering.clone();
            }
        }
    }
    let input = WriteInput {
        schema: schema.expect("at least one source"),
        batches,
    };
    let prepared = prepare(&st, &dest, &input)?;
    let mut statistics = Map::new();
    statistics.insert("totalBytesProcessed".into(), json!("0"));
    Ok(Outcome {
        write: Some((dest, input, prepared)),
        statistics,
        is_query: false,
        dml: false,
    })
}

async fn execute(
    st: Arc<AppState>,
    project: String,
    kind: Arc<JobKind>,
) -> Result<Outcome, ErrorProto> {
    match (*kind).clone() {
        JobKind::Query(q) => exec_query(st, project, q).await,
        JobKind::Load(l) => exec_load(st, l).await,
        JobKind::Copy(c) => exec_copy(st, c).await,
    }
}

/// Drives one job from PENDING to DONE.
async fn run_job(st: Arc<AppState>, key: JobKey, delay: std::time::Duration) {
    tokio::task::yield_now().await;
    let (cancel, kind) = {
        let mut jobs = lock(&st.jobs);
        let store = &mut *jobs;
        let Some(job) = store.jobs.get_mut(&key) else {
            return;
        };
        if job.data.cancel_requested {
            drop(jobs);
            finish(&st, &key, Err(stopped()));
            return;
        }
        job.data.state = JobState::Running;
        job.data.start_time = Some(now_millis());
        job.data.run_micros.0 = Some(now_micros());
        job.state_tx.send_replace(JobState::Running);
        let dest = job.data.dest_key.clone();
        let cancel = Arc::clone(&job.cancel);
        let kind = job.kind.clone();
        let violation = dest.as_ref().is_some_and(|d| {
            store
                .running
                .values()
                .flatten()
                .any(|other| other.overlaps(d))
        });
        store.running.insert(key.clone(), dest);
        let running = store.running.len() as u64;
        let mut c = lock(&st.counters);
        if violation {
            c.stats.concurrency_violations += 1;
        }
        c.stats.max_concurrent_running = c.stats.max_concurrent_running.max(running);
        (cancel, kind)
    };
    st.mark_dirty();
    let mut shutdown = st.shutdown.subscribe();
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = cancel.notified() => {}
        _ = shutdown.wait_for(|s| *s) => return,
    }
    let (cancelled, injected) = {
        let jobs = lock(&st.jobs);
        match jobs.jobs.get(&key) {
            Some(j) => (
                j.data.cancel_requested,
                j.data
                    .injected_error
                    .clone()
                    .or(j.data.location_error.clone()),
            ),
            None => return,
        }
    };
    let outcome = if cancelled {
        Err(stopped())
    } else if let Some(e) = injected {
        Err(e)
    } else if let Some(kind) = kind {
        // A separate task so that a panic in the engine fails this job instead of leaving it RUNNING.
        match tokio::spawn(execute(Arc::clone(&st), key.0.clone(), kind)).await {
            Ok(r) => r,
            Err(e) => Err(ErrorProto::new(
                "internalError",
                format!("emulator bug: the job task failed: {e}"),
            )),
        }
    } else {
        Err(ErrorProto::new(
            "backendError",
            "job interrupted by emulator restart",
        ))
    };
    finish(&st, &key, outcome);
}

fn stopped() -> ErrorProto {
    ErrorProto::new(
        "stopped",
        "Job execution was cancelled: User requested cancellation",
    )
}

/// Ends a job: commits its write (unless it was cancelled meanwhile) and marks it DONE, atomically with
/// respect to jobs.cancel and to readers of the destination.
fn finish(st: &AppState, key: &JobKey, outcome: Result<Outcome, ErrorProto>) {
    let mut jobs = lock(&st.jobs);
    let store = &mut *jobs;
    let Some(job) = store.jobs.get_mut(key) else {
        return;
    };
    if job.data.state == JobState::Done {
        return;
    }
    let outcome = if job.data.cancel_requested {
        Err(stopped())
    } else {
        outcome
    };
    let result = outcome.and_then(|mut o| {
        if let Some((spec, input, prepared)) = o.write.take() {
            let committed = {
                let mut cat = lock(&st.catalog);
                write::commit(&mut cat, &spec, &input, prepared).map_err(|e| e.to_proto())?
            };
            if o.dml {
                // numDmlAffectedRows and dmlStats are already in the statistics; no result table.
            } else if o.is_query {
                if let Some(Value::Object(q)) = o.statistics.get_mut("query") {
                    q.insert("schema".into(), json!({"fields": data::from_arrow_schema(&committed.schema)}));
                }
                job.result = Some(Arc::new(QueryResult { schema: committed.schema, batches: committed.rows_in_order }));
            } else if let Some(Value::Object(l)) = o.statistics.get_mut("load") {
                l.insert("outputRows".into(), json!(committed.rows.to_string()));
                l.insert("outputBytes".into(), json!(committed.bytes.to_string()));
            } else {
                o.statistics.insert(
                    "copy".into(),
                    json!({"copiedRows": committed.rows.to_string(), "copiedLogicalBytes": committed.bytes.to_string()}),
                );
            }
        }
        Ok(o.statistics)
    });
    let now = now_millis();
    job.data.state = JobState::Done;
    job.data.start_time.get_or_insert(now);
    job.data.end_time = Some(now);
    job.data.run_micros.1 = Some(now_micros());
    let mut c = lock(&st.counters);
    match result {
        Ok(stats) => {
            job.data.statistics = stats;
            c.stats.jobs_succeeded += 1;
        }
        Err(e) => {
            if e.reason == "stopped" {
                c.stats.jobs_cancelled += 1;
            }
            c.stats.jobs_failed += 1;
            job.data.errors = vec![e.clone()];
            job.data.error_result = Some(e);
        }
    }
    drop(c);
    job.state_tx.send_replace(JobState::Done);
    store.running.remove(key);
    drop(jobs);
    st.mark_dirty();
}

/// Looks a job up, applying BigQuery's location rule: a different location, or none for a job
/// outside the US/EU multi-regions, is a 404 (see [`location::reaches`]).
pub fn find_job<'a>(
    store: &'a JobStore,
    project: &str,
    job_id: &str,
    location: Option<&str>,
) -> Result<&'a Job, ApiError> {
    let missing = || match location {
        Some(loc) => ApiError::not_found(format!("Not found: Job {project}:{loc}.{job_id}")),
        None => ApiError::not_found(format!("Not found: Job {project}:{job_id}")),
    };
    let job = store
        .jobs
        .get(&(project.to_string(), job_id.to_string()))
        .ok_or_else(missing)?;
    if !location::reaches(location, &job.data.location) {
        return Err(missing());
    }
    Ok(job)
}

/// Handles `jobs.cancel`: flags the job; the job task ends it DONE with reason `stopped`.
pub fn cancel_job(
    st: &AppState,
    project: &str,
    job_id: &str,
    location: Option<&str>,
) -> Result<Value, ApiError> {
    let mut jobs = lock(&st.jobs);
    find_job(&jobs, project, job_id, location)?;
    let job = jobs
        .jobs
        .get_mut(&(project.to_string(), job_id.to_string()))
        .expect("found above");
    if job.data.state != JobState::Done {
        job.data.cancel_requested = true;
        job.cancel.notify_one();
    }
    let restored = job.kind.is_none() && job.data.state != JobState::Done;
    let out = json!({"kind": "bigquery#jobCancelResponse", "job": job.data.to_json()});
    drop(jobs);
    if restored {
        finish(
            st,
            &(project.to_string(), job_id.to_string()),
            Err(stopped()),
        );
    }
    st.mark_dirty();
    Ok(out)
}

/// Waits until the job is DONE or `timeout` passes; returns whether it is DONE.
pub async fn wait_done(
    st: &AppState,
    project: &str,
    job_id: &str,
    location: Option<&str>,
    timeout: std::time::Duration,
) -> Result<bool, ApiError> {
    let mut rx = {
        let jobs = lock(&st.jobs);
        find_job(&jobs, project, job_id, location)?
            .state_tx
            .subscribe()
    };
    let done = tokio::time::timeout(timeout, rx.wait_for(|s| *s == JobState::Done)).await;
    Ok(matches!(done, Ok(Ok(_))))
}

/// The result rows of a DONE query job: the in-memory result, else the destination table's rows.
pub fn job_result(st: &AppState, job: &Job) -> Option<Arc<QueryResult>> {
    if let Some(r) = &job.result {
        return Some(Arc::clone(r));
    }
    let dest = job
        .data
        .configuration
        .get("query")?
        .get("destinationTable")?;
    let (p, d, t) = parse_table_reference(dest, &job.data.project).ok()?;
    let (t, dec) = split_decorator(&t);
    let cat = lock(&st.catalog);
    let table = cat.table(&p, &d, t).ok()?;
    let pid = match dec {
        Some(dec) => Some(table.meta.resolve_decorator(dec).ok()?),
        None => None,
    };
    Some(Arc::new(QueryResult {
        schema: table.arrow.clone(),
        batches: table.batches(pid.as_deref()),
    }))
}
