//! From command line and input to resolved [`Settings`]: the one function
//! every command that needs a descriptor calls, plus the `validate` command.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;

use serde_json::json;

use crate::exit;
use crate::exit::ErrorKind;
use crate::planning::fingerprint::fingerprint;
use crate::planning::partition;
use crate::task::cli::Cli;
use crate::task::descriptor::{Bound, Granularity, Partitions};
use crate::task::descriptor::{DescriptorError, parse, resolve};
use crate::task::input::{InputError, read_descriptor};
use crate::task::settings::Settings;

/// Why no settings could be produced. `Display` is the full user-facing
/// text: message, cause and `hint:` lines (prefix it with `error: `).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The descriptor could not be read.
    Input(#[from] InputError),
    /// The descriptor (with the command-line overrides and the environment)
    /// is invalid.
    Descriptor(#[from] DescriptorError),
}

impl LoadError {
    /// The process exit code: 66 when no descriptor could be read, 65 when
    /// it is invalid (including larger than 1 MiB).
    pub fn exit_code(&self) -> i32 {
        self.kind().code()
    }

    /// What kind of error this is (its exit code and name).
    pub fn kind(&self) -> ErrorKind {
        match self {
            LoadError::Input(e) => e.kind(),
            LoadError::Descriptor(_) => ErrorKind::InvalidDescriptor,
        }
    }

    /// The problems as JSON objects `{field, message, hint}`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            LoadError::Input(e) => json!([{
                "field": "input",
                "message": e.to_string(),
                "hint": e.hint(),
            }]),
            LoadError::Descriptor(e) => serde_json::to_value(e.issues()).unwrap_or_default(),
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Input(e) => {
                write!(f, "{e}")?;
                if let Some(source) = std::error::Error::source(e) {
                    write!(f, "\n  caused by: {source}")?;
                }
                write!(f, "\n  hint: {}", e.hint())
            }
            LoadError::Descriptor(e) => {
                let issues = e.issues();
                if issues.len() == 1 {
                    write!(f, "invalid task descriptor: ")?;
                } else {
                    writeln!(f, "invalid task descriptor ({} problems):", issues.len())?;
                }
                for (i, issue) in issues.iter().enumerate() {
                    if i > 0 {
                        f.write_str("\n")?;
                    }
                    // `$` (the whole document) adds nothing to the message.
                    if issue.field != "$" {
                        write!(f, "{}: ", issue.field)?;
                    }
                    write!(f, "{}\n  hint: {}", issue.message, issue.hint)?;
                }
                Ok(())
            }
        }
    }
}

/// Reads the descriptor (`--task` or stdin), parses it and resolves it with
/// the command-line overrides and `env` (an environment lookup).
pub fn load_settings<R: Read + AsFd>(
    cli: &Cli,
    stdin: R,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, LoadError> {
    load_settings_with(cli, stdin, env, None)
}

/// A partition range chosen by an orchestrator (the Dagster Pipes context),
/// in the spellings `--start`/`--end` accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalRange {
    pub start: String,
    pub end: RangeEnd,
}

/// Dagster's time windows end exclusively, its key ranges inclusively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeEnd {
    Exclusive(String),
    Inclusive(String),
}

impl ExternalRange {
    pub fn new(start: String, end: RangeEnd) -> ExternalRange {
        ExternalRange { start, end }
    }

    /// The exclusive end for these partitions: an inclusive last key moves
    /// one partition on. A key that does not parse is passed on as it is,
    /// for the resolver to report against `--end`.
    fn exclusive_end(&self, p: &Partitions) -> String {
        let last = match &self.end {
            RangeEnd::Exclusive(e) => return e.clone(),
            RangeEnd::Inclusive(last) => last,
        };
        let next = match p.granularity {
            Granularity::IntegerRange => {
                let interval = match &p.interval {
                    Some(Bound::Integer(n)) => Some(*n),
                    Some(Bound::Text(s)) => partition::parse_integer(s).ok(),
                    None => None,
                };
                partition::parse_integer(last)
                    .ok()
                    .zip(interval)
                    .and_then(|(n, i)| n.checked_add(i))
                    .map(|n| n.to_string())
            }
            g => time_granularity(g)
                .zip(partition::parse_instant(last).ok())
                .map(|(g, t)| {
                    partition::next_start(g, t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                }),
        };
        next.unwrap_or_else(|| last.clone())
    }
}

fn time_granularity(g: Granularity) -> Option<partition::Granularity> {
    match g {
        Granularity::Hour => Some(partition::Granularity::Hour),
        Granularity::Day => Some(partition::Granularity::Day),
        Granularity::Month => Some(partition::Granularity::Month),
        Granularity::Year => Some(partition::Granularity::Year),
        Granularity::IntegerRange => None,
    }
}

/// [`load_settings`], with a range from outside that applies only when the
/// descriptor leaves its range open (a granularity, no `start`, `end` or
/// `list`) and neither `--start` nor `--end` is given.
pub fn load_settings_with<R: Read + AsFd>(
    cli: &Cli,
    stdin: R,
    env: &dyn Fn(&str) -> Option<String>,
    external: Option<&ExternalRange>,
) -> Result<Settings, LoadError> {
    let bytes = read_descriptor(cli.task.as_deref(), stdin)?;
    let descriptor = parse(&bytes)?;
    let mut overrides = cli.overrides();
    let p = &descriptor.partitions;
    let open = p.start.is_none() && p.end.is_none() && p.list.is_none();
    if let Some(r) = external
        && open
        && overrides.start.is_none()
        && overrides.end.is_none()
    {
        tracing::info!(
            "partition range from the orchestrator: {} .. {:?}",
            r.start,
            r.end
        );
        overrides.start = Some(r.start.clone());
        overrides.end = Some(r.exclusive_end(p));
    }
    Ok(resolve(descriptor, env, &overrides)?)
}

/// The one-line JSON summary `validate` prints for valid settings.
pub fn summary(settings: &Settings) -> serde_json::Value {
    let n = partition::count(&settings.partitions);
    let plan = partition::plan(&settings.partitions);
    let mut line = json!({
        "valid": true,
        "job": settings.job,
        "project": settings.project,
        "destination": settings.destination.to_string(),
        "granularity": settings.partitions.granularity_name(),
        "partitions": n,
        "first": plan.first().map(|p| p.id.clone()),
        "last": plan.last().map(|p| p.id.clone()),
        "checkpoint_table": settings.checkpoint_table.to_string(),
        "fingerprint": fingerprint(settings),
    });
    if let Some(interval) = settings.partitions.interval() {
        line["interval"] = json!(interval);
    }
    line
}

/// `bq-backfill validate`: checks the descriptor without any network access.
/// Valid: prints the [`summary`] line on `out`. Invalid: prints the error
/// on `err`, then `{"valid":false,"errors":[...]}` on `out` (last, so that
/// it is the line Airflow keeps). Returns the exit code.
pub fn validate_command<R: Read + AsFd>(
    cli: &Cli,
    stdin: R,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let (line, code) = match load_settings(cli, stdin, env) {
        Ok(settings) => (summary(&settings), exit::OK),
        Err(e) => {
            // A failed write to stderr leaves nothing better to do.
            let _ = writeln!(err, "error: {e}");
            let _ = err.flush();
            let line = json!({ "valid": false, "exit_code": e.exit_code(), "errors": e.to_json() });
            (line, e.exit_code())
        }
    };
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Ok(()) => code,
        // Whoever closed the pipe did not want the line.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => code,
        Err(_) => exit::INTERNAL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::cli::parse_args;
    use std::io::Seek;

    fn stdin_with(text: &str) -> std::fs::File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f.rewind().unwrap();
        f
    }

    const TASK: &str = r#"{"job": "j1", "destination": "ds.t",
        "partitions": {"granularity": "day"},
        "source": {"query": "SELECT @partition_date AS d"}}"#;

    fn env(k: &str) -> Option<String> {
        (k == "GCLOUD_PROJECT").then(|| "env-project".to_string())
    }

    #[test]
    fn flags_and_environment_complete_the_descriptor() {
        let cli = parse_args([
            "bq-backfill",
            "run",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-04",
        ])
        .unwrap();
        let s = load_settings(&cli, stdin_with(TASK), &env).unwrap();
        assert_eq!(s.project, "env-project");
        assert_eq!(s.destination.to_string(), "env-project.ds.t");
        assert_eq!(partition::count(&s.partitions), 3);
    }

    fn ids(s: &Settings) -> Vec<String> {
        partition::plan(&s.partitions)
            .into_iter()
            .map(|p| p.id)
            .collect()
    }

    #[test]
    fn an_orchestrators_range_fills_an_open_descriptor_only() {
        let run = parse_args(["bq-backfill", "run"]).unwrap();
        let window = ExternalRange::new(
            "2024-01-15T00:00:00+00:00".into(),
            RangeEnd::Exclusive("2024-01-17T00:00:00+00:00".into()),
        );
        let s = load_settings_with(&run, stdin_with(TASK), &env, Some(&window)).unwrap();
        assert_eq!(ids(&s), ["20240115", "20240116"]);
        // Inclusive keys: the last key is rebuilt too.
        let keys = ExternalRange::new(
            "2024-01-15".into(),
            RangeEnd::Inclusive("2024-01-17".into()),
        );
        let s = load_settings_with(&run, stdin_with(TASK), &env, Some(&keys)).unwrap();
        assert_eq!(ids(&s), ["20240115", "20240116", "20240117"]);
        // --start/--end win over the orchestrator.
        let flags = parse_args([
            "bq-backfill",
            "run",
            "--start",
            "2024-02-01",
            "--end",
            "2024-02-02",
        ])
        .unwrap();
        let s = load_settings_with(&flags, stdin_with(TASK), &env, Some(&keys)).unwrap();
        assert_eq!(ids(&s), ["20240201"]);
        // A descriptor with its own range keeps it.
        let fixed = TASK.replace(
            r#""granularity": "day""#,
            r#""granularity": "day", "start": "2023-05-01", "end": "2023-05-02""#,
        );
        let s = load_settings_with(&run, stdin_with(&fixed), &env, Some(&keys)).unwrap();
        assert_eq!(ids(&s), ["20230501"]);
    }

    #[test]
    fn integer_keys_end_one_interval_after_the_last_key() {
        let task = TASK
            .replace(
                r#""granularity": "day""#,
                r#""granularity": "integer_range", "interval": 10"#,
            )
            .replace("@partition_date", "@partition_start");
        let run = parse_args(["bq-backfill", "run"]).unwrap();
        let keys = ExternalRange::new("20".into(), RangeEnd::Inclusive("40".into()));
        let s = load_settings_with(&run, stdin_with(&task), &env, Some(&keys)).unwrap();
        assert_eq!(ids(&s), ["20", "30", "40"]);
    }

    #[test]
    fn an_open_descriptor_without_any_range_is_still_an_error() {
        let run = parse_args(["bq-backfill", "run"]).unwrap();
        let e = load_settings_with(&run, stdin_with(TASK), &env, None).unwrap_err();
        assert!(
            e.to_string().contains("partitions: no partitions selected"),
            "{e}"
        );
    }

    #[test]
    fn validate_prints_a_summary() {
        let cli = parse_args([
            "bq-backfill",
            "validate",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-04",
        ])
        .unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = validate_command(&cli, stdin_with(TASK), &env, &mut out, &mut err);
        assert_eq!(code, exit::OK, "{}", String::from_utf8_lossy(&err));
        let line: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(line["valid"], true);
        assert_eq!(line["partitions"], 3);
        assert_eq!(line["first"], "20240101");
        assert_eq!(line["last"], "20240103");
        assert_eq!(line["fingerprint"].as_str().unwrap().len(), 64);
        assert!(err.is_empty());
    }

    #[test]
    fn validate_reports_every_problem() {
        let cli = parse_args(["bq-backfill", "validate"]).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = validate_command(&cli, stdin_with(TASK), &|_| None, &mut out, &mut err);
        assert_eq!(code, exit::INVALID_DESCRIPTOR);
        let line: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(line["valid"], false);
        let fields: Vec<&str> = line["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, ["project", "partitions"]);
        let text = String::from_utf8(err).unwrap();
        assert!(
            text.starts_with("error: invalid task descriptor (2 problems):"),
            "{text}"
        );
        assert!(
            text.contains("project: no project given\n  hint: "),
            "{text}"
        );
    }

    #[test]
    fn input_errors_keep_their_cause_and_hint() {
        let cli = parse_args(["bq-backfill", "--task", "/nonexistent/t.json"]).unwrap();
        let e = load_settings(&cli, stdin_with("{}"), &|_| None).unwrap_err();
        assert_eq!(e.exit_code(), exit::NO_INPUT);
        let text = e.to_string();
        assert!(
            text.contains("cannot open task file `/nonexistent/t.json`"),
            "{text}"
        );
        assert!(
            text.contains("caused by: ") && text.contains("hint: "),
            "{text}"
        );
    }
}
