//! The event stream: typed events, and sinks that write them.
//!
//! stdout carries only events, one JSON object per line, flushed at once, so
//! an orchestrator can follow a run live. `run_finished` is always the last
//! line the process writes on stdout *and* stderr (Airflow merges the two and
//! keeps the last line as the task's XCom), which the run loop guarantees by
//! emitting it after every log line and background task has stopped.
//!
//! Sinks are pluggable: the JSON Lines sink is the contract; later sinks
//! (Dagster Pipes messages, GitHub Actions outputs) receive the same records.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use schemars::JsonSchema;
use serde::Serialize;

/// Version of the event format; bumped on any incompatible change.
pub const EVENT_SCHEMA_VERSION: u32 = 1;

/// One line of the event stream: an envelope around an [`Event`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct EventRecord {
    /// Event format version ([`EVENT_SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// When the event was emitted (RFC 3339, UTC, microseconds).
    #[serde(serialize_with = "ser_ts")]
    #[schemars(with = "String")]
    pub ts: DateTime<Utc>,
    /// This run's ID (also a label on every BigQuery job it submits).
    pub run_id: String,
    /// The backfill's stable name (`job` in the descriptor).
    pub job: String,
    /// The event itself; its `event` field names the kind.
    #[serde(flatten)]
    pub event: Event,
}

fn ser_ts<S: serde::Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&ts.to_rfc3339_opts(SecondsFormat::Micros, true))
}

/// Why a partition was not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Its latest audit state is SUCCEEDED with the current fingerprint.
    AlreadySucceeded,
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every partition succeeded or was already done.
    Succeeded,
    /// At least one partition failed.
    Failed,
    /// Stopped by SIGINT or SIGTERM; the in-flight job was cancelled.
    Cancelled,
    /// The time budget was spent; partitions are left pending.
    Incomplete,
    /// Another run holds this job's lease; nothing was done.
    Locked,
    /// The run could not proceed (configuration, permission, BigQuery
    /// unavailable after retries, or an internal error).
    Error,
}

/// A failure that ended the run early, as carried by `run_finished`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RunError {
    /// Short machine-readable kind: `config`, `permission`, `unavailable`,
    /// `invalid_descriptor`, `no_input`, `locked`, `internal`.
    pub kind: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl RunError {
    /// The error of a run that stopped for `kind` (its name is the wire `kind`).
    pub fn new(kind: crate::exit::ErrorKind, message: String, hint: Option<String>) -> RunError {
        RunError {
            kind: kind.as_str().into(),
            message,
            hint,
        }
    }
}

/// The result of one verification check on one partition.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, JsonSchema)]
pub struct CheckResult {
    /// The check's `name` in the descriptor.
    pub name: String,
    pub passed: bool,
    /// What the check's query returned: the number of rows (`zero_rows`) or
    /// the scalar; `error: …` when the query failed.
    pub observed: String,
    /// What was expected, e.g. `0 rows`, `between 1 and 100`, `= 42`,
    /// `within 5% of 40 (current)`.
    pub expected: String,
}

/// Every kind of event, tagged by `event`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The plan is known; work is about to start.
    RunStarted {
        /// Fully-qualified destination table.
        destination: String,
        /// Hash of everything that determines a partition's contents.
        fingerprint: String,
        partitions_total: usize,
        partitions_to_run: usize,
        partitions_to_skip: usize,
        tool_version: String,
        /// The `--reason` of a `--rerun`, which rebuilds partitions that
        /// already succeeded; absent otherwise.
        #[serde(skip_serializing_if = "Option::is_none")]
        rerun_reason: Option<String>,
    },
    /// A partition needs no work.
    PartitionSkipped {
        partition: String,
        reason: SkipReason,
    },
    /// A BigQuery job for the partition was submitted, or an existing one adopted.
    PartitionStarted {
        partition: String,
        /// Decorated destination, e.g. `project.dataset.table$20240115`.
        destination: String,
        bq_job_id: String,
        attempt: u32,
        /// True when the job was found already running or done (after a
        /// crash, or submitted by an earlier try of this call) and attached to.
        adopted: bool,
    },
    /// The partition's job finished and its rows replaced the partition.
    PartitionSucceeded {
        partition: String,
        bq_job_id: String,
        attempt: u32,
        rows_written: Option<i64>,
        bytes_processed: Option<i64>,
        bytes_billed: Option<i64>,
        duration_seconds: f64,
    },
    /// The partition's job (or its submission) failed.
    PartitionFailed {
        partition: String,
        bq_job_id: Option<String>,
        attempt: u32,
        /// BigQuery's error reason, e.g. `invalidQuery`, `backendError`.
        reason: String,
        message: String,
        /// Whether the reason is transient (another attempt may succeed).
        retryable: bool,
        /// Whether this run will try the partition again now.
        will_retry: bool,
    },
    /// The partition's checks ran, on the staging table (`staged`, before
    /// anything is published) or on the destination (`direct`, after the
    /// write). When one failed, `partition_failed` with reason
    /// `verify_failed` follows.
    PartitionVerified {
        partition: String,
        attempt: u32,
        /// The checked table (`{target}`), e.g. `project.scratch.t__bqb_stage`.
        target: String,
        /// Every check passed.
        passed: bool,
        checks: Vec<CheckResult>,
    },
    /// Staged mode: the copy job publishing `staging$P` into
    /// `destination$P` was submitted (or found, after a crash).
    PartitionPublishing {
        partition: String,
        bq_job_id: String,
        attempt: u32,
        adopted: bool,
    },
    /// The run was stopped while this partition's job ran; the job was
    /// asked to cancel.
    PartitionCancelled {
        partition: String,
        bq_job_id: String,
        /// BigQuery showed the job ended unsuccessfully (recorded CANCELLED).
        /// `false`: not confirmed in time, or it finished first; the audit
        /// log keeps it RUNNING and the next run waits for it or adopts it.
        confirmed: bool,
    },
    /// A transient failure; the operation will be tried again.
    RetryScheduled {
        /// The partition concerned, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        partition: Option<String>,
        /// The API call or step retried, e.g. `jobs.insert`, `partition`.
        operation: String,
        /// The attempt that failed (1-based).
        attempt: u32,
        reason: String,
        delay_seconds: f64,
        #[serde(serialize_with = "ser_ts")]
        #[schemars(with = "String")]
        next_at: DateTime<Utc>,
    },
    /// Pausing between partitions to leave room for other work.
    Throttled { seconds: f64 },
    /// Always the last line of the process's output.
    RunFinished {
        status: RunStatus,
        exit_code: i32,
        partitions_total: usize,
        succeeded: usize,
        failed: usize,
        skipped: usize,
        cancelled: usize,
        /// Partitions not attempted (time budget, stop on failure, cancel).
        pending: usize,
        duration_seconds: f64,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<RunError>,
    },
}

/// Something that receives every event record.
pub trait EventSink: Send {
    fn emit(&mut self, record: &EventRecord) -> io::Result<()>;
}

/// Writes one JSON object per line and flushes after each.
pub struct JsonLinesSink<W: Write + Send> {
    out: W,
    /// Set after a write failed (e.g. the reader went away): the run goes on
    /// — the audit table is the record of truth — but we stop writing.
    broken: bool,
    /// The lines go to the terminal the progress bar is drawn on: hide
    /// the bar while writing one, so neither tears the other.
    beside_bar: bool,
}

impl<W: Write + Send> JsonLinesSink<W> {
    pub fn new(out: W) -> Self {
        JsonLinesSink {
            out,
            broken: false,
            beside_bar: false,
        }
    }

    /// Lines written while a progress bar is on the same terminal.
    pub fn beside_bar(mut self, yes: bool) -> Self {
        self.beside_bar = yes;
        self
    }
}

impl<W: Write + Send> EventSink for JsonLinesSink<W> {
    fn emit(&mut self, record: &EventRecord) -> io::Result<()> {
        if self.broken {
            return Ok(());
        }
        let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut write = || self.out.write_all(&line).and_then(|()| self.out.flush());
        let res = if self.beside_bar {
            crate::output::progress::suspended(write)
        } else {
            write()
        };
        if res.is_err() {
            self.broken = true;
        }
        res
    }
}

/// The run's event emitter: stamps records and fans them out to every sink.
/// Cheap to clone; shared by the run loop and the retry observer.
#[derive(Clone)]
pub struct Emitter {
    inner: Arc<Mutex<EmitterInner>>,
}

struct EmitterInner {
    run_id: String,
    job: String,
    sinks: Vec<Box<dyn EventSink>>,
}

impl Emitter {
    pub fn new(run_id: &str, job: &str, sinks: Vec<Box<dyn EventSink>>) -> Self {
        Emitter {
            inner: Arc::new(Mutex::new(EmitterInner {
                run_id: run_id.to_string(),
                job: job.to_string(),
                sinks,
            })),
        }
    }

    /// Emit one event to every sink. A failing sink is logged, never fatal.
    pub fn emit(&self, event: Event) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let record = EventRecord {
            schema_version: EVENT_SCHEMA_VERSION,
            ts: Utc::now(),
            run_id: inner.run_id.clone(),
            job: inner.job.clone(),
            event,
        };
        for sink in inner.sinks.iter_mut() {
            if let Err(e) = sink.emit(&record) {
                tracing::warn!(
                    "could not write an event: {e}; continuing (the audit table keeps the record)"
                );
            }
        }
    }
}

/// An in-memory sink for tests: keeps every record.
#[derive(Clone, Default)]
pub struct MemorySink {
    pub records: Arc<Mutex<Vec<EventRecord>>>,
}

impl EventSink for MemorySink {
    fn emit(&mut self, record: &EventRecord) -> io::Result<()> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record.clone());
        Ok(())
    }
}

/// The JSON Schema of one event-stream line.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(EventRecord)).expect("schema serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_single_lines_with_a_tag_and_envelope() {
        let sink = MemorySink::default();
        let mut buf = Vec::new();
        {
            let emitter = Emitter::new("r1", "events_daily", vec![Box::new(sink.clone())]);
            emitter.emit(Event::Throttled { seconds: 1.5 });
            let rec = &sink.records.lock().unwrap()[0];
            let mut jl = JsonLinesSink::new(&mut buf);
            jl.emit(rec).unwrap();
        }
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(text.matches('\n').count(), 1, "exactly one line: {text}");
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["event"], "throttled");
        assert_eq!(v["seconds"], 1.5);
        assert_eq!(v["run_id"], "r1");
        assert_eq!(v["job"], "events_daily");
        assert_eq!(v["schema_version"], 1);
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn a_broken_writer_does_not_stop_the_emitter() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from(io::ErrorKind::BrokenPipe))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mem = MemorySink::default();
        let emitter = Emitter::new(
            "r",
            "j",
            vec![Box::new(JsonLinesSink::new(Broken)), Box::new(mem.clone())],
        );
        emitter.emit(Event::Throttled { seconds: 0.0 });
        emitter.emit(Event::Throttled { seconds: 1.0 });
        assert_eq!(mem.records.lock().unwrap().len(), 2);
    }
}
