//! The run loop: the plan in order, one partition at a time or in a few
//! slots (`engine::slots`; each partition's steps are `engine::attempt`),
//! a pause between partitions so a backfill never starves live pipelines, a
//! time budget, the run lease, and the outcome that `run_finished` and the
//! exit code report.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::bq::BigQuery;
use crate::engine::attempt::{self, Slot};
use crate::engine::cancel::Cancel;
use crate::engine::checkpoint::{Checkpoints, PartitionState};
use crate::engine::failure::RunFailure;
use crate::engine::lease::{Lease, LeaseError, LeaseLog};
use crate::engine::preflight::preflight;
use crate::engine::stage;
use crate::exit;
use crate::output::events::{Emitter, Event, RunError, RunStatus};
use crate::planning::decision::{Decision, decide};
use crate::planning::fingerprint;
use crate::planning::partition::{self, Partition};
use crate::planning::strategy;
use crate::task::settings::Settings;

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
pub(crate) struct Tally {
    pub succeeded: usize,
    pub failed: usize,
    pub skipped: usize,
    pub cancelled: usize,
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
    let cp = Checkpoints::new(
        ctx.bq.clone(),
        s.checkpoint_table.clone(),
        &s.job,
        &ctx.run_id,
    )
    .with_reason(s.rerun.clone());
    cp.ensure_table().await?;
    // Nothing to do (the common re-run): no lease, no job, one query.
    let fp = fingerprint::fingerprint(s);
    let states = cp.latest_states().await?;
    if plan.iter().all(|p| {
        matches!(
            decide(states.get(&p.id), &fp, s.rerun.as_deref()),
            Decision::Skip(_)
        )
    }) {
        announce(ctx, plan, &states, &fp, tally);
        return Ok(());
    }
    let leases = LeaseLog::new(ctx.bq.clone(), &s.checkpoint_table, &s.job, &ctx.run_id);
    let lease = Lease::acquire(Arc::new(leases), s.lease.ttl, ctx.force_unlock).await?;
    // Re-read under the lease: another run may have progressed meanwhile.
    let result = match cp.latest_states().await {
        // A run that lost its lease stops at once, wherever it is (waiting
        // on a job included): the new holder owns the partitions now and
        // adopts the job in flight, so this run neither cancels it nor
        // records anything more.
        Ok(states) => match stage::ensure_staging(&ctx.bq, s).await {
            Err(e) => Err(e),
            Ok(()) => {
                let strategy = strategy::for_settings(s);
                let slot = Slot {
                    ctx,
                    cp: &cp,
                    lease: &lease,
                    strategy: strategy.as_ref(),
                    fp: &fp,
                    started,
                };
                tokio::select! {
                    biased;
                    () = lease.lost() => Err(lease.lost_error().into()),
                    r = run_partitions(&slot, plan, &states, tally) => r,
                }
            }
        },
        Err(e) => Err(e.into()),
    };
    // After a signal the whole cleanup must fit in 3 s (see HARD_STOP); an
    // unreleased lease expires on its own.
    let step = if ctx.cancel.is_cancelled() {
        attempt::CLEANUP_STEP
    } else {
        Duration::from_secs(5)
    };
    // The last SUCCEEDED rows, unless the lease was lost: then this run
    // records nothing more (the new holder finds those jobs DONE).
    let lost = matches!(&result, Err(RunFailure::Lease(LeaseError::Lost { .. })));
    let flushed = if lost {
        Ok(())
    } else {
        tokio::time::timeout(step, cp.flush())
            .await
            .unwrap_or(Ok(()))
            .map_err(RunFailure::from)
    };
    lease.release(step).await;
    result.and(flushed)
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
    let rerun = s.rerun.as_deref();
    let decisions: Vec<Decision> = plan
        .iter()
        .map(|p| decide(states.get(&p.id), fp, rerun))
        .collect();
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
        rerun_reason: s.rerun.clone(),
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

async fn run_partitions(
    slot: &Slot<'_>,
    plan: &[Partition],
    states: &States,
    tally: &mut Tally,
) -> Result<(), RunFailure> {
    let decisions = announce(slot.ctx, plan, states, slot.fp, tally);
    let to_run: Vec<&Partition> = plan
        .iter()
        .zip(&decisions)
        .filter(|(_, d)| !matches!(d, Decision::Skip(_)))
        .map(|(p, _)| p)
        .collect();
    crate::engine::slots::run_slots(slot, &to_run, states, tally).await
}

pub(crate) fn budget_spent(s: &Settings, started: Instant) -> bool {
    s.max_runtime.is_some_and(|max| started.elapsed() >= max)
}

/// Pause after a partition; cut short by cancellation or the time budget.
pub(crate) async fn throttle(ctx: &RunContext, s: &Settings, runtime: Duration, started: Instant) {
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

/// States by partition, for `plan` and `status`.
pub type States = HashMap<String, PartitionState>;
