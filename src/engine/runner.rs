//! The run loop: one partition at a time, each replaced by one BigQuery job,
//! each state change recorded in the audit table before it is acted on.
//!
//! Order of operations per partition, and why:
//! 1. Record RUNNING with the deterministic job ID *before* inserting the
//!    job, so a crash at any point leaves a row naming the job to adopt.
//! 2. Insert the job. A retried insert after an unknown outcome meets 409 and
//!    attaches to the job already there.
//! 3. Wait for DONE (cancellable), record SUCCEEDED or FAILED, emit events.
//! 4. Pause (throttle), so a backfill never starves live pipelines.
//!
//! On restart, a partition whose latest state is RUNNING is looked up with
//! jobs.get before anything is submitted: still running → wait; DONE without
//! error → record SUCCEEDED without running again; DONE with an error → next
//! attempt; never inserted → insert it now under the same ID.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::bq::retry;
use crate::bq::{BigQuery, InsertOutcome, JobInfo, JobState};
use crate::engine::cancel::Cancel;
use crate::engine::checkpoint::{AuditRow, Checkpoints, PartitionState, Status};
use crate::engine::failure::RunFailure;
use crate::engine::lease::Lease;
use crate::engine::preflight::preflight;
use crate::exit;
use crate::output::events::{Emitter, Event, RunError, RunStatus};
use crate::planning::decision::{Decision, decide};
use crate::planning::fingerprint;
use crate::planning::partition::{self, Partition};
use crate::planning::strategy::{self, LABEL_RUN, WriteStrategy};
use crate::task::settings::{OnFailure, Settings};

/// Everything one run needs from outside.
pub struct RunContext {
    pub settings: Settings,
    pub bq: BigQuery,
    pub emitter: Emitter,
    pub cancel: Cancel,
    pub run_id: String,
    pub force_unlock: bool,
    /// Partition whose work is in progress, read by the retry observer to
    /// label `retry_scheduled` events.
    pub current_partition: Arc<Mutex<Option<String>>>,
}

/// How a run ended, for `run_finished` and the exit code.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub status: RunStatus,
    pub exit_code: i32,
    pub total: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub skipped: usize,
    pub cancelled: usize,
    pub pending: usize,
    pub error: Option<RunError>,
}

impl RunOutcome {
    /// A run that ended before any partition, with `total` left pending.
    pub fn not_started(
        status: RunStatus,
        exit_code: i32,
        total: usize,
        error: RunError,
    ) -> RunOutcome {
        RunOutcome {
            status,
            exit_code,
            total,
            succeeded: 0,
            failed: 0,
            skipped: 0,
            cancelled: 0,
            pending: total,
            error: Some(error),
        }
    }

    /// The `run_finished` event for this outcome.
    pub fn finished_event(&self, duration: Duration) -> Event {
        Event::RunFinished {
            status: self.status,
            exit_code: self.exit_code,
            partitions_total: self.total,
            succeeded: self.succeeded,
            failed: self.failed,
            skipped: self.skipped,
            cancelled: self.cancelled,
            pending: self.pending,
            duration_seconds: duration.as_secs_f64(),
            error: self.error.clone(),
        }
    }
}

/// Per-run counters.
#[derive(Default)]
struct Tally {
    succeeded: usize,
    failed: usize,
    skipped: usize,
    cancelled: usize,
}

/// What happened to one partition.
enum PartitionResult {
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

/// Run the backfill. Never panics on BigQuery failures: every outcome is a
/// [`RunOutcome`] with its exit code; `run_finished` is left to the caller so
/// it can be the very last line.
pub async fn run(ctx: &RunContext) -> RunOutcome {
    let started = Instant::now();
    let plan = partition::plan(&ctx.settings.partitions);
    let total = plan.len();
    let mut tally = Tally::default();
    let result = tokio::select! {
        r = run_inner(ctx, &plan, started, &mut tally) => r,
        () = hard_stop(&ctx.cancel) => {
            tracing::warn!(
                "still busy {HARD_STOP:.1?} after the signal (a slow BigQuery call); stopping now: \
                 the audit log keeps any in-flight partition RUNNING for the next run, \
                 and the lease expires on its own"
            );
            Ok(())
        }
    };
    let done = tally.succeeded + tally.failed + tally.skipped + tally.cancelled;
    let pending = total.saturating_sub(done);
    let (status, exit_code, error) = match result {
        Err(f) => (f.run_status(), f.exit_code(), Some(f.to_run_error())),
        Ok(()) if ctx.cancel.is_cancelled() => (RunStatus::Cancelled, ctx.cancel.exit_code(), None),
        Ok(()) if tally.failed > 0 => (RunStatus::Failed, exit::PARTITIONS_FAILED, None),
        Ok(()) if pending > 0 => (RunStatus::Incomplete, exit::INCOMPLETE, None),
        Ok(()) => (RunStatus::Succeeded, exit::OK, None),
    };
    RunOutcome {
        status,
        exit_code,
        total,
        succeeded: tally.succeeded,
        failed: tally.failed,
        skipped: tally.skipped,
        cancelled: tally.cancelled,
        pending,
        error,
    }
}

/// After a signal: cancelling the job and confirming it (≤ 1.1 s), the
/// CANCELLED row (≤ 0.5 s) and the lease release (≤ 0.5 s) fit in 2.1 s.
const CANCEL_CONFIRM_BUDGET: Duration = Duration::from_millis(1100);
const CLEANUP_STEP: Duration = Duration::from_millis(500);
/// Whatever the run is doing when a signal arrives (a slow audit read, an
/// API call in its retry loop), it stops this long after the signal, so that
/// `run_finished` and the exit come before the orchestrator's SIGKILL.
const HARD_STOP: Duration = Duration::from_millis(2500);

/// Resolves [`HARD_STOP`] after the run is cancelled.
async fn hard_stop(cancel: &crate::engine::cancel::Cancel) {
    cancel.cancelled().await;
    tokio::time::sleep(HARD_STOP).await;
}

async fn run_inner(
    ctx: &RunContext,
    plan: &[Partition],
    started: Instant,
    tally: &mut Tally,
) -> Result<(), RunFailure> {
    let s = &ctx.settings;
    let clamped;
    let plan = match preflight(&ctx.bq, s).await? {
        Some(range) => {
            clamped = partition::clamp_to_table_end(plan, range.end);
            clamped.as_slice()
        }
        None => plan,
    };
    let cp = Arc::new(Checkpoints::new(
        ctx.bq.clone(),
        s.checkpoint_table.clone(),
        &s.job,
        &ctx.run_id,
    ));
    let incarnation = cp.ensure_table().await?;
    // Nothing to do (the common re-run): no lease, no job, one query.
    let fp = fingerprint::fingerprint(s);
    let states = cp.latest_states().await?;
    if plan
        .iter()
        .all(|p| matches!(decide(states.get(&p.id), &fp), Decision::Skip(_)))
    {
        announce(ctx, plan, &states, &fp, tally);
        return Ok(());
    }
    let lease = Lease::acquire(
        &ctx.bq,
        cp.clone(),
        &incarnation,
        s.lease.ttl,
        ctx.force_unlock,
    )
    .await?;
    // Re-read under the lease: another run may have progressed meanwhile.
    let result = match cp.latest_states().await {
        // A run that lost its lease stops at once, wherever it is (waiting
        // on a job included): the new holder owns the partitions now and
        // adopts the job in flight, so this run neither cancels it nor
        // records anything more.
        Ok(states) => tokio::select! {
            biased;
            () = lease.lost() => Err(lease.lost_error().into()),
            r = run_partitions(ctx, &cp, &lease, plan, &states, &fp, started, tally) => r,
        },
        Err(e) => Err(e.into()),
    };
    // After a signal the whole cleanup must fit in 3 s (see HARD_STOP); an
    // unreleased lease expires on its own.
    let release_within = if ctx.cancel.is_cancelled() {
        CLEANUP_STEP
    } else {
        Duration::from_secs(5)
    };
    lease.release(&cp, release_within).await;
    result
}

/// Emit `run_started` and the skips; returns each partition's decision.
fn announce(
    ctx: &RunContext,
    plan: &[Partition],
    states: &States,
    fp: &str,
    tally: &mut Tally,
) -> Vec<Decision> {
    let s = &ctx.settings;
    let decisions: Vec<Decision> = plan.iter().map(|p| decide(states.get(&p.id), fp)).collect();
    let to_skip = decisions
        .iter()
        .filter(|d| matches!(d, Decision::Skip(_)))
        .count();
    tracing::info!(
        "{} partitions: {} to run, {} already done (fingerprint {})",
        plan.len(),
        plan.len() - to_skip,
        to_skip,
        fingerprint::short(fp)
    );
    ctx.emitter.emit(Event::RunStarted {
        destination: s.destination.to_string(),
        fingerprint: fp.to_string(),
        partitions_total: plan.len(),
        partitions_to_run: plan.len() - to_skip,
        partitions_to_skip: to_skip,
        tool_version: env!("CARGO_PKG_VERSION").into(),
    });
    for (p, d) in plan.iter().zip(&decisions) {
        if let Decision::Skip(reason) = d {
            tally.skipped += 1;
            ctx.emitter.emit(Event::PartitionSkipped {
                partition: p.id.clone(),
                reason: *reason,
            });
        }
    }
    decisions
}

#[allow(clippy::too_many_arguments)]
async fn run_partitions(
    ctx: &RunContext,
    cp: &Checkpoints,
    lease: &Lease,
    plan: &[Partition],
    states: &States,
    fp: &str,
    started: Instant,
    tally: &mut Tally,
) -> Result<(), RunFailure> {
    let s = &ctx.settings;
    let decisions = announce(ctx, plan, states, fp, tally);
    let strategy = strategy::for_settings(s);
    let to_run: Vec<&Partition> = plan
        .iter()
        .zip(&decisions)
        .filter(|(_, d)| !matches!(d, Decision::Skip(_)))
        .map(|(p, _)| p)
        .collect();
    for (i, p) in to_run.iter().enumerate() {
        if ctx.cancel.is_cancelled() {
            break;
        }
        if budget_spent(s, started) {
            tracing::warn!("time budget spent: stopping before partition {}", p.id);
            break;
        }
        lease.check().await?;
        *ctx.current_partition
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(p.id.clone());
        let res = process_partition(
            ctx,
            cp,
            lease,
            strategy.as_ref(),
            p,
            states.get(&p.id),
            fp,
            started,
        )
        .await;
        *ctx.current_partition
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        let runtime = match res? {
            PartitionResult::Succeeded { runtime } => {
                tally.succeeded += 1;
                runtime
            }
            PartitionResult::Failed { runtime } => {
                tally.failed += 1;
                if s.on_failure == OnFailure::Stop {
                    tracing::error!("partition {} failed; stopping (on_failure = stop)", p.id);
                    break;
                }
                runtime
            }
            PartitionResult::Cancelled => {
                tally.cancelled += 1;
                break;
            }
            PartitionResult::Deferred => {
                tracing::warn!("time budget spent: partition {} not started", p.id);
                break;
            }
        };
        // The pause belongs between partitions, not after the last one.
        if i + 1 < to_run.len() {
            throttle(ctx, s, runtime, started).await;
        }
    }
    Ok(())
}

fn budget_spent(s: &Settings, started: Instant) -> bool {
    s.max_runtime.is_some_and(|max| started.elapsed() >= max)
}

/// Pause after a partition; cut short by cancellation or the time budget.
async fn throttle(ctx: &RunContext, s: &Settings, runtime: Duration, started: Instant) {
    let mut pause = s.throttle.pause_after(runtime);
    if let Some(max) = s.max_runtime {
        pause = pause.min(max.saturating_sub(started.elapsed()));
    }
    if pause.is_zero() || ctx.cancel.is_cancelled() {
        return;
    }
    ctx.emitter.emit(Event::Throttled {
        seconds: pause.as_secs_f64(),
    });
    tokio::select! {
        _ = tokio::time::sleep(pause) => {}
        _ = ctx.cancel.cancelled() => {}
    }
}

fn labels(ctx: &RunContext, p: &Partition) -> BTreeMap<String, String> {
    strategy::job_labels(
        &ctx.settings.job_options.labels,
        &ctx.settings.job,
        &ctx.run_id,
        Some(p),
    )
}

/// How many times a job ID may turn out to belong to someone else (an older
/// job from a dropped audit table) before we give up.
const MAX_FOREIGN_IDS: u32 = 20;

#[allow(clippy::too_many_arguments)]
async fn process_partition(
    ctx: &RunContext,
    cp: &Checkpoints,
    lease: &Lease,
    strategy: &dyn WriteStrategy,
    p: &Partition,
    state: Option<&PartitionState>,
    fp: &str,
    started: Instant,
) -> Result<PartitionResult, RunFailure> {
    let s = &ctx.settings;
    let destination = strategy::decorated_name(&s.destination, p);
    let t0 = Instant::now();
    let mut attempt = state.map_or(0, |st| st.max_attempt.max(st.attempt)) + 1;
    // A job of ours recorded RUNNING and not yet settled: the ID to reuse.
    let mut known_job: Option<String> = None;

    // The latest row names a job that may still be writing this partition:
    // find out what became of it before anything new is submitted.
    if let Some(st) = state.filter(|st| matches!(st.status, Status::Running | Status::Cancelled))
        && let Some(jid) = st.bq_job_id.clone()
    {
        let same_logic = st.fingerprint.as_deref() == Some(fp);
        match ctx.bq.get_job(&jid).await? {
            // Only the job created by the run that wrote the row is the one
            // it describes. A job under the same ID from another run (the
            // audit table was recreated since) says nothing about this
            // partition's contents now: never adopt it, but let it finish
            // before writing, and take a new attempt number.
            Some(info) if info.labels.get(LABEL_RUN) != Some(&st.run_id) => {
                tracing::warn!(job = %jid, "the job recorded for partition {} was created by another run; not adopting it", p.id);
                if !wait_out(ctx, info, false).await? {
                    return Ok(PartitionResult::Cancelled);
                }
            }
            // Recorded CANCELLED, but a cancel is only a request: make sure
            // it is over before a new attempt writes the same partition.
            Some(info) if st.status == Status::Cancelled => {
                let ended = wait_out(ctx, info, true).await?;
                if !ended {
                    return Ok(PartitionResult::Cancelled);
                }
            }
            Some(info)
                if same_logic && info.error.as_ref().is_some_and(|e| e.reason == "stopped") =>
            {
                // Cancelled after it was recorded RUNNING — by a signalled
                // run that could not confirm it, or by an operator.
                // Nothing was written: record the truth, run a new attempt.
                record_cancelled_before_adoption(cp, p, &jid, st.attempt, fp, &destination).await?;
            }
            Some(info) if same_logic => {
                ctx.emitter.emit(Event::PartitionStarted {
                    partition: p.id.clone(),
                    destination: destination.clone(),
                    bq_job_id: jid.clone(),
                    attempt: st.attempt,
                    adopted: true,
                });
                tracing::info!(job = %jid, "adopting job recorded RUNNING by run {}", st.run_id);
                // Whatever the adopted job did, this run still has its attempts.
                let may_retry = || !budget_spent(s, started);
                match settle(
                    ctx,
                    cp,
                    p,
                    &jid,
                    st.attempt,
                    fp,
                    &destination,
                    info,
                    t0,
                    &may_retry,
                    true,
                )
                .await?
                {
                    Settled::Done(r) => return Ok(r),
                    Settled::NewAttempt => {}
                }
            }
            // Older logic may still be writing this partition: stop it
            // before writing with the new logic. A job already DONE is left
            // as its rows describe it.
            Some(info) if info.state != JobState::Done => {
                tracing::warn!(job = %jid, "cancelling a job running with an older fingerprint");
                let ended = wait_out(ctx, info, true).await?;
                if !ended {
                    return Ok(PartitionResult::Cancelled);
                }
                let old_fp = st.fingerprint.as_deref().unwrap_or_default();
                let row = AuditRow::partition(
                    &p.id,
                    Status::Cancelled,
                    st.attempt,
                    &jid,
                    old_fp,
                    &destination,
                )
                .ended_with("stale", "superseded by a run with a different fingerprint");
                cp.record(&row).await?;
            }
            Some(_) => {}
            None if same_logic && st.status == Status::Running => {
                // Recorded but never inserted (killed in between): insert
                // it now under the same ID and attempt.
                attempt = st.attempt;
                known_job = Some(jid);
            }
            None => {}
        }
    }

    let mut attempts_this_run = 0u32;
    let mut foreign = 0u32;
    loop {
        if ctx.cancel.is_cancelled() {
            return Ok(PartitionResult::Cancelled);
        }
        // Waiting out an earlier job may have taken long: no new job after
        // the budget, and none without the lease.
        if budget_spent(s, started) {
            return Ok(PartitionResult::Deferred);
        }
        lease.check().await?;
        attempts_this_run += 1;
        let job_id = fingerprint::job_id(&s.job, &p.id, fp, attempt);
        let adopting = known_job.as_deref() == Some(job_id.as_str());
        cp.record(&AuditRow {
            started_at: Some(Utc::now()),
            ..AuditRow::partition(&p.id, Status::Running, attempt, &job_id, fp, &destination)
        })
        .await?;
        let config = strategy.job_configuration(p);
        let inserted = ctx.bq.insert_job(&job_id, config, &labels(ctx, p)).await;
        let info = match inserted {
            Ok(InsertOutcome::Created(info)) => info,
            Ok(InsertOutcome::Existing(info)) => {
                let ours =
                    info.labels.get(LABEL_RUN).map(String::as_str) == Some(ctx.run_id.as_str());
                if ours || adopting {
                    info
                } else {
                    // The ID belongs to a job we have no record of (e.g. the
                    // audit table was recreated): never adopt a stranger,
                    // but never write alongside it either.
                    if !wait_out(ctx, info, false).await? {
                        return Ok(PartitionResult::Cancelled);
                    }
                    foreign += 1;
                    tracing::warn!(job = %job_id, "job ID already used by an unrecorded job; taking the next attempt number");
                    let row = AuditRow::partition(
                        &p.id,
                        Status::Failed,
                        attempt,
                        &job_id,
                        fp,
                        &destination,
                    )
                    .ended_with(
                        "duplicate",
                        "job ID already used by a job this audit log does not know",
                    );
                    cp.record(&row).await?;
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
                    attempt += 1;
                    attempts_this_run -= 1;
                    continue;
                }
            }
            Err(e) if e.is_transient() || e.is_permission() => return Err(e.into()),
            Err(e) => {
                // Rejected outright (e.g. invalid configuration): this
                // partition fails; nothing was written.
                record_failure(
                    ctx,
                    cp,
                    p,
                    &job_id,
                    attempt,
                    fp,
                    &destination,
                    e.reason(),
                    &e.to_string(),
                    false,
                    false,
                )
                .await?;
                return Ok(PartitionResult::Failed {
                    runtime: t0.elapsed(),
                });
            }
        };
        ctx.emitter.emit(Event::PartitionStarted {
            partition: p.id.clone(),
            destination: destination.clone(),
            bq_job_id: job_id.clone(),
            attempt,
            adopted: adopting
                || info.labels.get(LABEL_RUN).map(String::as_str) != Some(ctx.run_id.as_str()),
        });
        let may_retry = || attempts_this_run < s.retry.max_attempts && !budget_spent(s, started);
        match settle(
            ctx,
            cp,
            p,
            &job_id,
            attempt,
            fp,
            &destination,
            info,
            t0,
            &may_retry,
            false,
        )
        .await?
        {
            Settled::Done(r) => return Ok(r),
            Settled::NewAttempt => {}
        }
        if !may_retry() {
            return Ok(PartitionResult::Failed {
                runtime: t0.elapsed(),
            });
        }
        let delay = retry::backoff_delay(&s.retry, attempts_this_run - 1, &mut rand::rng());
        ctx.emitter.emit(Event::RetryScheduled {
            partition: Some(p.id.clone()),
            operation: "partition".into(),
            attempt,
            reason: "job ended with a transient error".into(),
            delay_seconds: delay.as_secs_f64(),
            next_at: Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default(),
        });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = ctx.cancel.cancelled() => return Ok(PartitionResult::Cancelled),
        }
        attempt += 1;
        known_job = None;
    }
}

/// Wait until `info`'s job is DONE (cancelling it first if `cancel_it`), so
/// that no new job writes the partition alongside it. `false` if a signal
/// came first: the caller stops; the audit log still names the job.
async fn wait_out(ctx: &RunContext, info: JobInfo, cancel_it: bool) -> Result<bool, RunFailure> {
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

enum Settled {
    Done(PartitionResult),
    /// Another attempt may succeed: the job failed with a transient reason,
    /// or an adopted job turned out to be cancelled.
    NewAttempt,
}

/// Wait for a job (cancellably), record and announce its outcome.
/// `may_retry`: whether the caller will start another attempt after a
/// transient failure (attempts and time budget left) — asked when the job
/// fails, so that `partition_failed.will_retry` tells the truth.
#[allow(clippy::too_many_arguments)]
async fn settle(
    ctx: &RunContext,
    cp: &Checkpoints,
    p: &Partition,
    job_id: &str,
    attempt: u32,
    fp: &str,
    destination: &str,
    info: JobInfo,
    t0: Instant,
    may_retry: &(dyn Fn() -> bool + Sync),
    adopted: bool,
) -> Result<Settled, RunFailure> {
    // A DONE job from jobs.insert/get may lack rows_written (filled in by
    // wait_for_job); a failed one needs nothing more.
    let settled =
        info.error.is_some() || (info.state == JobState::Done && info.stats.rows_written.is_some());
    let done = if settled {
        info
    } else {
        tokio::select! {
            r = ctx.bq.wait_for(info) => r?,
            _ = ctx.cancel.cancelled() => {
                cancel_in_flight(ctx, cp, p, job_id, attempt, fp, destination).await;
                return Ok(Settled::Done(PartitionResult::Cancelled));
            }
        }
    };
    let runtime = t0.elapsed();
    match &done.error {
        None => {
            cp.record(&AuditRow {
                started_at: done.stats.start_time,
                finished_at: done.stats.end_time.or_else(|| Some(Utc::now())),
                rows_written: done.stats.rows_written,
                bytes_processed: done.stats.bytes_processed,
                bytes_billed: done.stats.bytes_billed,
                ..AuditRow::partition(&p.id, Status::Succeeded, attempt, job_id, fp, destination)
            })
            .await?;
            tracing::info!(
                job = %job_id,
                "partition {} done: {} rows in {:.1?} (attempt {attempt})",
                p.id,
                done.stats.rows_written.map_or("?".to_string(), |n| n.to_string()),
                runtime
            );
            ctx.emitter.emit(Event::PartitionSucceeded {
                partition: p.id.clone(),
                bq_job_id: job_id.to_string(),
                attempt,
                rows_written: done.stats.rows_written,
                bytes_processed: done.stats.bytes_processed,
                bytes_billed: done.stats.bytes_billed,
                duration_seconds: runtime.as_secs_f64(),
            });
            Ok(Settled::Done(PartitionResult::Succeeded { runtime }))
        }
        // An adopted job ends cancelled: the signalled run that recorded it
        // asked for that (its cancel took effect after it exited), or an
        // operator did. Nothing was written; this run writes the partition.
        Some(err) if adopted && err.reason == "stopped" => {
            record_cancelled_before_adoption(cp, p, job_id, attempt, fp, destination).await?;
            Ok(Settled::NewAttempt)
        }
        Some(err) => {
            let retryable = retry::is_transient_job_reason(&err.reason);
            let will_retry = retryable && may_retry() && !ctx.cancel.is_cancelled();
            record_failure(
                ctx,
                cp,
                p,
                job_id,
                attempt,
                fp,
                destination,
                &err.reason,
                &err.message,
                retryable,
                will_retry,
            )
            .await?;
            if retryable {
                Ok(Settled::NewAttempt)
            } else {
                Ok(Settled::Done(PartitionResult::Failed { runtime }))
            }
        }
    }
}

/// A job the audit log recorded RUNNING turned out cancelled (found DONE
/// `stopped`, or ending so while adopted): nothing was written, so record
/// CANCELLED; the caller runs a new attempt.
async fn record_cancelled_before_adoption(
    cp: &Checkpoints,
    p: &Partition,
    job_id: &str,
    attempt: u32,
    fp: &str,
    destination: &str,
) -> Result<(), RunFailure> {
    tracing::info!(job = %job_id, "the job recorded RUNNING was cancelled; running a new attempt");
    let row = AuditRow::partition(&p.id, Status::Cancelled, attempt, job_id, fp, destination)
        .ended_with(
            "stopped",
            "the job was cancelled before this run adopted it",
        );
    Ok(cp.record(&row).await?)
}

#[allow(clippy::too_many_arguments)]
async fn record_failure(
    ctx: &RunContext,
    cp: &Checkpoints,
    p: &Partition,
    job_id: &str,
    attempt: u32,
    fp: &str,
    destination: &str,
    reason: &str,
    message: &str,
    retryable: bool,
    will_retry: bool,
) -> Result<(), RunFailure> {
    let row = AuditRow::partition(&p.id, Status::Failed, attempt, job_id, fp, destination)
        .ended_with(reason, message);
    cp.record(&row).await?;
    tracing::warn!(job = %job_id, "partition {} failed ({reason}): {message}", p.id);
    ctx.emitter.emit(Event::PartitionFailed {
        partition: p.id.clone(),
        bq_job_id: Some(job_id.to_string()),
        attempt,
        reason: reason.to_string(),
        message: message.to_string(),
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
async fn cancel_in_flight(
    ctx: &RunContext,
    cp: &Checkpoints,
    p: &Partition,
    job_id: &str,
    attempt: u32,
    fp: &str,
    destination: &str,
) {
    let until = tokio::time::Instant::now() + CANCEL_CONFIRM_BUDGET;
    match tokio::time::timeout_at(until, ctx.bq.cancel_job(job_id)).await {
        Ok(Ok(())) => tracing::info!(job = %job_id, "asked BigQuery to cancel the in-flight job"),
        Ok(Err(e)) => tracing::warn!(job = %job_id, "could not cancel the in-flight job: {e}"),
        Err(_) => tracing::warn!(job = %job_id, "cancelling the in-flight job timed out"),
    }
    let ended = tokio::time::timeout_at(until, async {
        loop {
            match ctx.bq.get_job(job_id).await {
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
    let confirmed = match &ended {
        Some(info) => match &info.error {
            Some(err) => {
                let row =
                    AuditRow::partition(&p.id, Status::Cancelled, attempt, job_id, fp, destination)
                        .ended_with(&err.reason, "cancelled by signal");
                match tokio::time::timeout(CLEANUP_STEP, cp.record(&row)).await {
                    Ok(Ok(())) => true,
                    Ok(Err(e)) => {
                        tracing::warn!(
                            "could not record CANCELLED: {e}; the next run adopts the job"
                        );
                        false
                    }
                    Err(_) => {
                        tracing::warn!(
                            "recording CANCELLED timed out; the next run adopts the job"
                        );
                        false
                    }
                }
            }
            None => {
                tracing::warn!(job = %job_id, "the job finished before the cancel took effect; the next run records it SUCCEEDED without rerunning it");
                false
            }
        },
        None => {
            tracing::warn!(job = %job_id, "BigQuery has not confirmed the cancel yet; the partition stays RUNNING and the next run waits for the job");
            false
        }
    };
    ctx.emitter.emit(Event::PartitionCancelled {
        partition: p.id.clone(),
        bq_job_id: job_id.to_string(),
        confirmed,
    });
}

/// States by partition, for `plan` and `status`.
pub type States = HashMap<String, PartitionState>;
