//! Dagster Pipes: the external-process side of Dagster's protocol, spoken
//! when `DAGSTER_PIPES_CONTEXT` and `DAGSTER_PIPES_MESSAGES` are set (as
//! `PipesSubprocessClient` sets them).
//!
//! Both variables are `base64(zlib(json))` bootstrap parameters. The context
//! parameters name a JSON file (`path`) or carry the context inline (`data`);
//! the message parameters name a file to append JSON lines to (`path`, the
//! default of `PipesSubprocessClient`) or a stream (`stdio`). Messages follow
//! the `dagster-pipes` 1.13 Python package: `opened`, one
//! `report_asset_materialization` per succeeded partition, `log` for
//! retries and failures, and `closed` (with an `exception` when the run did
//! not succeed).
//!
//! Dagster's materialization message has no partition field (the
//! orchestrator's handler takes exactly `asset_key`, `metadata`,
//! `data_version`), so the Dagster partition key travels in the metadata as
//! `partition` (text), with the BigQuery partition ID as `partition_id`.
//!
//! With `stdio: stdout` the messages share stdout with the event stream:
//! every line is still one JSON object, and Pipes messages are the ones with
//! `__dagster_pipes_version` (no `event`). `closed` is written just before
//! `run_finished`, which stays the last line.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::PathBuf;

use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::output::events::{Event, EventRecord, EventSink, RunStatus};
use crate::planning::partition::{self, Granularity, Partition, Scheme};
use crate::task::load::{ExternalRange, RangeEnd};
use crate::task::settings::Settings;

pub const CONTEXT_VAR: &str = "DAGSTER_PIPES_CONTEXT";
pub const MESSAGES_VAR: &str = "DAGSTER_PIPES_MESSAGES";
/// `__dagster_pipes_version` of every message.
const PROTOCOL_VERSION: &str = "0.1";

/// Bad Pipes bootstrap parameters: exit 78 (configuration), nothing run.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct PipesError {
    pub message: String,
    pub hint: String,
}

fn err(message: impl Into<String>, hint: impl Into<String>) -> PipesError {
    PipesError {
        message: message.into(),
        hint: hint.into(),
    }
}

const LAUNCH_HINT: &str = "launch bq-backfill from Dagster (e.g. `PipesSubprocessClient`), which sets both variables, or unset them";

/// The parts of Dagster's context that bq-backfill reads.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PipesContext {
    #[serde(default)]
    pub asset_keys: Option<Vec<String>>,
    #[serde(default)]
    pub partition_key: Option<String>,
    #[serde(default)]
    pub partition_key_range: Option<Span>,
    #[serde(default)]
    pub partition_time_window: Option<Span>,
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub retry_number: Option<u32>,
}

/// `partition_key_range` (inclusive keys) or `partition_time_window`
/// (half-open timestamps).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Span {
    pub start: String,
    pub end: String,
}

/// Where messages go.
#[derive(Debug)]
pub enum Target {
    File(File),
    Stdout,
    Stderr,
}

/// A Dagster Pipes session, decoded and checked before anything runs.
#[derive(Debug)]
pub struct Pipes {
    pub context: PipesContext,
    pub target: Target,
}

/// `Ok(None)` outside Dagster (neither variable set).
pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Pipes>, PipesError> {
    let (ctx, msg) = match (env(CONTEXT_VAR), env(MESSAGES_VAR)) {
        (None, None) => return Ok(None),
        (Some(c), Some(m)) => (c, m),
        (Some(_), None) => {
            return Err(err(
                format!("{CONTEXT_VAR} is set but {MESSAGES_VAR} is not"),
                LAUNCH_HINT,
            ));
        }
        (None, Some(_)) => {
            return Err(err(
                format!("{MESSAGES_VAR} is set but {CONTEXT_VAR} is not"),
                LAUNCH_HINT,
            ));
        }
    };
    let context = load_context(decode_param(CONTEXT_VAR, &ctx)?)?;
    let target = message_target(decode_param(MESSAGES_VAR, &msg)?)?;
    Ok(Some(Pipes { context, target }))
}

/// `base64(zlib(json))` → JSON, as `dagster_pipes.decode_param`.
pub fn decode_param(var: &str, value: &str) -> Result<Value, PipesError> {
    let hint = "Dagster encodes bootstrap parameters as base64(zlib(json)); was the variable set by hand or truncated?";
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|e| err(format!("{var} is not valid base64: {e}"), hint))?;
    let mut text = Vec::new();
    flate2::read::ZlibDecoder::new(&bytes[..])
        .take(16 << 20)
        .read_to_end(&mut text)
        .map_err(|e| err(format!("{var} is not zlib-compressed data: {e}"), hint))?;
    serde_json::from_slice(&text).map_err(|e| err(format!("{var} does not hold JSON: {e}"), hint))
}

fn load_context(params: Value) -> Result<PipesContext, PipesError> {
    let data = if let Some(path) = params.get("path").and_then(Value::as_str) {
        let text = std::fs::read(path).map_err(|e| {
            err(
                format!("{CONTEXT_VAR}.path: cannot read the context file {path}: {e}"),
                "Dagster writes this file just before launching the process; run bq-backfill from the step that created it",
            )
        })?;
        serde_json::from_slice(&text).map_err(|e| {
            err(
                format!("{CONTEXT_VAR}.path: {path} is not JSON: {e}"),
                LAUNCH_HINT,
            )
        })?
    } else if let Some(data) = params.get("data") {
        data.clone()
    } else {
        return Err(err(
            format!("{CONTEXT_VAR} has neither `path` nor `data`"),
            "bq-backfill reads the context from a file (`path`) or inline (`data`), as Dagster's default context injectors write it",
        ));
    };
    serde_json::from_value(data).map_err(|e| {
        err(
            format!("{CONTEXT_VAR}: the context does not have Dagster's shape: {e}"),
            LAUNCH_HINT,
        )
    })
}

fn message_target(params: Value) -> Result<Target, PipesError> {
    if let Some(path) = params.get("path").and_then(Value::as_str) {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(PathBuf::from(path))
            .map_err(|e| {
                err(
                    format!("{MESSAGES_VAR}.path: cannot open the message file {path} for appending: {e}"),
                    "Dagster's message reader creates its directory before launching the process; check that it still exists and is writable",
                )
            })?;
        return Ok(Target::File(file));
    }
    let stream = params
        .get("stdio")
        .or_else(|| params.get("buffered_stdio"))
        .and_then(Value::as_str);
    match stream {
        Some("stdout") => Ok(Target::Stdout),
        Some("stderr") => Ok(Target::Stderr),
        Some(other) => Err(err(
            format!("{MESSAGES_VAR}.stdio is `{other}`, expected `stdout` or `stderr`"),
            LAUNCH_HINT,
        )),
        None => Err(err(
            format!("{MESSAGES_VAR} has neither `path` nor `stdio`"),
            "bq-backfill writes messages to a file (`path`) or a stream (`stdio`), as Dagster's default message readers expect",
        )),
    }
}

impl Pipes {
    /// The range the Dagster run selected, if any; the descriptor takes it
    /// only when it leaves its own range open (see `task::load`).
    pub fn external_range(&self) -> Option<ExternalRange> {
        let c = &self.context;
        if let Some(w) = &c.partition_time_window {
            return Some(ExternalRange::new(
                w.start.clone(),
                RangeEnd::Exclusive(w.end.clone()),
            ));
        }
        let (first, last) = match (&c.partition_key_range, &c.partition_key) {
            (Some(r), _) => (r.start.clone(), r.end.clone()),
            (None, Some(k)) => (k.clone(), k.clone()),
            (None, None) => return None,
        };
        Some(ExternalRange::new(first, RangeEnd::Inclusive(last)))
    }

    /// The sink for this run; writes `opened` at once.
    pub fn into_sink(self, settings: &Settings) -> io::Result<PipesSink> {
        let out: Box<dyn Write + Send> = match self.target {
            Target::File(f) => Box::new(f),
            Target::Stdout => Box::new(io::stdout()),
            Target::Stderr => Box::new(io::stderr()),
        };
        let plan = partition::plan(&settings.partitions);
        let mut sink = PipesSink {
            out,
            asset_key: single_asset(&self.context),
            keys: dagster_keys(&plan, &settings.partitions.scheme, &self.context),
            project: settings.project.clone(),
            location: settings.location.clone(),
            closed: false,
        };
        sink.write("opened", json!({"extras": {}}))?;
        Ok(sink)
    }
}

/// The asset to report on: Dagster's handler needs one key, so a step over
/// several assets (or none) gets logs but no materializations.
fn single_asset(c: &PipesContext) -> Option<String> {
    match c.asset_keys.as_deref() {
        Some([one]) => Some(one.clone()),
        _ => None,
    }
}

/// Dagster partition key per BigQuery partition ID: Dagster's default key
/// format for the granularity (`2024-01-15`, `2024-01-15-13:00` hourly),
/// the integer start for integer ranges, or the context's own
/// `partition_key` when the run is that one partition.
fn dagster_keys(plan: &[Partition], scheme: &Scheme, c: &PipesContext) -> HashMap<String, String> {
    if let ([only], Some(key)) = (plan, &c.partition_key) {
        return HashMap::from([(only.id.clone(), key.clone())]);
    }
    let hourly = matches!(
        scheme,
        Scheme::Time {
            granularity: Granularity::Hour,
            ..
        }
    );
    plan.iter()
        .map(|p| {
            let key = match p.time_window() {
                Some((start, _)) if hourly => start.format("%Y-%m-%d-%H:%M").to_string(),
                Some((start, _)) => start.format("%Y-%m-%d").to_string(),
                None => p.id.clone(),
            };
            (p.id.clone(), key)
        })
        .collect()
}

/// Writes Pipes messages for the run's events.
pub struct PipesSink {
    out: Box<dyn Write + Send>,
    asset_key: Option<String>,
    keys: HashMap<String, String>,
    project: String,
    location: Option<String>,
    closed: bool,
}

impl PipesSink {
    fn write(&mut self, method: &str, params: Value) -> io::Result<()> {
        let mut line = serde_json::to_vec(&message(method, params)).map_err(io::Error::other)?;
        line.push(b'\n');
        self.out.write_all(&line)?;
        self.out.flush()
    }

    fn log(&mut self, level: &str, text: String) -> io::Result<()> {
        self.write("log", json!({"message": text, "level": level}))
    }

    /// The BigQuery console page of a job. Without a configured location
    /// the link says `US` (BigQuery's default multi-region).
    fn job_url(&self, job_id: &str) -> String {
        let location = self.location.as_deref().unwrap_or("US");
        format!(
            "https://console.cloud.google.com/bigquery?project={}&j=bq:{location}:{job_id}&page=queryresults",
            self.project
        )
    }
}

/// One Pipes message, as `dagster_pipes._make_message`.
pub fn message(method: &str, params: Value) -> Value {
    json!({"__dagster_pipes_version": PROTOCOL_VERSION, "method": method, "params": params})
}

fn meta(value: impl Into<Value>, kind: &str) -> Value {
    json!({"raw_value": value.into(), "type": kind})
}

impl EventSink for PipesSink {
    fn emit(&mut self, record: &EventRecord) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        match &record.event {
            Event::PartitionSucceeded { .. } => self.materialized(&record.event),
            Event::PartitionFailed {
                partition,
                attempt,
                reason,
                message,
                will_retry,
                ..
            } => {
                let level = if *will_retry { "WARNING" } else { "ERROR" };
                let then = if *will_retry { "; retrying" } else { "" };
                self.log(level, format!("partition {partition} failed (attempt {attempt}, {reason}): {message}{then}"))
            }
            Event::RetryScheduled {
                partition,
                operation,
                attempt,
                reason,
                delay_seconds,
                ..
            } => {
                let on = partition
                    .as_deref()
                    .map(|p| format!(" for partition {p}"))
                    .unwrap_or_default();
                self.log("WARNING", format!("{operation}{on} failed transiently (attempt {attempt}, {reason}); retrying in {delay_seconds:.1}s"))
            }
            Event::PartitionCancelled {
                partition,
                bq_job_id,
                ..
            } => self.log(
                "WARNING",
                format!("partition {partition} cancelled (BigQuery job {bq_job_id})"),
            ),
            Event::RunFinished { .. } => {
                self.closed = true;
                self.write("closed", closed_params(&record.event))
            }
            _ => Ok(()),
        }
    }
}

impl PipesSink {
    fn materialized(&mut self, event: &Event) -> io::Result<()> {
        let Event::PartitionSucceeded {
            partition,
            bq_job_id,
            attempt,
            rows_written,
            bytes_processed,
            bytes_billed,
            duration_seconds,
        } = event
        else {
            return Ok(());
        };
        let key = self
            .keys
            .get(partition)
            .cloned()
            .unwrap_or_else(|| partition.clone());
        let Some(asset_key) = self.asset_key.clone() else {
            return self.log(
                "INFO",
                format!("partition {key} written by BigQuery job {bq_job_id}"),
            );
        };
        let mut metadata = serde_json::Map::new();
        metadata.insert("partition".into(), meta(key, "text"));
        metadata.insert("partition_id".into(), meta(partition.clone(), "text"));
        for (name, v) in [
            ("rows_written", rows_written),
            ("bytes_processed", bytes_processed),
            ("bytes_billed", bytes_billed),
        ] {
            if let Some(n) = v {
                metadata.insert(name.into(), meta(*n, "int"));
            }
        }
        metadata.insert("bq_job_id".into(), meta(bq_job_id.clone(), "text"));
        metadata.insert("bq_job_url".into(), meta(self.job_url(bq_job_id), "url"));
        metadata.insert("duration_seconds".into(), meta(*duration_seconds, "float"));
        metadata.insert("attempt".into(), meta(*attempt, "int"));
        self.write(
            "report_asset_materialization",
            json!({"asset_key": asset_key, "data_version": null, "metadata": metadata}),
        )
    }
}

/// `closed`: empty on success, else Dagster's `PipesException` shape.
fn closed_params(finished: &Event) -> Value {
    let Event::RunFinished {
        status,
        exit_code,
        failed,
        pending,
        error,
        ..
    } = finished
    else {
        return json!({});
    };
    if *status == RunStatus::Succeeded {
        return json!({});
    }
    let status_name = serde_json::to_value(status).unwrap_or_default();
    let status_name = status_name.as_str().unwrap_or("error");
    let message = match error {
        Some(e) => match &e.hint {
            Some(h) => format!("{} (hint: {h})", e.message),
            None => e.message.clone(),
        },
        None => format!(
            "bq-backfill run {status_name}: {failed} partitions failed, {pending} pending (exit {exit_code})"
        ),
    };
    let name = match error {
        Some(e) => format!("bq_backfill.{}", e.kind),
        None => format!("bq_backfill.{status_name}"),
    };
    json!({"exception": {"name": name, "message": message, "stack": [], "cause": null, "context": null}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::events::{Emitter, RunError};
    use std::sync::{Arc, Mutex};

    /// As `dagster_pipes.encode_param`.
    pub(crate) fn encode(v: &Value) -> String {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(v.to_string().as_bytes()).unwrap();
        base64::engine::general_purpose::STANDARD.encode(z.finish().unwrap())
    }

    fn env_of(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn decodes_what_dagster_encodes() {
        // `dagster_pipes.encode_param({"path": "/tmp/x"})`, from Python.
        let from_python = "eJyrVipILMlQslJQ0i/JLdCvUKoFADYYBa8=";
        assert_eq!(
            decode_param("V", from_python).unwrap(),
            json!({"path": "/tmp/x"})
        );
        let v = json!({"data": {"partition_key": "2024-01-15"}});
        assert_eq!(decode_param("V", &encode(&v)).unwrap(), v);
    }

    #[test]
    fn bad_parameters_name_the_variable() {
        let e = decode_param(CONTEXT_VAR, "not base64!").unwrap_err();
        assert!(
            e.message
                .starts_with("DAGSTER_PIPES_CONTEXT is not valid base64"),
            "{e}"
        );
        let plain = base64::engine::general_purpose::STANDARD.encode("{}");
        let e = decode_param(MESSAGES_VAR, &plain).unwrap_err();
        assert!(e.message.contains("not zlib-compressed"), "{e}");
        let only_one = env_of(vec![(CONTEXT_VAR, encode(&json!({"data": {}})))]);
        let e = from_env(&only_one).unwrap_err();
        assert_eq!(
            e.message,
            "DAGSTER_PIPES_CONTEXT is set but DAGSTER_PIPES_MESSAGES is not"
        );
        let neither = env_of(vec![
            (CONTEXT_VAR, encode(&json!({"data": {}}))),
            (MESSAGES_VAR, encode(&json!({"s3": "x"}))),
        ]);
        let e = from_env(&neither).unwrap_err();
        assert!(e.message.contains("neither `path` nor `stdio`"), "{e}");
        let missing = env_of(vec![
            (
                CONTEXT_VAR,
                encode(&json!({"path": "/nonexistent/ctx.json"})),
            ),
            (MESSAGES_VAR, encode(&json!({"stdio": "stderr"}))),
        ]);
        let e = from_env(&missing).unwrap_err();
        assert!(
            e.message
                .starts_with("DAGSTER_PIPES_CONTEXT.path: cannot read"),
            "{e}"
        );
        assert!(from_env(&env_of(vec![])).unwrap().is_none());
    }

    #[test]
    fn the_context_comes_from_a_file_or_inline_and_gives_the_range() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path().join("ctx.json");
        let data = json!({"asset_keys": ["events_daily"], "partition_key": null,
            "partition_key_range": {"start": "2024-01-15", "end": "2024-01-16"},
            "partition_time_window": {"start": "2024-01-15T00:00:00+00:00", "end": "2024-01-17T00:00:00+00:00"},
            "run_id": "r", "job_name": "j", "retry_number": 0, "extras": {}});
        std::fs::write(&ctx, data.to_string()).unwrap();
        let msgs = dir.path().join("messages");
        let env = env_of(vec![
            (CONTEXT_VAR, encode(&json!({"path": ctx}))),
            (MESSAGES_VAR, encode(&json!({"path": msgs}))),
        ]);
        let p = from_env(&env).unwrap().unwrap();
        assert!(matches!(p.target, Target::File(_)));
        assert_eq!(
            p.context.asset_keys.as_deref(),
            Some(&["events_daily".to_string()][..])
        );
        // The half-open window wins over the inclusive keys.
        let r = p.external_range().unwrap();
        assert_eq!(
            r,
            ExternalRange::new(
                "2024-01-15T00:00:00+00:00".into(),
                RangeEnd::Exclusive("2024-01-17T00:00:00+00:00".into())
            )
        );
        let inline = env_of(vec![
            (
                CONTEXT_VAR,
                encode(&json!({"data": {"partition_key": "30"}})),
            ),
            (MESSAGES_VAR, encode(&json!({"stdio": "stdout"}))),
        ]);
        let p = from_env(&inline).unwrap().unwrap();
        assert!(matches!(p.target, Target::Stdout));
        assert_eq!(
            p.external_range().unwrap(),
            ExternalRange::new("30".into(), RangeEnd::Inclusive("30".into()))
        );
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn sink(buf: &Buf, asset: Option<&str>) -> PipesSink {
        PipesSink {
            out: Box::new(buf.clone()),
            asset_key: asset.map(String::from),
            keys: HashMap::from([("20240115".into(), "2024-01-15".into())]),
            project: "p".into(),
            location: Some("EU".into()),
            closed: false,
        }
    }

    fn lines(buf: &Buf) -> Vec<Value> {
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn succeeded() -> Event {
        Event::PartitionSucceeded {
            partition: "20240115".into(),
            bq_job_id: "bqb_x_1".into(),
            attempt: 2,
            rows_written: Some(42),
            bytes_processed: Some(1000),
            bytes_billed: None,
            duration_seconds: 1.5,
        }
    }

    fn finished(status: RunStatus, error: Option<RunError>) -> Event {
        Event::RunFinished {
            status,
            exit_code: 1,
            partitions_total: 2,
            succeeded: 1,
            failed: 1,
            skipped: 0,
            cancelled: 0,
            pending: 0,
            duration_seconds: 3.0,
            error,
        }
    }

    #[test]
    fn a_succeeded_partition_is_a_materialization_with_its_key_and_metadata() {
        let buf = Buf::default();
        let e = Emitter::new(
            "r",
            "events_daily",
            vec![Box::new(sink(&buf, Some("events_daily")))],
        );
        e.emit(succeeded());
        e.emit(finished(RunStatus::Succeeded, None));
        e.emit(Event::Throttled { seconds: 1.0 });
        let m = lines(&buf);
        assert_eq!(m.len(), 2, "nothing after closed: {m:?}");
        assert_eq!(m[0]["__dagster_pipes_version"], "0.1");
        assert_eq!(m[0]["method"], "report_asset_materialization");
        let p = &m[0]["params"];
        assert_eq!(p["asset_key"], "events_daily");
        assert_eq!(p["data_version"], Value::Null);
        let md = &p["metadata"];
        assert_eq!(
            md["partition"],
            json!({"raw_value": "2024-01-15", "type": "text"})
        );
        assert_eq!(md["partition_id"]["raw_value"], "20240115");
        assert_eq!(md["rows_written"], json!({"raw_value": 42, "type": "int"}));
        assert_eq!(md["bytes_processed"]["raw_value"], 1000);
        assert!(
            md.get("bytes_billed").is_none(),
            "unknown values are left out"
        );
        assert_eq!(md["bq_job_id"]["raw_value"], "bqb_x_1");
        assert_eq!(
            md["bq_job_url"],
            json!({"raw_value": "https://console.cloud.google.com/bigquery?project=p&j=bq:EU:bqb_x_1&page=queryresults", "type": "url"})
        );
        assert_eq!(
            md["duration_seconds"],
            json!({"raw_value": 1.5, "type": "float"})
        );
        assert_eq!(md["attempt"], json!({"raw_value": 2, "type": "int"}));
        assert_eq!(
            m[1],
            json!({"__dagster_pipes_version": "0.1", "method": "closed", "params": {}})
        );
    }

    #[test]
    fn failures_are_logs_and_a_failed_run_closes_with_an_exception() {
        let buf = Buf::default();
        let e = Emitter::new("r", "j", vec![Box::new(sink(&buf, None))]);
        e.emit(Event::PartitionFailed {
            partition: "20240116".into(),
            bq_job_id: None,
            attempt: 1,
            reason: "invalidQuery".into(),
            message: "Syntax error".into(),
            retryable: false,
            will_retry: false,
        });
        e.emit(succeeded());
        let err = RunError {
            kind: "config".into(),
            message: "table missing".into(),
            hint: Some("create it".into()),
        };
        e.emit(finished(RunStatus::Error, Some(err)));
        let m = lines(&buf);
        assert_eq!(m[0]["method"], "log");
        assert_eq!(
            m[0]["params"],
            json!({"level": "ERROR", "message": "partition 20240116 failed (attempt 1, invalidQuery): Syntax error"})
        );
        // No single asset in scope: a log line instead of a materialization.
        assert_eq!(m[1]["method"], "log");
        assert_eq!(m[2]["method"], "closed");
        assert_eq!(
            m[2]["params"]["exception"],
            json!({"name": "bq_backfill.config",
            "message": "table missing (hint: create it)", "stack": [], "cause": null, "context": null})
        );
    }

    #[test]
    fn hourly_keys_use_dagsters_default_format() {
        let spec = crate::planning::partition::PartitionSpec {
            scheme: Scheme::Time {
                granularity: Granularity::Hour,
                selection: partition::Selection::Range {
                    start: partition::parse_instant("2024-01-15T13").unwrap(),
                    end: partition::parse_instant("2024-01-15T15").unwrap(),
                },
            },
            order: partition::Order::OldestFirst,
        };
        let keys = dagster_keys(
            &partition::plan(&spec),
            &spec.scheme,
            &PipesContext::default(),
        );
        assert_eq!(keys["2024011513"], "2024-01-15-13:00");
        assert_eq!(keys["2024011514"], "2024-01-15-14:00");
    }
}
