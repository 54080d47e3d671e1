//! Command-line definitions (clap derive). Parsing only: usage errors come
//! back as `clap::Error` so the caller can exit with [`exit::USAGE`] (64)
//! instead of clap's default 2.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser, Subcommand};

use crate::exit;
use crate::task::descriptor::Overrides;

/// `--version`: the crate version and the git commit it was built from (see build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("BQ_BACKFILL_COMMIT"),
    ")"
);

/// Backfill partitioned BigQuery tables safely, one partition at a time.
///
/// Reads a JSON task descriptor from stdin (`bq-backfill run < task.json`)
/// or from `--task FILE`, then replaces each selected partition with
/// WRITE_TRUNCATE into `table$partition`, recording progress in an audit
/// table so that a re-run resumes where the last one stopped.
#[derive(Debug, Clone, PartialEq, Parser)]
#[command(name = "bq-backfill", version = VERSION, after_help = exit_code_help(), after_long_help = exit_code_help())]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Read the task descriptor from FILE instead of stdin (`-` means stdin).
    #[arg(long, value_name = "FILE", global = true)]
    pub task: Option<PathBuf>,

    /// First partition to rebuild; overrides `partitions.start`
    /// (e.g. 2024-01-15, 2024011503, 2024-01-15T03:00:00Z, or -10 for an
    /// integer range).
    #[arg(
        long,
        value_name = "BOUNDARY",
        global = true,
        allow_negative_numbers = true
    )]
    pub start: Option<String>,

    /// End of the range (exclusive); overrides `partitions.end`.
    #[arg(
        long,
        value_name = "BOUNDARY",
        global = true,
        allow_negative_numbers = true
    )]
    pub end: Option<String>,

    /// Only these partitions (comma-separated IDs or boundaries, e.g.
    /// 20240105,20240112); replaces the descriptor's range or list.
    #[arg(long, value_name = "A,B,C", value_delimiter = ',', num_args = 1.., global = true, allow_negative_numbers = true)]
    pub partitions: Option<Vec<String>>,

    /// Time budget: start no partition after this many seconds; overrides
    /// `max_runtime_seconds`.
    #[arg(long = "max-runtime", value_name = "SECONDS", value_parser = parse_seconds, global = true)]
    pub max_runtime: Option<Duration>,

    /// Project that runs the jobs; overrides `project` and the environment.
    #[arg(long, value_name = "PROJECT", global = true)]
    pub project: Option<String>,

    /// Location of the jobs (e.g. asia-northeast1); overrides `location`.
    /// Needed for datasets outside the US and EU multi-regions.
    #[arg(long, value_name = "LOCATION", global = true)]
    pub location: Option<String>,

    /// BigQuery API base URL (e.g. a local emulator); default: Google's
    /// endpoint, or http://$BIGQUERY_EMULATOR_HOST when that is set.
    #[arg(long = "api-endpoint", value_name = "URL", value_parser = parse_endpoint, global = true)]
    pub api_endpoint: Option<String>,

    /// Partitions run at once (1 to 16); overrides `concurrency`.
    #[arg(long, value_name = "N", global = true, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub concurrency: Option<u32>,

    /// Rebuild partitions that already succeeded, e.g. after a fix to the
    /// source data; needs `--reason`. A rerun with the same reason resumes:
    /// partitions it already rebuilt are skipped.
    #[arg(long, global = true, requires = "reason")]
    pub rerun: bool,

    /// Why the partitions are rebuilt; recorded in every audit row the run
    /// writes (at most 1024 characters).
    #[arg(long, value_name = "TEXT", global = true, requires = "rerun", value_parser = parse_reason)]
    pub reason: Option<String>,

    /// Take over the job's run lease even if another run seems to hold it.
    /// Only when you know that run is dead.
    #[arg(long = "force-unlock", global = true)]
    pub force_unlock: bool,

    /// More log output on stderr (repeat for more).
    #[arg(short, long, action = ArgAction::Count, global = true, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// The subcommands; `run` when none is given.
#[derive(Debug, Clone, PartialEq, Subcommand)]
pub enum Command {
    /// Backfill the selected partitions (the default).
    Run,
    /// Check the descriptor offline and print a one-line JSON summary.
    Validate {
        /// Also check against BigQuery: the destination's partitioning, and a
        /// dry run of the query for the first and last partitions.
        #[arg(long = "dry-run")]
        dry_run: bool,
    },
    /// Print the JSON Schemas of bq-backfill's input and output.
    Schema {
        /// Print only this schema (e.g. `descriptor`).
        name: Option<String>,
    },
    /// Show what a run would do, writing nothing; dry-runs the query.
    Plan {
        /// `table` for people, `json` (JSON Lines) for scripts.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Dry-run every partition to run and show the bytes each would
        /// read, the total and the on-demand cost.
        #[arg(long)]
        estimate: bool,
        /// On-demand price per TiB for `--estimate`, in dollars.
        #[arg(long = "price-per-tib", value_name = "USD", default_value_t = 6.25)]
        price_per_tib: f64,
    },
    /// Show the audit log's view of the job: counts, failures, lease, calendar.
    Status {
        /// `table` for people, `json` (JSON Lines) for scripts.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

/// Output format of `plan` and `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

impl Cli {
    /// The subcommand, `run` when none was given.
    pub fn command(&self) -> Command {
        self.command.clone().unwrap_or(Command::Run)
    }

    /// The command-line values that override the descriptor.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            start: self.start.clone(),
            end: self.end.clone(),
            max_runtime: self.max_runtime,
            project: self.project.clone(),
            partitions: self.partitions.clone(),
            location: self.location.clone(),
            rerun: self.reason.clone().filter(|_| self.rerun),
            concurrency: self.concurrency,
        }
    }
}

/// Parses the command line (the first item is the program name). On error
/// (or `--help`/`--version`) the `clap::Error` tells what to print; map
/// `err.use_stderr() == true` to [`exit::USAGE`] and the rest to
/// [`exit::OK`].
pub fn parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    Cli::try_parse_from(args)
}

/// The exit-code table shown under `--help`.
pub fn exit_code_help() -> String {
    let mut s = String::from("Exit codes:\n");
    for (code, meaning) in exit::TABLE {
        s.push_str(&format!("  {code:>3}  {meaning}\n"));
    }
    s
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !secs.is_finite() || secs <= 0.0 || secs > 31_536_000.0 {
        return Err(format!(
            "`{s}` must be a positive number of seconds, at most 31536000"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A reason as the audit log stores it: trimmed, not empty, at most 1024
/// characters, no control characters (it is shown in status tables).
fn parse_reason(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("the reason is empty; say why, e.g. --reason \"source fix INC-123\"".into());
    }
    if t.chars().count() > 1024 {
        return Err("the reason is longer than 1024 characters".into());
    }
    if t.chars().any(char::is_control) {
        return Err("the reason contains a control character (a newline or tab?)".into());
    }
    Ok(t.to_string())
}

fn parse_endpoint(s: &str) -> Result<String, String> {
    let ok = (s.starts_with("http://") || s.starts_with("https://"))
        && s.len() > "https://".len()
        && !s.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(s.trim_end_matches('/').to_string())
    } else {
        Err(format!("`{s}` is not an http:// or https:// URL"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        parse_args(std::iter::once("bq-backfill").chain(args.iter().copied()))
    }

    #[test]
    fn run_is_the_default() {
        let cli = parse(&[]).unwrap();
        assert_eq!(cli.command(), Command::Run);
        assert_eq!(cli.overrides(), Overrides::default());
    }

    #[test]
    fn flags_before_or_after_the_subcommand() {
        for args in [
            &["--task", "t.json", "validate", "--start", "2024-01-01"][..],
            &["validate", "--task", "t.json", "--start", "2024-01-01"][..],
        ] {
            let cli = parse(args).unwrap();
            assert_eq!(cli.command(), Command::Validate { dry_run: false });
            assert_eq!(cli.task, Some(PathBuf::from("t.json")));
            assert_eq!(cli.start.as_deref(), Some("2024-01-01"));
        }
        let cli = parse(&[
            "run",
            "--max-runtime",
            "90.5",
            "--project",
            "p-123456",
            "-vv",
            "--force-unlock",
        ])
        .unwrap();
        assert_eq!(cli.max_runtime, Some(Duration::from_secs_f64(90.5)));
        assert_eq!(cli.verbose, 2);
        assert!(cli.force_unlock);
        assert_eq!(cli.overrides().project.as_deref(), Some("p-123456"));
        let cli = parse(&["schema", "descriptor"]).unwrap();
        assert_eq!(
            cli.command(),
            Command::Schema {
                name: Some("descriptor".into())
            }
        );
    }

    #[test]
    fn negative_integer_range_bounds_are_values_not_flags() {
        let cli = parse(&["plan", "--start", "-10", "--end", "-0"]).unwrap();
        assert_eq!(
            (cli.start.as_deref(), cli.end.as_deref()),
            (Some("-10"), Some("-0"))
        );
        assert!(parse(&["plan", "--start", "-x"]).is_err());
    }

    #[test]
    fn usage_errors_are_errors() {
        for args in [
            &["--nope"][..],
            &["frobnicate"][..],
            &["--max-runtime", "-5"][..],
            &["--max-runtime", "soon"][..],
            &["--max-runtime", "NaN"][..],
            &["--api-endpoint", "ftp://x"][..],
            &["-v", "--quiet"][..],
            &["--task"][..],
        ] {
            let err = parse(args).unwrap_err();
            assert!(err.use_stderr(), "{args:?}");
        }
        let help = parse(&["--help"]).unwrap_err();
        assert!(!help.use_stderr());
        let text = help.to_string();
        assert!(
            text.contains("Exit codes:") && text.contains(" 66  "),
            "{text}"
        );
        let version = parse(&["--version"]).unwrap_err();
        assert!(!version.use_stderr());
        let text = version.to_string();
        assert!(
            text.starts_with(&format!(
                "bq-backfill {} (commit ",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
    }
}
