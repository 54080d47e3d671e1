//! What the run does with one partition given its latest audit row: the
//! first, pure half of the decision (the second half asks BigQuery what
//! became of the job the row names: see `engine::attempt`).

use crate::output::events::SkipReason;
use crate::planning::state::{PartitionState, Status};

/// What the run will do with one partition, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Skip(SkipReason),
    Run(RunReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunReason {
    /// Never attempted.
    New,
    /// Succeeded before, with different logic (the fingerprint changed).
    StaleFingerprint,
    /// The latest attempt failed.
    PreviouslyFailed,
    /// The latest attempt was cancelled.
    PreviouslyCancelled,
    /// A job was recorded RUNNING (a crash or a kill): it will be adopted.
    AdoptRunning,
    /// Succeeded, and rebuilt because of `--rerun` (a new reason).
    Rerun,
    /// Staged and verified with the current logic, not yet published (a
    /// crash or a kill between the two): the publish copy job is next.
    Publish,
    /// A verification check failed.
    VerifyFailed,
}

/// Decide a partition's fate from its latest audit state. `rerun` is the
/// `--reason` of a `--rerun`: a success is rebuilt unless it was recorded
/// by a rerun with this same reason (so a rerun that stopped resumes).
pub fn decide(state: Option<&PartitionState>, fingerprint: &str, rerun: Option<&str>) -> Decision {
    match state {
        None => Decision::Run(RunReason::New),
        Some(s) => match s.status {
            Status::Succeeded if s.fingerprint.as_deref() == Some(fingerprint) => match rerun {
                Some(reason) if s.rerun_reason.as_deref() != Some(reason) => {
                    Decision::Run(RunReason::Rerun)
                }
                _ => Decision::Skip(SkipReason::AlreadySucceeded),
            },
            Status::Succeeded => Decision::Run(RunReason::StaleFingerprint),
            Status::Running => Decision::Run(RunReason::AdoptRunning),
            Status::Failed => Decision::Run(RunReason::PreviouslyFailed),
            Status::Cancelled => Decision::Run(RunReason::PreviouslyCancelled),
            Status::Verified if s.fingerprint.as_deref() == Some(fingerprint) => {
                Decision::Run(RunReason::Publish)
            }
            Status::Verified => Decision::Run(RunReason::StaleFingerprint),
            Status::VerifyFailed => Decision::Run(RunReason::VerifyFailed),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(status: Status, fp: &str) -> PartitionState {
        PartitionState {
            status,
            fingerprint: Some(fp.into()),
            attempt: 1,
            bq_job_id: Some("j".into()),
            run_id: "r".into(),
            recorded_at: None,
            max_attempt: 1,
            error: None,
            rerun_reason: None,
        }
    }

    #[test]
    fn only_a_success_with_the_current_fingerprint_is_skipped() {
        assert_eq!(decide(None, "a", None), Decision::Run(RunReason::New));
        assert_eq!(
            decide(Some(&st(Status::Succeeded, "a")), "a", None),
            Decision::Skip(SkipReason::AlreadySucceeded)
        );
        assert_eq!(
            decide(Some(&st(Status::Succeeded, "b")), "a", None),
            Decision::Run(RunReason::StaleFingerprint)
        );
        assert_eq!(
            decide(Some(&st(Status::Running, "a")), "a", None),
            Decision::Run(RunReason::AdoptRunning)
        );
        assert_eq!(
            decide(Some(&st(Status::Failed, "a")), "a", None),
            Decision::Run(RunReason::PreviouslyFailed)
        );
        assert_eq!(
            decide(Some(&st(Status::Cancelled, "a")), "a", None),
            Decision::Run(RunReason::PreviouslyCancelled)
        );
        assert_eq!(
            decide(Some(&st(Status::Verified, "a")), "a", None),
            Decision::Run(RunReason::Publish)
        );
        assert_eq!(
            decide(Some(&st(Status::Verified, "b")), "a", None),
            Decision::Run(RunReason::StaleFingerprint)
        );
        assert_eq!(
            decide(Some(&st(Status::VerifyFailed, "a")), "a", None),
            Decision::Run(RunReason::VerifyFailed)
        );
    }

    #[test]
    fn a_rerun_rebuilds_successes_once_per_reason() {
        let done = st(Status::Succeeded, "a");
        let fix = Some("source fix INC-1");
        assert_eq!(
            decide(Some(&done), "a", fix),
            Decision::Run(RunReason::Rerun)
        );
        let rebuilt = PartitionState {
            rerun_reason: fix.map(String::from),
            ..done.clone()
        };
        assert_eq!(
            decide(Some(&rebuilt), "a", fix),
            Decision::Skip(SkipReason::AlreadySucceeded)
        );
        assert_eq!(
            decide(Some(&rebuilt), "a", Some("another fix")),
            Decision::Run(RunReason::Rerun)
        );
        // A changed query is stale, rerun or not; failures are retried as ever.
        assert_eq!(
            decide(Some(&rebuilt), "b", fix),
            Decision::Run(RunReason::StaleFingerprint)
        );
        assert_eq!(
            decide(Some(&st(Status::Failed, "a")), "a", fix),
            Decision::Run(RunReason::PreviouslyFailed)
        );
        assert_eq!(decide(None, "a", fix), Decision::Run(RunReason::New));
    }
}
