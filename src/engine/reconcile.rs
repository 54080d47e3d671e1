//! Reconcile: what the audit log recorded against what BigQuery says.
//!
//! Before a partition gets a new job, the job its latest row names (RUNNING
//! or CANCELLED) may still be writing it. This is the decision table of
//! "never two jobs on one partition": pure, so each row has a unit test;
//! `engine::attempt` carries the decision out.

use crate::bq::{JobInfo, JobState};
use crate::engine::checkpoint::{PartitionState, Status};
use crate::planning::strategy::LABEL_RUN;

/// What to do with the job a partition's latest row names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconcile {
    /// Nothing recorded can still write the partition: a new attempt.
    NewAttempt,
    /// The job under the recorded ID was created by another run than the
    /// row's (the audit table was recreated since): it says nothing about
    /// this partition's contents. Never adopt it; wait for it to end, then a
    /// new attempt.
    WaitOutStranger,
    /// Recorded CANCELLED, but a cancel is only a request: cancel again and
    /// wait for the job to end, then a new attempt.
    ConfirmCancelled,
    /// Recorded RUNNING, found cancelled (by a signalled run that could not
    /// confirm it, or an operator): nothing was written; record CANCELLED,
    /// then a new attempt.
    RecordCancelled,
    /// Recorded RUNNING with the current logic by the run that created it:
    /// adopt the job (wait for it and settle its outcome).
    Adopt,
    /// Older logic is still running: cancel it and wait, record it
    /// CANCELLED as stale, then a new attempt with the current logic.
    CancelStale,
    /// Recorded RUNNING but never inserted (killed in between): insert it
    /// now under the same ID and attempt number.
    Resubmit,
}

/// The job ID to look up before a new attempt: named by a RUNNING or
/// CANCELLED latest row. Other states need no call to BigQuery.
pub fn job_to_look_up(state: &PartitionState) -> Option<&str> {
    match state.status {
        Status::Running | Status::Cancelled => state.bq_job_id.as_deref(),
        // VERIFIED names the stage job (DONE); its publish job is looked
        // up by `engine::publish`.
        Status::Succeeded | Status::Failed | Status::Verified | Status::VerifyFailed => None,
    }
}

/// The decision table: the latest row, what `jobs.get` found under the ID
/// it names (`None`: no such job), and the current fingerprint.
pub fn reconcile(state: &PartitionState, job: Option<&JobInfo>, fingerprint: &str) -> Reconcile {
    let same_logic = state.fingerprint.as_deref() == Some(fingerprint);
    let Some(job) = job else {
        return if same_logic && state.status == Status::Running {
            Reconcile::Resubmit
        } else {
            Reconcile::NewAttempt
        };
    };
    let cancelled = job.error.as_ref().is_some_and(|e| e.reason == "stopped");
    if job.labels.get(LABEL_RUN) != Some(&state.run_id) {
        Reconcile::WaitOutStranger
    } else if state.status == Status::Cancelled {
        Reconcile::ConfirmCancelled
    } else if same_logic && cancelled {
        Reconcile::RecordCancelled
    } else if same_logic {
        Reconcile::Adopt
    } else if job.state != JobState::Done {
        Reconcile::CancelStale
    } else {
        // Older logic, already DONE: its rows describe it; write anew.
        Reconcile::NewAttempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bq::{JobFailure, JobStats};

    const FP: &str = "current";

    fn row(status: Status, fp: &str) -> PartitionState {
        PartitionState {
            status,
            fingerprint: Some(fp.into()),
            attempt: 1,
            bq_job_id: Some("bqb_j".into()),
            run_id: "run-a".into(),
            recorded_at: None,
            max_attempt: 1,
            error: None,
            rerun_reason: None,
        }
    }

    fn job(created_by: &str, state: JobState, error: Option<&str>) -> JobInfo {
        JobInfo {
            job_id: "bqb_j".into(),
            state,
            error: error.map(|reason| JobFailure {
                reason: reason.into(),
                message: String::new(),
            }),
            labels: [(LABEL_RUN.to_string(), created_by.to_string())].into(),
            job_type: "QUERY".into(),
            stats: JobStats::default(),
        }
    }

    fn decide(status: Status, fp: &str, j: Option<JobInfo>) -> Reconcile {
        reconcile(&row(status, fp), j.as_ref(), FP)
    }

    #[test]
    fn only_running_and_cancelled_rows_name_a_job_to_look_up() {
        assert_eq!(job_to_look_up(&row(Status::Running, FP)), Some("bqb_j"));
        assert_eq!(job_to_look_up(&row(Status::Cancelled, FP)), Some("bqb_j"));
        assert_eq!(job_to_look_up(&row(Status::Succeeded, FP)), None);
        assert_eq!(job_to_look_up(&row(Status::Failed, FP)), None);
        let mut no_id = row(Status::Running, FP);
        no_id.bq_job_id = None;
        assert_eq!(job_to_look_up(&no_id), None);
    }

    #[test]
    fn a_job_created_by_another_run_is_waited_out_never_adopted() {
        let j = job("run-b", JobState::Running, None);
        assert_eq!(
            decide(Status::Running, FP, Some(j.clone())),
            Reconcile::WaitOutStranger
        );
        assert_eq!(
            decide(Status::Cancelled, FP, Some(j)),
            Reconcile::WaitOutStranger
        );
    }

    #[test]
    fn a_cancelled_row_whose_job_exists_has_its_cancel_confirmed() {
        for j in [
            job("run-a", JobState::Running, None),
            job("run-a", JobState::Done, Some("stopped")),
        ] {
            assert_eq!(
                decide(Status::Cancelled, FP, Some(j)),
                Reconcile::ConfirmCancelled
            );
        }
    }

    #[test]
    fn a_running_row_whose_job_was_cancelled_is_recorded_cancelled() {
        let j = job("run-a", JobState::Done, Some("stopped"));
        assert_eq!(
            decide(Status::Running, FP, Some(j)),
            Reconcile::RecordCancelled
        );
    }

    #[test]
    fn our_own_job_with_the_current_logic_is_adopted_whatever_its_state() {
        for j in [
            job("run-a", JobState::Pending, None),
            job("run-a", JobState::Running, None),
            job("run-a", JobState::Done, None),
            job("run-a", JobState::Done, Some("backendError")),
        ] {
            assert_eq!(decide(Status::Running, FP, Some(j)), Reconcile::Adopt);
        }
    }

    #[test]
    fn older_logic_still_running_is_cancelled_before_writing() {
        let j = job("run-a", JobState::Running, None);
        assert_eq!(
            decide(Status::Running, "old", Some(j)),
            Reconcile::CancelStale
        );
    }

    #[test]
    fn older_logic_already_done_needs_nothing_before_a_new_attempt() {
        let j = job("run-a", JobState::Done, None);
        assert_eq!(
            decide(Status::Running, "old", Some(j)),
            Reconcile::NewAttempt
        );
    }

    #[test]
    fn a_recorded_job_never_inserted_is_inserted_under_the_same_id() {
        assert_eq!(decide(Status::Running, FP, None), Reconcile::Resubmit);
    }

    #[test]
    fn a_missing_job_of_older_logic_or_a_cancelled_row_means_a_new_attempt() {
        assert_eq!(decide(Status::Running, "old", None), Reconcile::NewAttempt);
        assert_eq!(decide(Status::Cancelled, FP, None), Reconcile::NewAttempt);
    }
}
