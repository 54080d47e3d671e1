//! A failure that stops the run before or between partitions, and its
//! mapping to the documented exit codes and `run_finished.error`.

use crate::bq::BqError;
use crate::engine::checkpoint::CheckpointError;
use crate::engine::lease::LeaseError;
use crate::exit::ErrorKind;
use crate::output::events::{RunError, RunStatus};

/// A failure that stops the run before or between partitions.
#[derive(Debug, thiserror::Error)]
pub enum RunFailure {
    #[error("{message}")]
    Config {
        message: String,
        hint: Option<String>,
    },
    #[error(transparent)]
    Api(#[from] BqError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
}

impl RunFailure {
    /// What kind of failure this is: its exit code and its name.
    pub fn kind(&self) -> ErrorKind {
        let api = match self {
            RunFailure::Config { .. } => return ErrorKind::Config,
            RunFailure::Lease(LeaseError::Held { .. })
            | RunFailure::Lease(LeaseError::Lost { .. }) => return ErrorKind::Locked,
            RunFailure::Lease(LeaseError::Checkpoint(c)) | RunFailure::Checkpoint(c) => {
                match c.bq() {
                    Some(e) => e,
                    None => return ErrorKind::Config,
                }
            }
            RunFailure::Api(e) => e,
        };
        if api.is_permission() {
            ErrorKind::Permission
        } else if api.is_transient() {
            ErrorKind::Unavailable
        } else {
            ErrorKind::Config
        }
    }

    /// The BigQuery error behind this failure, if there is one.
    fn bq_error(&self) -> Option<&BqError> {
        match self {
            RunFailure::Api(e) => Some(e),
            RunFailure::Lease(LeaseError::Checkpoint(c)) | RunFailure::Checkpoint(c) => c.bq(),
            _ => None,
        }
    }

    /// The documented exit code for this failure.
    pub fn exit_code(&self) -> i32 {
        self.kind().code()
    }

    /// How a run stopped by this failure ended.
    pub fn run_status(&self) -> RunStatus {
        if self.kind() == ErrorKind::Locked {
            RunStatus::Locked
        } else {
            RunStatus::Error
        }
    }

    pub fn to_run_error(&self) -> RunError {
        let kind = self.kind();
        let hint = match self {
            RunFailure::Config { hint, .. } => hint.clone(),
            RunFailure::Lease(LeaseError::Held { .. }) => Some(
                "wait for the other run to finish or its lease to expire; if it is dead, run again with --force-unlock"
                    .into(),
            ),
            RunFailure::Lease(LeaseError::Lost { .. }) => Some(
                "the run that took the lease (--force-unlock) owns this backfill now and adopts the job in flight; nothing to do unless it fails"
                    .into(),
            ),
            RunFailure::Checkpoint(CheckpointError::MissingDataset { project, dataset }) => Some(format!(
                "create the dataset first, e.g. `bq mk --dataset {project}:{dataset}`, or point checkpoint.table elsewhere"
            )),
            RunFailure::Api(BqError::Auth { hint: Some(h), .. }) => Some(h.clone()),
            RunFailure::Api(e @ BqError::Auth { .. }) => e.hint().map(|h| h.trim_start_matches("hint: ").to_string()),
            _ if self.bq_error().is_some_and(|e| {
                e.to_string().contains("at first contact") || e.operation() == "oauth2.token"
            }) =>
            {
                self.bq_error().and_then(BqError::hint).map(|h| h.trim_start_matches("hint: ").to_string())
            }
            _ if kind == ErrorKind::Unavailable => Some("BigQuery kept failing transiently; run again later (finished partitions are skipped)".into()),
            _ if kind == ErrorKind::Permission => Some("check the credentials and that they may run jobs and write both tables".into()),
            _ => self
                .bq_error()
                .and_then(BqError::hint)
                .map(|h| h.trim_start_matches("hint: ").to_string()),
        };
        RunError::new(kind, self.to_string(), hint)
    }
}
