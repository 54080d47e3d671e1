//! What the audit log says of a partition: its latest recorded status and
//! attempt, as `engine::checkpoint` reads them and as planning decides on
//! them. Pure data, so that planning does not depend on the engine.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A partition's state as recorded in the audit table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Staged mode: the staged partition passed every check; the publish
    /// copy job (its ID derived from `bq_job_id`) is next.
    Verified,
    /// A check failed: the partition counts as failed (in staged mode the
    /// destination's partition was left as it was).
    VerifyFailed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "RUNNING",
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
            Status::Cancelled => "CANCELLED",
            Status::Verified => "VERIFIED",
            Status::VerifyFailed => "VERIFY_FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "RUNNING" => Status::Running,
            "SUCCEEDED" => Status::Succeeded,
            "FAILED" => Status::Failed,
            "CANCELLED" => Status::Cancelled,
            "VERIFIED" => Status::Verified,
            "VERIFY_FAILED" => Status::VerifyFailed,
            _ => return None,
        })
    }
}

/// The latest recorded state of one partition.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionState {
    pub status: Status,
    pub fingerprint: Option<String>,
    pub attempt: u32,
    pub bq_job_id: Option<String>,
    pub run_id: String,
    pub recorded_at: Option<DateTime<Utc>>,
    /// Highest attempt number ever recorded for the partition (any
    /// fingerprint), so new job IDs never reuse an old one.
    pub max_attempt: u32,
    /// The latest row's error (`reason: message`), if it has one.
    pub error: Option<String>,
    /// The `--reason` of the run that wrote the latest row, if it was a rerun.
    pub rerun_reason: Option<String>,
}
