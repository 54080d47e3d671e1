//! One partition, from its latest audit row to its outcome, in named steps:
//! **reconcile** what the audit log recorded with what BigQuery says (the
//! decision table is `engine::reconcile`), **submit** a job or attach to
//! the one already under its ID, **wait** for it (cancellably), **settle**
//! its outcome in the audit log and the event stream.
//!
//! Order of operations, and why:
//! 1. Record RUNNING with the deterministic job ID *before* inserting the
//!    job, so a crash at any point leaves a row naming the job to adopt.
//! 2. Insert the job. A retried insert after an unknown outcome meets 409 and
//!    attaches to the job already there.
//! 3. Wait for DONE (cancellable), record SUCCEEDED or FAILED, emit events.
//!
//! Everything one partition needs is in a [`Slot`] (shared by the run) and
//! an [`Attempt`] (this job): the unit a bounded-concurrency loop runs.

use std::time::{Duration, Instant};

use chrono::Utc;

use crate::bq::retry;
use crate::bq::{BqError, InsertOutcome, JobFailure, JobInfo, JobState};
use crate::engine::checkpoint::{AuditRow, Checkpoints, PartitionState, Status};
use crate::engine::failure::RunFailure;
use crate::engine::lease::Lease;
use crate::engine::reconcile::{self, Reconcile};
use crate::engine::runner::RunContext;
use crate::engine::{stage, verify};
use crate::output::events::Event;
use crate::planning::fingerprint;
use crate::planning::partition::Partition;
use crate::planning::strategy::{self, LABEL_RUN, WriteStrategy};

/// After a signal: cancelling the job and confirming it (≤ 1.1 s), the
/// CANCELLED row (≤ 0.5 s) and the lease release (≤ 0.5 s) fit in 2.1 s.
const CANCEL_CONFIRM_BUDGET: Duration = Duration::from_millis(1100);
pub(crate) const CLEANUP_STEP: Duration = Duration::from_millis(500);

/// How many times a job ID may turn out to belong to someone else (an older
/// job from a dropped audit table) before we give up.
const MAX_FOREIGN_IDS: u32 = 20;

/// What the run shares with each partition it works on.
pub(crate) struct Slot<'a> {
    pub ctx: &'a RunContext,
    pub cp: &'a Checkpoints,
    pub lease: &'a Lease,
    pub strategy: &'a dyn WriteStrategy,
    /// The current fingerprint.
    pub fp: &'a str,
    /// When the run started (the time budget counts from here).
    pub started: Instant,
}

impl Slot<'_> {
    fn budget_spent(&self) -> bool {
        super::runner::budget_spent(&self.ctx.settings, self.started)
    }

    fn is_ours(&self, info: &JobInfo) -> bool {
        info.labels.get(LABEL_RUN).map(String::as_str) == Some(self.ctx.run_id.as_str())
    }
}

/// One job for one partition: what every step of an attempt shares.
#[derive(Clone)]
pub(crate) struct Attempt<'a> {
    pub partition: &'a Partition,
    pub number: u32,
    pub job_id: String,
    /// The fingerprint the job runs with: the current one, except for a
    /// stale job found running with older logic.
    pub fingerprint: String,
    /// `project.dataset.table$ID`.
    pub destination: String,
    /// Direct mode: the `within_percent_of_current` checks' values before
    /// this job wrote the partition (`None`: unknown, the job was adopted).
    pub current: Option<verify::Current>,
}

impl<'a> Attempt<'a> {
    /// Attempt `number` with the current logic (its deterministic job ID).
    fn new(slot: &Slot<'_>, partition: &'a Partition, number: u32) -> Attempt<'a> {
        Attempt {
            partition,
            number,
            job_id: fingerprint::job_id(&slot.ctx.settings.job, &partition.id, slot.fp, number),
            fingerprint: slot.fp.to_string(),
            destination: decorated_name(slot, partition),
            current: None,
        }
    }

    /// The attempt a partition's latest audit row describes.
    pub(super) fn recorded(
        slot: &Slot<'_>,
        partition: &'a Partition,
        st: &PartitionState,
    ) -> Attempt<'a> {
        Attempt {
            partition,
            number: st.attempt,
            job_id: st.bq_job_id.clone().unwrap_or_default(),
            fingerprint: st.fingerprint.clone().unwrap_or_default(),
            destination: decorated_name(slot, partition),
            current: None,
        }
    }

    /// The same attempt, through another of its jobs (the publish copy).
    pub(super) fn with_job(&self, job_id: String) -> Attempt<'a> {
        Attempt {
            job_id,
            ..self.clone()
        }
    }

    /// The row of a job that ended in `status`: its statistics and times
    /// (and the check results, as JSON).
    pub(super) fn finished_row(
        &self,
        status: Status,
        done: &JobInfo,
        checks: Option<String>,
    ) -> AuditRow {
        let stats = &done.stats;
        AuditRow {
            started_at: stats.start_time,
            finished_at: stats.end_time.or_else(|| Some(Utc::now())),
            rows_written: stats.rows_written,
            bytes_processed: stats.bytes_processed,
            bytes_billed: stats.bytes_billed,
            checks,
            ..self.row(status)
        }
    }

    /// This attempt's audit row in `status`.
    pub(super) fn row(&self, status: Status) -> AuditRow {
        AuditRow::partition(
            &self.partition.id,
            status,
            self.number,
            &self.job_id,
            &self.fingerprint,
            &self.destination,
        )
    }
}

fn decorated_name(slot: &Slot<'_>, p: &Partition) -> String {
    slot.ctx.settings.destination.partition(&p.id).to_string()
}

/// What happened to one partition.
pub(crate) enum PartitionResult {
    Succeeded {
        runtime: Duration,
    },
    Failed {
        runtime: Duration,
    },
    Cancelled,
    /// The time budget ran out before a new job could start (after waiting
    /// out an earlier one): the partition stays pending.
    Deferred,
}

/// Where the attempts of this run start, after reconciling.
enum Next {
    /// The partition's outcome is known (adopted and settled, or a signal).
    Done(PartitionResult),
    /// Start at this attempt number; `resubmit`: its job ID was recorded
    /// RUNNING but never inserted, so a 409 on it is ours to attach to.
    Attempt { number: u32, resubmit: bool },
}

/// One partition, start to end.
pub(crate) async fn process_partition(
    slot: &Slot<'_>,
    p: &Partition,
    state: Option<&PartitionState>,
) -> Result<PartitionResult, RunFailure> {
    let t0 = Instant::now();
    match reconcile_step(slot, p, state, t0).await? {
        Next::Done(result) => Ok(result),
        Next::Attempt { number, resubmit } => run_attempts(slot, p, number, resubmit, t0).await,
    }
}

/// Find out what became of the job the latest row names, before anything
/// new is submitted, and act on it (see [`reconcile::reconcile`]).
async fn reconcile_step(
    slot: &Slot<'_>,
    p: &Partition,
    state: Option<&PartitionState>,
    t0: Instant,
) -> Result<Next, RunFailure> {
    let number = state.map_or(0, |st| st.max_attempt.max(st.attempt)) + 1;
    let new = || Next::Attempt {
        number,
        resubmit: false,
    };
    if let Some(st) = state.filter(|st| st.status == Status::Verified) {
        return Ok(match stage::resume(slot, p, st, t0).await? {
            Some(result) => Next::Done(result),
            None => new(),
        });
    }
    let Some((st, job_id)) = state.and_then(|st| Some((st, reconcile::job_to_look_up(st)?))) else {
        return Ok(new());
    };
    let info = slot.ctx.bq.get_job(job_id).await?;
    let recorded = Attempt::recorded(slot, p, st);
    let decision = reconcile::reconcile(st, info.as_ref(), slot.fp);
    let waited = |ended: bool| {
        if ended {
            new()
        } else {
            Next::Done(PartitionResult::Cancelled)
        }
    };
    let Some(info) = info else {
        return Ok(match decision {
            Reconcile::Resubmit => Next::Attempt {
                number: st.attempt,
                resubmit: true,
            },
            _ => new(),
        });
    };
    match decision {
        Reconcile::WaitOutStranger => {
            tracing::warn!(job = %job_id, "the job recorded for partition {} was created by another run; not adopting it", p.id);
            Ok(waited(wait_out(slot.ctx, info, false).await?))
        }
        Reconcile::ConfirmCancelled => Ok(waited(wait_out(slot.ctx, info, true).await?)),
        Reconcile::RecordCancelled => {
            record_cancelled_before_adoption(slot.cp, &recorded).await?;
            Ok(new())
        }
        Reconcile::Adopt => Ok(match adopt(slot, &recorded, info, t0).await? {
            Some(result) => Next::Done(result),
            None => new(),
        }),
        Reconcile::CancelStale => {
            tracing::warn!(job = %job_id, "cancelling a job running with an older fingerprint");
            if !wait_out(slot.ctx, info, true).await? {
                return Ok(Next::Done(PartitionResult::Cancelled));
            }
            let row = recorded
                .row(Status::Cancelled)
                .ended_with("stale", "superseded by a run with a different fingerprint");
            slot.cp.record(&row).await?;
            Ok(new())
        }
        Reconcile::NewAttempt | Reconcile::Resubmit => Ok(new()),
    }
}

/// Adopt the job a run recorded RUNNING (a crash or a kill): wait for it
/// and settle its outcome as if this run had submitted it. `None`: a new
/// attempt may succeed where the adopted job did not.
async fn adopt(
    slot: &Slot<'_>,
    recorded: &Attempt<'_>,
    info: JobInfo,
    t0: Instant,
) -> Result<Option<PartitionResult>, RunFailure> {
    slot.ctx.emitter.emit(Event::PartitionStarted {
        partition: recorded.partition.id.clone(),
        destination: recorded.destination.clone(),
        bq_job_id: recorded.job_id.clone(),
        attempt: recorded.number,
        adopted: true,
    });
    tracing::info!(job = %recorded.job_id, "adopting the job recorded RUNNING");
    // Whatever the adopted job did, this run still has its attempts.
    let may_retry = |_: bool| !slot.budget_spent();
    Ok(
        match settle(slot, recorded, info, t0, &may_retry, true).await? {
            Settled::Done(r) => Some(r),
            Settled::NewAttempt | Settled::RateLimited => None,
        },
    )
}

/// The attempts this run makes: submit, wait, settle; back off and try
/// again after a transient job failure while attempts and time are left.
async fn run_attempts(
    slot: &Slot<'_>,
    p: &Partition,
    mut number: u32,
    mut resubmit: bool,
    t0: Instant,
) -> Result<PartitionResult, RunFailure> {
    let mut tries = Tries::default();
    let mut foreign = 0u32;
    loop {
        if slot.ctx.cancel.is_cancelled() {
            return Ok(PartitionResult::Cancelled);
        }
        // Waiting out an earlier job may have taken long: no new job after
        // the budget, and none without the lease.
        if slot.budget_spent() {
            return Ok(PartitionResult::Deferred);
        }
        slot.lease.check().await?;
        tries.attempts += 1;
        let mut attempt = Attempt::new(slot, p, number);
        attempt.current = stage::baseline(slot, p).await?;
        let info = match submit(slot, &attempt, resubmit).await? {
            Submitted::Job(info) => *info,
            Submitted::Foreign => {
                foreign += 1;
                if foreign > MAX_FOREIGN_IDS {
                    return Err(RunFailure::Config {
                        message: format!(
                            "partition {}: {MAX_FOREIGN_IDS} job IDs in a row already taken",
                            p.id
                        ),
                        hint: Some(
                            "the audit table does not match this project's job history".into(),
                        ),
                    });
                }
                number += 1;
                tries.attempts -= 1;
                resubmit = false;
                continue;
            }
            Submitted::Rejected => {
                return Ok(PartitionResult::Failed {
                    runtime: t0.elapsed(),
                });
            }
            Submitted::Cancelled => return Ok(PartitionResult::Cancelled),
        };
        let may_retry = |rate_limited| tries.may_retry(slot, rate_limited);
        let rate_limited = match settle(slot, &attempt, info, t0, &may_retry, false).await? {
            Settled::Done(r) => return Ok(r),
            Settled::RateLimited => true,
            Settled::NewAttempt => false,
        };
        if !tries.may_retry(slot, rate_limited) {
            return Ok(PartitionResult::Failed {
                runtime: t0.elapsed(),
            });
        }
        let retry_index = tries.failed(rate_limited);
        if !back_off(slot, &attempt, retry_index, rate_limited).await {
            return Ok(PartitionResult::Cancelled);
        }
        number += 1;
        resubmit = false;
    }
}

/// What one partition has used of this run's retries. A job that met
/// BigQuery's rate limit does not use up an attempt: the run backs off
/// (growing, with jitter) and tries again for as long as
/// `retry.deadline_seconds` allows, so a busy table slows a backfill down
/// instead of failing its partitions.
#[derive(Default)]
struct Tries {
    /// Attempts counted against `retry.max_attempts`.
    attempts: u32,
    /// Backoffs so far (each grows the next one).
    backoffs: u32,
    /// When the first job of this partition met a rate limit.
    rate_limited_since: Option<Instant>,
}

impl Tries {
    fn may_retry(&self, slot: &Slot<'_>, rate_limited: bool) -> bool {
        let retry = &slot.ctx.settings.retry;
        let left = if rate_limited {
            self.rate_limited_since
                .is_none_or(|since| since.elapsed() < retry.deadline)
        } else {
            self.attempts < retry.max_attempts
        };
        left && !slot.budget_spent()
    }

    /// Counts a failed job; the index of the backoff that follows.
    fn failed(&mut self, rate_limited: bool) -> u32 {
        if rate_limited {
            self.attempts -= 1;
            self.rate_limited_since.get_or_insert_with(Instant::now);
        }
        self.backoffs += 1;
        self.backoffs - 1
    }
}

/// The pause before the next attempt after a transient job failure (the
/// `retry_index`-th backoff of this partition); `false` if a signal cut it
/// short.
async fn back_off(
    slot: &Slot<'_>,
    attempt: &Attempt<'_>,
    retry_index: u32,
    rate_limited: bool,
) -> bool {
    let retry_policy = &slot.ctx.settings.retry;
    let delay = retry::backoff_delay(retry_policy, retry_index, &mut rand::rng());
    let reason = if rate_limited {
        "job met BigQuery's rate limit (not counted against retry.max_attempts)"
    } else {
        "job ended with a transient error"
    };
    slot.ctx.emitter.emit(Event::RetryScheduled {
        partition: Some(attempt.partition.id.clone()),
        operation: "partition".into(),
        attempt: attempt.number,
        reason: reason.into(),
        delay_seconds: delay.as_secs_f64(),
        next_at: Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default(),
    });
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = slot.ctx.cancel.cancelled() => false,
    }
}

/// How a submission went.
enum Submitted {
    /// The job to wait for: created now, or ours already (a retried insert
    /// whose first answer was lost, or a recorded job being resubmitted).
    Job(Box<JobInfo>),
    /// The ID belongs to a job this audit log does not know: it was waited
    /// out and recorded FAILED; take the next attempt number.
    Foreign,
    /// BigQuery refused the job outright: recorded FAILED, nothing written.
    Rejected,
    /// A signal came while waiting out a foreign job.
    Cancelled,
}

/// Record RUNNING, then insert the job (or attach to the one under its ID).
async fn submit(
    slot: &Slot<'_>,
    attempt: &Attempt<'_>,
    resubmit: bool,
) -> Result<Submitted, RunFailure> {
    let ctx = slot.ctx;
    slot.cp
        .record(&AuditRow {
            started_at: Some(Utc::now()),
            ..attempt.row(Status::Running)
        })
        .await?;
    let spec = slot.strategy.job(attempt.partition);
    let labels = strategy::job_labels(
        &ctx.settings.job_options.labels,
        &ctx.settings.job,
        &ctx.run_id,
        Some(attempt.partition),
    );
    let info = match ctx.bq.insert_job(&attempt.job_id, &spec, &labels).await {
        Ok(InsertOutcome::Created(info)) => info,
        Ok(InsertOutcome::Existing(info)) if slot.is_ours(&info) || resubmit => info,
        Ok(InsertOutcome::Existing(info)) => return foreign_id(slot, attempt, info).await,
        Err(e) if e.is_transient() || e.is_permission() => return Err(e.into()),
        Err(e) => return rejected(slot, attempt, &e).await,
    };
    ctx.emitter.emit(Event::PartitionStarted {
        partition: attempt.partition.id.clone(),
        destination: attempt.destination.clone(),
        bq_job_id: attempt.job_id.clone(),
        attempt: attempt.number,
        adopted: resubmit || !slot.is_ours(&info),
    });
    Ok(Submitted::Job(Box::new(info)))
}

/// The ID belongs to a job we have no record of (e.g. the audit table was
/// recreated): never adopt a stranger, but never write alongside it either.
async fn foreign_id(
    slot: &Slot<'_>,
    attempt: &Attempt<'_>,
    info: JobInfo,
) -> Result<Submitted, RunFailure> {
    if !wait_out(slot.ctx, info, false).await? {
        return Ok(Submitted::Cancelled);
    }
    tracing::warn!(job = %attempt.job_id, "job ID already used by an unrecorded job; taking the next attempt number");
    let row = attempt.row(Status::Failed).ended_with(
        "duplicate",
        "job ID already used by a job this audit log does not know",
    );
    slot.cp.record(&row).await?;
    Ok(Submitted::Foreign)
}

/// Rejected outright (e.g. an invalid configuration): this partition fails;
/// nothing was written.
async fn rejected(
    slot: &Slot<'_>,
    attempt: &Attempt<'_>,
    e: &BqError,
) -> Result<Submitted, RunFailure> {
    let failure = JobFailure {
        reason: e.reason().to_string(),
        message: e.to_string(),
    };
    record_failure(slot, attempt, &failure, false, false).await?;
    Ok(Submitted::Rejected)
}

/// Wait until `info`'s job is DONE (cancelling it first if `cancel_it`), so
/// that no new job writes the partition alongside it. `false` if a signal
/// came first: the caller stops; the audit log still names the job.
pub(super) async fn wait_out(
    ctx: &RunContext,
    info: JobInfo,
    cancel_it: bool,
) -> Result<bool, RunFailure> {
    if info.state == JobState::Done {
        return Ok(true);
    }
    tracing::info!(job = %info.job_id, "waiting for job {} to end before writing the partition", info.job_id);
    if cancel_it {
        ctx.bq.cancel_job(&info.job_id).await?;
    }
    tokio::select! {
        r = ctx.bq.wait_for(info) => r.map(|_| true).map_err(Into::into),
        _ = ctx.cancel.cancelled() => Ok(false),
    }
}

pub(crate) enum Settled {
    Done(PartitionResult),
    /// Another attempt may succeed: the job failed with a transient reason,
    /// or an adopted job turned out to be cancelled.
    NewAttempt,
    /// The job met BigQuery's rate limit: another attempt after a backoff,
    /// not counted against `retry.max_attempts`.
    RateLimited,
}

/// Whether the caller will start another attempt after a transient job
/// failure; the argument says whether the job met a rate limit (which is
/// bounded by time, not by `retry.max_attempts`).
pub(crate) type MayRetry<'a> = &'a (dyn Fn(bool) -> bool + Sync);

/// Wait for a job (cancellably), record and announce its outcome.
/// `may_retry`: whether the caller will start another attempt after a
/// transient failure (attempts and time budget left) — asked when the job
/// fails, so that `partition_failed.will_retry` tells the truth.
async fn settle(
    slot: &Slot<'_>,
    attempt: &Attempt<'_>,
    info: JobInfo,
    t0: Instant,
    may_retry: MayRetry<'_>,
    adopted: bool,
) -> Result<Settled, RunFailure> {
    // A DONE job from jobs.insert/get may lack rows_written (filled in by
    // wait_for); a failed one needs nothing more.
    let settled =
        info.error.is_some() || (info.state == JobState::Done && info.stats.rows_written.is_some());
    let done = if settled {
        info
    } else {
        tokio::select! {
            r = slot.ctx.bq.wait_for(info) => r?,
            _ = slot.ctx.cancel.cancelled() => {
                cancel_in_flight(slot, attempt).await;
                return Ok(Settled::Done(PartitionResult::Cancelled));
            }
        }
    };
    match &done.error {
        None => stage::finish(slot, attempt, &done, t0, may_retry).await,
        // An adopted job ends cancelled: the signalled run that recorded it
        // asked for that (its cancel took effect after it exited), or an
        // operator did. Nothing was written; this run writes the partition.
        Some(err) if adopted && err.reason == "stopped" => {
            record_cancelled_before_adoption(slot.cp, attempt).await?;
            Ok(Settled::NewAttempt)
        }
        Some(err) => {
            let runtime = t0.elapsed();
            let retryable = retry::is_transient_job_reason(&err.reason);
            let rate_limited = retry::is_rate_limit_reason(&err.reason);
            let will_retry =
                retryable && may_retry(rate_limited) && !slot.ctx.cancel.is_cancelled();
            record_failure(slot, attempt, err, retryable, will_retry).await?;
            Ok(match (retryable, rate_limited) {
                (true, true) => Settled::RateLimited,
                (true, false) => Settled::NewAttempt,
                (false, _) => Settled::Done(PartitionResult::Failed { runtime }),
            })
        }
    }
}

/// SUCCEEDED with the job's statistics (and the check results, as JSON),
/// then `partition_succeeded`.
pub(super) async fn record_success(
    slot: &Slot<'_>,
    attempt: &Attempt<'_>,
    done: &JobInfo,
    runtime: Duration,
    checks: Option<String>,
) -> Result<(), RunFailure> {
    let stats = &done.stats;
    slot.cp
        .record_with_next(&attempt.finished_row(Status::Succeeded, done, checks));
    tracing::info!(
        job = %attempt.job_id,
        "partition {} done: {} rows in {:.1?} (attempt {})",
        attempt.partition.id,
        stats.rows_written.map_or("?".to_string(), |n| n.to_string()),
        runtime,
        attempt.number
    );
    slot.ctx.emitter.emit(Event::PartitionSucceeded {
        partition: attempt.partition.id.clone(),
        bq_job_id: attempt.job_id.clone(),
        attempt: attempt.number,
        rows_written: stats.rows_written,
        bytes_processed: stats.bytes_processed,
        bytes_billed: stats.bytes_billed,
        duration_seconds: runtime.as_secs_f64(),
    });
    Ok(())
}

/// A job the audit log recorded RUNNING turned out cancelled (found DONE
/// `stopped`, or ending so while adopted): nothing was written, so record
/// CANCELLED; the caller runs a new attempt.
pub(super) async fn record_cancelled_before_adoption(
    cp: &Checkpoints,
    attempt: &Attempt<'_>,
) -> Result<(), RunFailure> {
    tracing::info!(job = %attempt.job_id, "the job recorded RUNNING was cancelled; running a new attempt");
    let row = attempt.row(Status::Cancelled).ended_with(
        "stopped",
        "the job was cancelled before this run adopted it",
    );
    Ok(cp.record(&row).await?)
}

/// FAILED with BigQuery's reason and message, then `partition_failed`.
pub(super) async fn record_failure(
    slot: &Slot<'_>,
    attempt: &Attempt<'_>,
    failure: &JobFailure,
    retryable: bool,
    will_retry: bool,
) -> Result<(), RunFailure> {
    let (reason, message) = (&failure.reason, &failure.message);
    let row = attempt.row(Status::Failed).ended_with(reason, message);
    slot.cp.record(&row).await?;
    tracing::warn!(job = %attempt.job_id, "partition {} failed ({reason}): {message}", attempt.partition.id);
    slot.ctx.emitter.emit(Event::PartitionFailed {
        partition: attempt.partition.id.clone(),
        bq_job_id: Some(attempt.job_id.clone()),
        attempt: attempt.number,
        reason: reason.clone(),
        message: message.clone(),
        retryable,
        will_retry,
    });
    Ok(())
}

/// Cancel the in-flight job, within a bounded time (the orchestrator's
/// SIGKILL follows SIGTERM within seconds), and record CANCELLED only once
/// BigQuery shows the job ended without success: a cancel is a request, and
/// a job that may still be writing must stay RUNNING in the audit log so
/// that the next run waits for it (or adopts it) instead of writing beside it.
async fn cancel_in_flight(slot: &Slot<'_>, attempt: &Attempt<'_>) {
    let (bq, job_id) = (&slot.ctx.bq, attempt.job_id.as_str());
    let until = tokio::time::Instant::now() + CANCEL_CONFIRM_BUDGET;
    match tokio::time::timeout_at(until, bq.cancel_job(job_id)).await {
        Ok(Ok(())) => tracing::info!(job = %job_id, "asked BigQuery to cancel the in-flight job"),
        Ok(Err(e)) => tracing::warn!(job = %job_id, "could not cancel the in-flight job: {e}"),
        Err(_) => tracing::warn!(job = %job_id, "cancelling the in-flight job timed out"),
    }
    let ended = tokio::time::timeout_at(until, async {
        loop {
            match bq.get_job(job_id).await {
                Ok(Some(info)) if info.state == JobState::Done => return Some(info),
                Ok(_) => {}
                Err(e) => tracing::debug!(job = %job_id, "checking the cancelled job: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .ok()
    .flatten();
    let confirmed = match ended.as_ref().map(|info| &info.error) {
        Some(Some(err)) => record_cancelled(slot.cp, attempt, err).await,
        Some(None) => {
            tracing::warn!(job = %job_id, "the job finished before the cancel took effect; the next run records it SUCCEEDED without rerunning it");
            false
        }
        None => {
            tracing::warn!(job = %job_id, "BigQuery has not confirmed the cancel yet; the partition stays RUNNING and the next run waits for the job");
            false
        }
    };
    slot.ctx.emitter.emit(Event::PartitionCancelled {
        partition: attempt.partition.id.clone(),
        bq_job_id: job_id.to_string(),
        confirmed,
    });
}

/// CANCELLED after a signal, within [`CLEANUP_STEP`]; `false` if it could
/// not be recorded (the next run then adopts the job).
async fn record_cancelled(cp: &Checkpoints, attempt: &Attempt<'_>, err: &JobFailure) -> bool {
    let row = attempt
        .row(Status::Cancelled)
        .ended_with(&err.reason, "cancelled by signal");
    match tokio::time::timeout(CLEANUP_STEP, cp.record(&row)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!("could not record CANCELLED: {e}; the next run adopts the job");
            false
        }
        Err(_) => {
            tracing::warn!("recording CANCELLED timed out; the next run adopts the job");
            false
        }
    }
}
