//! Hostile input: every malformed descriptor in `tests/descriptors/` (plus a
//! few generated ones) is fed to the real binary on stdin. Each must fail
//! with its documented exit code, name the offending field with a hint on
//! stderr, and open ZERO connections to BigQuery: `BIGQUERY_EMULATOR_HOST`
//! points at a listener that only counts connection attempts.

#![allow(clippy::print_stderr)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_bq-backfill");
const INVALID: i32 = 65;
const NO_INPUT: i32 = 66;
const USAGE: i32 = 64;

/// (file stem, expected exit code, substrings that must all appear on stderr).
/// The first substring names the field (`field: message`) where there is one.
const CASES: &[(&str, i32, &[&str])] = &[
    // Not a JSON object at all.
    (
        "not_json",
        INVALID,
        &["not valid JSON: expected ident", "line 1, column 2"],
    ),
    (
        "truncated",
        INVALID,
        &["partitions: not valid JSON: EOF while parsing", "truncated"],
    ),
    (
        "trailing_garbage",
        INVALID,
        &["not valid JSON: trailing characters"],
    ),
    (
        "top_level_array",
        INVALID,
        &["descriptor must be a JSON object, found an array"],
    ),
    (
        "top_level_string",
        INVALID,
        &["descriptor must be a JSON object, found a string"],
    ),
    ("null_document", INVALID, &["found null"]),
    (
        "empty",
        NO_INPUT,
        &[
            "the descriptor on stdin is empty",
            "bq-backfill run < task.json",
        ],
    ),
    (
        "whitespace_only",
        NO_INPUT,
        &["the descriptor on stdin is empty"],
    ),
    (
        "invalid_utf8",
        INVALID,
        &["job: not valid JSON: invalid unicode code point", "UTF-8"],
    ),
    // Structure: unknown, missing, duplicated, mistyped fields.
    (
        "unknown_top_level_field",
        INVALID,
        &["colour: unknown field `colour`", "typos"],
    ),
    (
        "unknown_nested_field",
        INVALID,
        &[
            "retry.max_atempts: unknown field",
            "did you mean `max_attempts`?",
        ],
    ),
    (
        "unknown_partitions_field",
        INVALID,
        &["partitions.stop: unknown field `stop`"],
    ),
    (
        "missing_job",
        INVALID,
        &["job: missing field `job`", "required"],
    ),
    (
        "missing_granularity",
        INVALID,
        &[
            "partitions.granularity: missing field `granularity`",
            "\"hour\", \"day\"",
        ],
    ),
    (
        "job_wrong_type",
        INVALID,
        &["job: invalid type: integer `42`, expected a string"],
    ),
    (
        "partitions_wrong_type",
        INVALID,
        &["partitions: invalid type: string"],
    ),
    (
        "partitions_as_array",
        INVALID,
        &["partitions: invalid type: array, expected an object"],
    ),
    (
        "source_as_array",
        INVALID,
        &["source: invalid type: array, expected an object"],
    ),
    (
        "granularity_typo",
        INVALID,
        &["partitions.granularity: unknown variant `daily`"],
    ),
    (
        "order_typo",
        INVALID,
        &["partitions.order: unknown variant `newest`", "oldest_first"],
    ),
    (
        "list_entry_number",
        INVALID,
        &["partitions.list[0]: invalid type: integer", "strings"],
    ),
    (
        "pause_seconds_string",
        INVALID,
        &["throttle.pause_seconds: invalid type: string", "0 to 86400"],
    ),
    (
        "labels_not_object",
        INVALID,
        &["job_config.labels: invalid type: array, expected an object"],
    ),
    (
        "duplicate_field",
        INVALID,
        &["job: duplicate field `job`", "only once"],
    ),
    (
        "duplicate_label",
        INVALID,
        &["job_config.labels: duplicate label `team`"],
    ),
    (
        "query_wrong_type",
        INVALID,
        &["source.query: invalid type: sequence, expected a string"],
    ),
    (
        "version_2",
        INVALID,
        &["version: unsupported descriptor version 2", "version 1"],
    ),
    (
        "version_string",
        INVALID,
        &["version: invalid type: string", "the number 1"],
    ),
    // Names that would end up in job IDs, labels, REST paths and logs.
    (
        "job_uppercase",
        INVALID,
        &[
            "job: job name `Orders_Daily` contains uppercase letters",
            "lowercase",
        ],
    ),
    (
        "job_too_long",
        INVALID,
        &["job: job name is 64 characters long; the limit is 63"],
    ),
    (
        "job_with_space",
        INVALID,
        &["job: job name contains a space"],
    ),
    (
        "job_sql_injection",
        INVALID,
        &["job: job name contains `'`"],
    ),
    (
        "job_starts_with_digit",
        INVALID,
        &["job: job name `2024_orders` does not start with a letter"],
    ),
    ("job_nul_byte", INVALID, &["job: job name contains U+0000"]),
    (
        "destination_backticks",
        INVALID,
        &["destination: ", "contains a backtick", "without backticks"],
    ),
    (
        "destination_semicolon",
        INVALID,
        &["destination: `sales.orders;drop` contains `;`"],
    ),
    (
        "destination_quote",
        INVALID,
        &["destination: ", "contains `'`", "without quotes"],
    ),
    (
        "destination_decorator",
        INVALID,
        &[
            "destination: ",
            "contains `$`",
            "adds `$<partition id>` itself",
        ],
    ),
    (
        "destination_space",
        INVALID,
        &[
            "destination: ",
            "contains a space",
            "spaces are not supported",
        ],
    ),
    (
        "destination_too_long",
        INVALID,
        &[
            "destination: ",
            "table name is 1025 characters long; the limit is 1024",
        ],
    ),
    (
        "destination_legacy_colon",
        INVALID,
        &["destination: ", "legacy `project:dataset.table` form"],
    ),
    (
        "destination_one_part",
        INVALID,
        &["destination: `orders` is not of the form"],
    ),
    (
        "destination_homoglyph",
        INVALID,
        &["destination: ", "U+0430"],
    ),
    (
        "destination_dollar_shell",
        INVALID,
        &["destination: ", "contains `$`"],
    ),
    (
        "project_invalid",
        INVALID,
        &["project: project ID `My Project` contains uppercase letters"],
    ),
    (
        "location_injection",
        INVALID,
        &["location: location contains `;`"],
    ),
    (
        "no_project_anywhere",
        INVALID,
        &["project: no project given", "GOOGLE_CLOUD_PROJECT"],
    ),
    // Partition selection.
    (
        "end_before_start",
        INVALID,
        &[
            "partitions.end: end `2023-12-01` is before start `2024-01-01`",
            "half-open",
        ],
    ),
    (
        "end_equals_start",
        INVALID,
        &[
            "partitions.end: the range is empty",
            "set end to `2024-01-02`",
        ],
    ),
    (
        "start_off_grid_hour",
        INVALID,
        &[
            "partitions.start: `2024-01-15T03:30:00Z` is not the start of an hour partition",
            "`2024-01-15T03` (the partition containing it) or `2024-01-15T04`",
        ],
    ),
    (
        "start_off_grid_month",
        INVALID,
        &[
            "partitions.start: `2024-01-15` is not the start of a month partition",
            "`2024-01`",
            "`2024-02`",
        ],
    ),
    (
        "start_not_a_date",
        INVALID,
        &[
            "partitions.start: `yesterday` is not a recognised date or time",
            "`2024-01-15` or `20240115`",
        ],
    ),
    (
        "start_no_offset",
        INVALID,
        &[
            "partitions.start: `2024-01-01T00:00:00` has no UTC offset",
            "add `Z`",
        ],
    ),
    (
        "start_out_of_window",
        INVALID,
        &["partitions.start: `1900-01-01` is outside BigQuery's partitionable dates"],
    ),
    (
        "start_without_end",
        INVALID,
        &["partitions.end: the range has a start but no end", "--end"],
    ),
    (
        "too_many_hourly_partitions",
        INVALID,
        &[
            "partitions: the range covers 10200 hour partitions; a table has at most 10000",
            "split the range",
        ],
    ),
    (
        "duplicate_list_entries",
        INVALID,
        &["partitions.list[2]: `20240115` repeats partition `2024-01-15` (partitions.list[0])"],
    ),
    (
        "empty_list",
        INVALID,
        &["partitions.list: the partition list is empty"],
    ),
    (
        "range_and_list",
        INVALID,
        &["partitions.start: both a range (`start`/`end`) and a `list` are given"],
    ),
    // Sources.
    (
        "two_sources",
        INVALID,
        &[
            "source: more than one source given (`query`, `copy`)",
            "exactly one",
        ],
    ),
    ("no_source", INVALID, &["source: no source given"]),
    ("source_null_only", INVALID, &["source: no source given"]),
    ("empty_query", INVALID, &["source.query: query is empty"]),
    (
        "query_without_parameters",
        INVALID,
        &[
            "source.query: query does not use any partition parameter",
            "@partition_date",
        ],
    ),
    (
        "query_spliced_placeholder",
        INVALID,
        &[
            "source.query: query contains the template placeholder `{partition_date}`",
            "use the query parameter instead, e.g. `@partition_date`",
        ],
    ),
    (
        "query_jinja_template",
        INVALID,
        &["source.query: query contains the template placeholder `{{ ds }}`"],
    ),
    (
        "query_dml",
        INVALID,
        &["source.query: query starts with `DELETE`", "WRITE_TRUNCATE"],
    ),
    (
        "query_multiple_statements",
        INVALID,
        &["source.query: query contains more than one statement"],
    ),
    (
        "query_unknown_parameter",
        INVALID,
        &["source.query: query uses the parameter `@run_date`"],
    ),
    (
        "load_uri_not_gcs",
        INVALID,
        &["source.load.uris[0]: `s3://", "is not a gs:// URI"],
    ),
    (
        "load_unknown_placeholder",
        INVALID,
        &[
            "source.load.uris[0]: `{date}` is not a known placeholder",
            "{partition_date}",
        ],
    ),
    (
        "load_unbalanced_brace",
        INVALID,
        &["source.load.uris[0]: ", "unbalanced `{`"],
    ),
    (
        "load_uri_static",
        INVALID,
        &[
            "source.load.uris[0]: ",
            "does not identify the partition",
            "{partition_id}",
        ],
    ),
    (
        "load_uri_control_char",
        INVALID,
        &["source.load.uris[0]: URI contains the control character U+000A"],
    ),
    (
        "load_csv_option_on_parquet",
        INVALID,
        &["source.load.skip_leading_rows: `skip_leading_rows` applies only to CSV"],
    ),
    (
        "load_format_typo",
        INVALID,
        &[
            "source.load.format: unknown variant `JSON`",
            "NEWLINE_DELIMITED_JSON",
        ],
    ),
    (
        "load_placeholder_finer_than_partition",
        INVALID,
        &["source.load.uris[0]: the placeholder `{hour}` is finer than day partitions"],
    ),
    // Integer-range partitioning.
    (
        "range_missing_interval",
        INVALID,
        &[
            "partitions.interval: `integer_range` partitions need an `interval`",
            "rangePartitioning.range.interval",
        ],
    ),
    (
        "range_interval_zero",
        INVALID,
        &["partitions.interval: the interval must be positive, found 0"],
    ),
    (
        "range_interval_float",
        INVALID,
        &[
            "partitions.interval: invalid type: floating point `2.5`",
            "positive integer such as 10",
        ],
    ),
    (
        "range_interval_on_time_granularity",
        INVALID,
        &[
            "partitions.interval: `interval` (1) applies only to `integer_range` partitions, but the granularity is day",
            "remove `interval`",
        ],
    ),
    (
        "range_bound_not_integer",
        INVALID,
        &[
            "partitions.start: `forty` is not an integer",
            "e.g. 0, 40 or -10",
        ],
    ),
    (
        "range_bound_float",
        INVALID,
        &[
            "partitions.end: invalid type: floating point `99.5`",
            "an integer such as 40",
        ],
    ),
    (
        "range_bound_int64_overflow",
        INVALID,
        &["partitions.end: integer 9223372036854775808 is out of range"],
    ),
    (
        "range_end_before_start",
        INVALID,
        &[
            "partitions.end: end `-50` is before start `50`",
            "to rebuild only `50` set end to `60`",
        ],
    ),
    (
        "range_too_many_partitions",
        INVALID,
        &["partitions: the range covers 40000 integer_range partitions; a table has at most 10000"],
    ),
    (
        "range_duplicate_list_entries",
        INVALID,
        &["partitions.list[2]: `40` repeats partition `40` (partitions.list[1])"],
    ),
    (
        "range_query_partition_date",
        INVALID,
        &[
            "source.query: query uses `@partition_date`, which integer_range partitions do not have",
            "@partition_start and @partition_end (INT64",
        ],
    ),
    (
        "range_load_time_placeholder",
        INVALID,
        &[
            "source.load.uris[0]: the placeholder `{partition_date}` applies only to time partitions",
            "{partition_start}",
        ],
    ),
    (
        "range_load_uri_static",
        INVALID,
        &[
            "source.load.uris[0]: `gs://exports/orders/all/*.json` does not identify the partition",
            "{partition_id}",
        ],
    ),
    (
        "copy_from_destination",
        INVALID,
        &["source.copy.table: the copy source `my-project.sales.orders` is the destination table"],
    ),
    (
        "checkpoint_is_destination",
        INVALID,
        &[
            "checkpoint.table: the checkpoint table `my-project.sales.orders` is the destination table",
        ],
    ),
    // Labels.
    (
        "label_uppercase_key",
        INVALID,
        &["job_config.labels.Team: label key `Team` contains uppercase letters"],
    ),
    (
        "label_value_too_long",
        INVALID,
        &["job_config.labels.team: label value is 64 characters long"],
    ),
    (
        "too_many_labels",
        INVALID,
        &["job_config.labels: 61 labels given; at most 60 are allowed"],
    ),
    (
        "label_reserved_prefix",
        INVALID,
        &[
            "job_config.labels.bq-backfill-run: label key `bq-backfill-run` uses the reserved prefix",
        ],
    ),
    (
        "label_key_starts_with_digit",
        INVALID,
        &["job_config.labels.1team: label key `1team` does not start with a lowercase letter"],
    ),
    // Numbers.
    (
        "concurrency_too_high",
        INVALID,
        &["concurrency: 64 is out of range: must be from 1 to 16"],
    ),
    (
        "negative_throttle",
        INVALID,
        &["throttle.pause_seconds: -1 is out of range"],
    ),
    (
        "huge_pause_ratio",
        INVALID,
        &[
            "throttle.pause_ratio: ",
            "is out of range: must be from 0 to 100",
        ],
    ),
    (
        "number_overflow",
        INVALID,
        &[
            "throttle.pause_seconds: not valid JSON: number out of range",
            "0 to 86400",
        ],
    ),
    (
        "max_bytes_zero",
        INVALID,
        &["job_config.maximum_bytes_billed: 0 is out of range"],
    ),
    (
        "max_bytes_negative",
        INVALID,
        &["job_config.maximum_bytes_billed: invalid value: integer `-5`"],
    ),
    (
        "max_bytes_float",
        INVALID,
        &["job_config.maximum_bytes_billed: invalid type: floating point `1.5`"],
    ),
    (
        "max_bytes_huge_string",
        INVALID,
        &["job_config.maximum_bytes_billed: invalid value: string \"99999999999999999999\""],
    ),
    (
        "priority_typo",
        INVALID,
        &[
            "job_config.priority: unknown variant `BACTH`",
            "\"INTERACTIVE\" or \"BATCH\"",
        ],
    ),
    (
        "priority_lowercase",
        INVALID,
        &["job_config.priority: unknown variant `batch`", "uppercase"],
    ),
    (
        "max_attempts_zero",
        INVALID,
        &["retry.max_attempts: 0 is out of range: must be from 1 to 10"],
    ),
    (
        "max_attempts_overflow",
        INVALID,
        &["retry.max_attempts: invalid value: integer `4294967296`"],
    ),
    (
        "backoff_inverted",
        INVALID,
        &[
            "retry.max_backoff_seconds: max_backoff_seconds (5) is less than initial_backoff_seconds (30)",
        ],
    ),
    (
        "max_runtime_zero",
        INVALID,
        &["max_runtime_seconds: 0 is out of range"],
    ),
    (
        "lease_ttl_zero",
        INVALID,
        &["lease.ttl_seconds: 0 is out of range"],
    ),
    (
        "on_failure_typo",
        INVALID,
        &[
            "on_failure: unknown variant `ignore`",
            "\"stop\" or \"continue\"",
        ],
    ),
    // Verification checks and the write strategy.
    (
        "verify_without_target",
        INVALID,
        &[
            "verify[0].query: check query does not contain `{target}`",
            "backticked table path",
        ],
    ),
    (
        "verify_duplicate_name",
        INVALID,
        &[
            "verify[1].name: check name `rows` is used twice",
            "its own name",
        ],
    ),
    (
        "verify_other_placeholder",
        INVALID,
        &[
            "verify[0].query: check query contains the placeholder `{dimension}`",
            "only placeholder",
        ],
    ),
    (
        "verify_min_above_max",
        INVALID,
        &[
            "verify[0].expect.row_count: row_count min 10 is greater than max 1",
            "min <= max",
        ],
    ),
    (
        "verify_unknown_expectation",
        INVALID,
        &["verify", "unknown variant `at_least`"],
    ),
    (
        "verify_negative_percent",
        INVALID,
        &[
            "verify[0].expect.within_percent_of_current: -5 is out of range",
            "percent",
        ],
    ),
    (
        "verify_bad_name",
        INVALID,
        &[
            "verify[0].name: check name `no-dupes` is not a valid name",
            "no_duplicate_keys",
        ],
    ),
    (
        "verify_no_partition_parameter",
        INVALID,
        &[
            "verify[0].query: query does not use any partition parameter",
            "@partition_date",
        ],
    ),
    (
        "verify_equals_query_with_target",
        INVALID,
        &[
            "verify[0].expect.equals_query: the equals query contains `{target}`",
            "from the source",
        ],
    ),
    (
        "staged_without_dataset",
        INVALID,
        &[
            "write.staging_dataset: write.mode `staged` needs a staging dataset",
            "\"staging_dataset\"",
        ],
    ),
    (
        "staged_bad_dataset",
        INVALID,
        &[
            "write.staging_dataset: dataset name `my-scratch` contains",
            "a dataset name",
        ],
    ),
    (
        "direct_with_staging_dataset",
        INVALID,
        &[
            "write.staging_dataset: staging_dataset is set but write.mode is `direct`",
            "\"mode\": \"staged\"",
        ],
    ),
];

/// Counts TCP connections to a local port standing in for BigQuery.
struct ConnectionCounter {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    sweeps: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ConnectionCounter {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let sweeps = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (accepted, sweeps, stop) = (accepted.clone(), sweeps.clone(), stop.clone());
            std::thread::spawn(move || {
                loop {
                    // Accept and drop at once: a client that did connect
                    // fails fast instead of waiting for an answer.
                    while let Ok((stream, _)) = listener.accept() {
                        accepted.fetch_add(1, Ordering::SeqCst);
                        drop(stream);
                    }
                    sweeps.fetch_add(1, Ordering::SeqCst);
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        ConnectionCounter {
            addr,
            accepted,
            sweeps,
            stop,
            thread: Some(thread),
        }
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Connections accepted, once the backlog has been swept completely
    /// after the call (a connection made before it is surely counted).
    fn settled(&self) -> usize {
        let target = self.sweeps.load(Ordering::SeqCst) + 2;
        while self.sweeps.load(Ordering::SeqCst) < target {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for ConnectionCounter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the binary with a clean environment, `stdin` as fd 0, and a 30 s
/// limit (a child that blocks on input is itself a failure).
fn run(args: &[&str], stdin: Stdio, counter: &ConnectionCounter, env: &[(&str, &str)]) -> Outcome {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("BIGQUERY_EMULATOR_HOST", counter.host())
        .envs(env.iter().copied())
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("bq-backfill {args:?} did not finish within 30 s (blocked on input?)");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Outcome {
        code: status.code(),
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/descriptors")
}

fn check(
    name: &str,
    o: &Outcome,
    code: i32,
    needles: &[&str],
    counter: &ConnectionCounter,
) -> Vec<String> {
    let mut failures = Vec::new();
    if o.code != Some(code) {
        failures.push(format!(
            "{name}: exit code {:?}, expected {code}; stderr:\n{}",
            o.code, o.stderr
        ));
    }
    for needle in needles {
        if !o.stderr.contains(needle) {
            failures.push(format!(
                "{name}: stderr lacks {needle:?}; stderr:\n{}",
                o.stderr
            ));
        }
    }
    if !o.stderr.starts_with("error: ") || !o.stderr.contains("\n  hint: ") {
        failures.push(format!(
            "{name}: stderr is not `error: ...` with a hint:\n{}",
            o.stderr
        ));
    }
    let connections = counter.settled();
    if connections != 0 {
        failures.push(format!("{name}: {connections} connection(s) to BigQuery"));
    }
    failures
}

#[test]
fn the_connection_counter_counts() {
    let counter = ConnectionCounter::start();
    assert_eq!(counter.settled(), 0);
    drop(TcpStream::connect(counter.addr).unwrap());
    assert_eq!(counter.settled(), 1);
}

#[test]
fn corpus_table_and_files_agree() {
    let mut files: Vec<String> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut named: Vec<String> = CASES.iter().map(|c| c.0.to_string()).collect();
    named.sort();
    assert_eq!(
        files, named,
        "every file in tests/descriptors needs a row in CASES, and vice versa"
    );
    assert!(CASES.len() >= 45);
}

#[test]
fn every_hostile_descriptor_is_refused_without_touching_bigquery() {
    let counter = ConnectionCounter::start();
    let mut failures = Vec::new();
    // `run` is the command that would talk to BigQuery; also the default.
    for (name, code, needles) in CASES {
        let file = File::open(corpus_dir().join(format!("{name}.json"))).unwrap();
        let o = run(&["run"], Stdio::from(file), &counter, &[]);
        failures.extend(check(name, &o, *code, needles, &counter));
    }
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

fn temp_descriptor(contents: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(contents).unwrap();
    f.flush().unwrap();
    f
}

fn base_descriptor() -> serde_json::Value {
    serde_json::json!({
        "job": "orders_daily",
        "project": "my-project",
        "destination": "sales.orders",
        "partitions": {"granularity": "day", "start": "2024-01-01", "end": "2024-01-08"},
        "source": {"query": "SELECT * FROM raw.orders WHERE DATE(ts) = @partition_date"}
    })
}

#[test]
fn generated_hostile_inputs() {
    let counter = ConnectionCounter::start();
    let mut too_large = b"{\"job\": \"".to_vec();
    too_large.extend(std::iter::repeat_n(b'a', 1024 * 1024));
    too_large.extend(b"\"}");
    let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    let mut long_list = base_descriptor();
    let hours: Vec<String> = (0..10_001)
        .map(|h| {
            let t = chrono::DateTime::UNIX_EPOCH
                + chrono::Duration::hours(h)
                + chrono::Duration::days(365 * 50);
            t.format("%Y%m%d%H").to_string()
        })
        .collect();
    long_list["partitions"] = serde_json::json!({"granularity": "hour", "list": hours});

    let cases: Vec<(&str, Vec<u8>, i32, &[&str])> = vec![
        (
            "too_large",
            too_large.clone(),
            INVALID,
            &["larger than 1 MiB", "start/end range"],
        ),
        (
            "deeply_nested",
            deep.into_bytes(),
            INVALID,
            &["not valid JSON: recursion limit exceeded"],
        ),
        (
            "list_over_10000",
            long_list.to_string().into_bytes(),
            INVALID,
            &["partitions.list: the list has 10001 partitions; a table has at most 10000"],
        ),
    ];
    let mut failures = Vec::new();
    for (name, bytes, code, needles) in &cases {
        let f = temp_descriptor(bytes);
        let o = run(
            &["run"],
            Stdio::from(File::open(f.path()).unwrap()),
            &counter,
            &[],
        );
        failures.extend(check(name, &o, *code, needles, &counter));
        // The same through --task.
        let path = f.path().to_str().unwrap();
        let o = run(&["run", "--task", path], Stdio::null(), &counter, &[]);
        failures.extend(check(
            &format!("{name} via --task"),
            &o,
            *code,
            needles,
            &counter,
        ));
    }
    // Exactly 1 MiB is still accepted.
    let mut exact = base_descriptor().to_string().into_bytes();
    exact.resize(1024 * 1024, b' ');
    let f = temp_descriptor(&exact);
    let o = run(
        &["validate"],
        Stdio::from(File::open(f.path()).unwrap()),
        &counter,
        &[],
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_socket_on_stdin_is_refused_at_once() {
    let counter = ConnectionCounter::start();
    // The peer stays open: a binary that tried to read would block forever.
    let (ours, theirs) = UnixStream::pair().unwrap();
    let o = run(&["run"], Stdio::from(OwnedFd::from(theirs)), &counter, &[]);
    let failures = check(
        "socket",
        &o,
        NO_INPUT,
        &["stdin is a socket", "--task task.json", "Airflow 3"],
        &counter,
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    drop(ours);
}

#[test]
fn a_task_file_is_read_even_when_stdin_is_a_socket() {
    let counter = ConnectionCounter::start();
    let f = temp_descriptor(base_descriptor().to_string().as_bytes());
    let (_ours, theirs) = UnixStream::pair().unwrap();
    let o = run(
        &["validate", "--task", f.path().to_str().unwrap()],
        Stdio::from(OwnedFd::from(theirs)),
        &counter,
        &[],
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let line: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap();
    assert_eq!(line["valid"], true);
    assert_eq!(line["partitions"], 7);
    assert_eq!(counter.settled(), 0);
}

#[test]
fn a_terminal_on_stdin_is_refused_at_once() {
    // SAFETY: plain libc calls on descriptors this test owns.
    let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY) };
    if master < 0 {
        eprintln!("skipped: no pseudo-terminal available on this machine");
        return;
    }
    let slave_path = unsafe {
        assert_eq!(libc::grantpt(master), 0);
        assert_eq!(libc::unlockpt(master), 0);
        let mut buf = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(master, buf.as_mut_ptr(), buf.len()), 0);
        std::ffi::CStr::from_ptr(buf.as_ptr())
            .to_string_lossy()
            .into_owned()
    };
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&slave_path)
        .unwrap();
    let counter = ConnectionCounter::start();
    let o = run(&["run"], Stdio::from(slave), &counter, &[]);
    let failures = check(
        "tty",
        &o,
        NO_INPUT,
        &["stdin is a terminal", "bq-backfill run < task.json"],
        &counter,
    );
    // SAFETY: `master` was opened above and is closed once.
    unsafe { libc::close(master) };
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn missing_or_unreadable_task_files() {
    let counter = ConnectionCounter::start();
    let o = run(
        &["run", "--task", "/nonexistent/task.json"],
        Stdio::null(),
        &counter,
        &[],
    );
    let mut failures = check(
        "missing file",
        &o,
        NO_INPUT,
        &[
            "cannot open task file `/nonexistent/task.json`",
            "caused by: ",
        ],
        &counter,
    );
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        &["run", "--task", dir.path().to_str().unwrap()],
        Stdio::null(),
        &counter,
        &[],
    );
    failures.extend(check(
        "directory",
        &o,
        NO_INPUT,
        &["cannot read task file"],
        &counter,
    ));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn command_line_problems() {
    let counter = ConnectionCounter::start();
    let task = temp_descriptor(base_descriptor().to_string().as_bytes());
    let path = task.path().to_str().unwrap();
    let mut list = base_descriptor();
    list["partitions"] = serde_json::json!({"granularity": "day", "list": ["2024-01-03"]});
    let list_task = temp_descriptor(list.to_string().as_bytes());

    let o = run(&["run", "--bogus"], Stdio::null(), &counter, &[]);
    assert_eq!(o.code, Some(USAGE), "{}", o.stderr);
    let o = run(
        &["run", "--task", path, "--max-runtime", "-1"],
        Stdio::null(),
        &counter,
        &[],
    );
    assert_eq!(o.code, Some(USAGE), "{}", o.stderr);

    let cases: Vec<(&str, Vec<&str>, &[&str])> = vec![
        (
            "off-grid --end",
            vec!["run", "--task", path, "--end", "2024-01-05T05:30:00Z"],
            &["--end: `2024-01-05T05:30:00Z` is not the start of a day partition"],
        ),
        (
            "--start after end",
            vec!["run", "--task", path, "--start", "2024-02-01"],
            &["partitions.end: end `2024-01-08` is before start `2024-02-01`"],
        ),
        (
            "--start with a list",
            vec![
                "run",
                "--task",
                list_task.path().to_str().unwrap(),
                "--start",
                "2024-01-01",
                "--end",
                "2024-01-02",
            ],
            &["--start: --start cannot override an explicit `partitions.list`"],
        ),
        (
            "bad --project",
            vec!["run", "--task", path, "--project", "x;y"],
            &["--project: project ID contains `;`"],
        ),
    ];
    let mut failures = Vec::new();
    for (name, args, needles) in cases {
        let o = run(&args, Stdio::null(), &counter, &[]);
        failures.extend(check(name, &o, INVALID, needles, &counter));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert_eq!(counter.settled(), 0);
}

#[test]
fn help_lists_the_exit_codes() {
    let counter = ConnectionCounter::start();
    let o = run(&["--help"], Stdio::null(), &counter, &[]);
    assert_eq!(o.code, Some(0));
    for code in [
        "  0  ", " 64  ", " 65  ", " 66  ", " 73  ", " 75  ", "143  ",
    ] {
        assert!(
            o.stdout.contains(code),
            "{code:?} missing from --help:\n{}",
            o.stdout
        );
    }
}

#[test]
fn the_examples_validate_offline() {
    let counter = ConnectionCounter::start();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        seen += 1;
        // Ranges left to the orchestrator come from flags, the project from
        // the environment, as in the orchestrator examples.
        let o = run(
            &[
                "validate",
                "--task",
                path.to_str().unwrap(),
                "--start",
                "2024-01-01",
                "--end",
                "2024-01-02",
            ],
            Stdio::null(),
            &counter,
            &[("GOOGLE_CLOUD_PROJECT", "acme-analytics")],
        );
        let list_example = o.stderr.contains("cannot override an explicit");
        let o = if list_example {
            run(
                &["validate", "--task", path.to_str().unwrap()],
                Stdio::null(),
                &counter,
                &[("GOOGLE_CLOUD_PROJECT", "acme-analytics")],
            )
        } else {
            o
        };
        assert_eq!(o.code, Some(0), "{}: {}", path.display(), o.stderr);
        let line: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap();
        assert_eq!(line["valid"], true, "{}", path.display());
        assert!(line["partitions"].as_u64().unwrap() >= 1);
    }
    assert!(seen >= 3, "expected sample descriptors in examples/");
    assert_eq!(counter.settled(), 0);
}
