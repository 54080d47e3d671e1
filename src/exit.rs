//! The documented exit codes, in one place.
//!
//! Orchestrators branch on these numbers, so they are part of the public
//! contract (see README "Exit codes"). 99 is never used: Airflow's
//! BashOperator reads it as "skip this task".

/// Every partition succeeded or was skipped as already done.
pub const OK: i32 = 0;
/// The run finished, but at least one partition failed; a re-run retries
/// only the failed (and pending) partitions.
pub const PARTITIONS_FAILED: i32 = 1;
/// Command-line usage error (unknown flag, bad flag value).
pub const USAGE: i32 = 64;
/// The task descriptor is invalid (not JSON, wrong types, unknown fields,
/// values out of range). Nothing was sent to BigQuery.
pub const INVALID_DESCRIPTOR: i32 = 65;
/// No descriptor could be read: the file is missing, or stdin is a terminal
/// or a socket (Airflow 3 hands its supervisor's socket to the task as fd 0).
pub const NO_INPUT: i32 = 66;
/// BigQuery stayed unavailable after every retry (5xx, 429, timeouts).
pub const UNAVAILABLE: i32 = 69;
/// A bug in bq-backfill: please report it.
pub const INTERNAL: i32 = 70;
/// Another run of the same job holds the run lease; nothing was written.
/// Wait for it to finish (or its lease to expire), or use `--force-unlock`
/// if you know it is dead. Also: another run took the lease over from this
/// one (`--force-unlock`); this run stopped and left its work to that run.
pub const LOCKED: i32 = 73;
/// The time budget (`max_runtime_seconds` / `--max-runtime`) was spent:
/// the run stopped cleanly between partitions with work left. Run again.
pub const INCOMPLETE: i32 = 75;
/// Authentication failed or permission was denied.
pub const PERMISSION: i32 = 77;
/// The destination or configuration does not fit: missing table,
/// non-partitioned table, granularity differing from the table's, an
/// integer range not matching the table's interval or range; unreadable
/// Dagster Pipes parameters (`DAGSTER_PIPES_*`).
pub const CONFIG: i32 = 78;
/// Cancelled by SIGINT (128 + 2).
pub const CANCELLED_SIGINT: i32 = 130;
/// Cancelled by SIGTERM (128 + 15).
pub const CANCELLED_SIGTERM: i32 = 143;

/// Why a run or command stopped with an error: each kind has its exit code
/// and its `run_finished.error.kind` string, so neither is derived twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Usage,
    InvalidDescriptor,
    NoInput,
    Unavailable,
    Internal,
    Locked,
    Permission,
    Config,
}

impl ErrorKind {
    /// Every kind, for the tests that keep the table and the README in step.
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::Usage,
        ErrorKind::InvalidDescriptor,
        ErrorKind::NoInput,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
        ErrorKind::Locked,
        ErrorKind::Permission,
        ErrorKind::Config,
    ];

    /// The documented exit code.
    pub const fn code(self) -> i32 {
        match self {
            ErrorKind::Usage => USAGE,
            ErrorKind::InvalidDescriptor => INVALID_DESCRIPTOR,
            ErrorKind::NoInput => NO_INPUT,
            ErrorKind::Unavailable => UNAVAILABLE,
            ErrorKind::Internal => INTERNAL,
            ErrorKind::Locked => LOCKED,
            ErrorKind::Permission => PERMISSION,
            ErrorKind::Config => CONFIG,
        }
    }

    /// `run_finished.error.kind`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Usage => "usage",
            ErrorKind::InvalidDescriptor => "invalid_descriptor",
            ErrorKind::NoInput => "no_input",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
            ErrorKind::Locked => "locked",
            ErrorKind::Permission => "permission",
            ErrorKind::Config => "config",
        }
    }

    /// The documented meaning (the same words as [`TABLE`]).
    pub fn meaning(self) -> &'static str {
        TABLE
            .iter()
            .find(|(code, _)| *code == self.code())
            .map_or("", |(_, m)| m)
    }
}

/// All codes with a one-line meaning, for `--help` and the README test.
pub const TABLE: &[(i32, &str)] = &[
    (OK, "all partitions succeeded or were already done"),
    (
        PARTITIONS_FAILED,
        "some partitions failed; a re-run retries only those",
    ),
    (USAGE, "invalid command-line usage"),
    (
        INVALID_DESCRIPTOR,
        "invalid task descriptor; nothing was sent to BigQuery",
    ),
    (
        NO_INPUT,
        "no descriptor: missing file, or stdin is a terminal or socket",
    ),
    (UNAVAILABLE, "BigQuery unavailable after retries"),
    (INTERNAL, "internal error (a bug)"),
    (
        LOCKED,
        "another run of this job holds the lease, or took it over from this run",
    ),
    (
        INCOMPLETE,
        "time budget spent; partitions left pending, run again",
    ),
    (PERMISSION, "authentication or permission problem"),
    (CONFIG, "destination or configuration problem"),
    (CANCELLED_SIGINT, "cancelled by SIGINT"),
    (CANCELLED_SIGTERM, "cancelled by SIGTERM"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_has_a_distinct_documented_code_and_name() {
        let mut codes: Vec<i32> = ErrorKind::ALL.iter().map(|k| k.code()).collect();
        let mut names: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        for k in ErrorKind::ALL {
            assert!(!k.meaning().is_empty(), "{k:?} is not in TABLE");
            assert_ne!(k.code(), 99, "99 is Airflow's skip code");
        }
        codes.sort_unstable();
        codes.dedup();
        names.sort_unstable();
        names.dedup();
        assert_eq!(codes.len(), ErrorKind::ALL.len());
        assert_eq!(names.len(), ErrorKind::ALL.len());
    }
}
