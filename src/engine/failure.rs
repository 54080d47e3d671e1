//! A failure that stops the run before or between partitions, and its
//! mapping to the documented exit codes and `run_finished.error`.

use crate::bq::BqError;
use crate::engine::checkpoint::CheckpointError;
use crate::engine::lease::LeaseError;
use crate::exit;
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
    /// The documented exit code for this failure.
    pub fn exit_code(&self) -> i32 {
        let api = match self {
            RunFailure::Config { .. } => return exit::CONFIG,
            RunFailure::Lease(LeaseError::Held { .. })
            | RunFailure::Lease(LeaseError::Lost { .. }) => {
                return exit::LOCKED;
            }
            RunFailure::Lease(LeaseError::Checkpoint(c)) | RunFailure::Checkpoint(c) => {
                match c.bq() {
                    Some(e) => e,
                    None => return exit::CONFIG,
                }
            }
            RunFailure::Api(e) => e,
        };
        if api.is_permission() {
            exit::PERMISSION
        } else if api.is_transient() {
            exit::UNAVAILABLE
        } else {
            exit::CONFIG
        }
    }

    /// How a run stopped by this failure ended.
    pub fn run_status(&self) -> RunStatus {
        if self.exit_code() == exit::LOCKED {
            RunStatus::Locked
        } else {
            RunStatus::Error
        }
    }

    pub fn to_run_error(&self) -> RunError {
        let code = self.exit_code();
        let kind = match code {
            exit::CONFIG => "config",
            exit::LOCKED => "locked",
            exit::PERMISSION => "permission",
            exit::UNAVAILABLE => "unavailable",
            _ => "internal",
        };
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
            _ if code == exit::UNAVAILABLE => Some("BigQuery kept failing transiently; run again later (finished partitions are skipped)".into()),
            _ if code == exit::PERMISSION => Some("check the credentials and that they may run jobs and write both tables".into()),
            _ => None,
        };
        RunError {
            kind: kind.into(),
            message: self.to_string(),
            hint,
        }
    }
}
