//! After a partition's job succeeded: verify, and in staged mode publish.
//!
//! `direct`: the job wrote `destination$P`; the checks run there and report
//! (SUCCEEDED, or VERIFY_FAILED with the data already written).
//!
//! `staged` (write-audit-publish): the job wrote `staging$P`; the checks run
//! there. A failed check records VERIFY_FAILED and publishes nothing, so the
//! destination's partition stays exactly as it was. Otherwise VERIFIED is
//! recorded, then the copy job `staging$P → destination$P` (WRITE_TRUNCATE,
//! atomic, free) is inserted under an ID derived from the stage job's:
//! - a crash before VERIFIED leaves RUNNING with the stage job: the next run
//!   adopts it and verifies;
//! - a crash after VERIFIED: the next run looks up the publish job ID
//!   ([`resume`]): DONE → SUCCEEDED; running → wait for it; absent →
//!   publish now (or stage again if the staging table is gone). The ID is
//!   deterministic, so a second insert meets 409 and attaches: a partition
//!   is never published twice, and never unverified.

use std::time::{Duration, Instant};

use chrono::Utc;

use crate::bq::{BigQuery, Destination, InsertOutcome, JobInfo, JobSpec, JobState};
use crate::engine::attempt::{
    self, Attempt, MayRetry, PartitionResult, Settled, Slot, record_failure, record_success,
    wait_out,
};
use crate::engine::checkpoint::{AuditRow, PartitionState, Status};
use crate::engine::failure::RunFailure;
use crate::engine::verify::{self, Current};
use crate::output::events::{CheckResult, Event};
use crate::planning::partition::Partition;
use crate::planning::strategy::{self, LABEL_RUN};
use crate::task::settings::{Expect, Settings, TableRef, WriteMode};

/// A staging table expires this long after the last run that used it.
pub const STAGING_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The publish copy job's ID: the stage job's, plus a suffix.
pub fn publish_job_id(stage_job_id: &str) -> String {
    format!("{stage_job_id}_publish")
}

/// Staged mode: create the staging table like the destination (schema,
/// partitioning, clustering) when missing, else push its expiration back;
/// a staging table partitioned differently from the destination is refused.
pub async fn ensure_staging(bq: &BigQuery, s: &Settings) -> Result<(), RunFailure> {
    let WriteMode::Staged { staging } = &s.write else {
        return Ok(());
    };
    let expires = Utc::now().timestamp_millis() + STAGING_TTL.as_millis() as i64;
    let Some(meta) = bq.get_table(staging).await? else {
        match bq.create_table_like(staging, &s.destination, expires).await {
            Err(e) if e.is_not_found() => {
                return Err(RunFailure::Config {
                    message: format!("cannot create the staging table {staging}: {e}"),
                    hint: Some(format!(
                        "create the dataset {}.{} (in the destination's location), or point write.staging_dataset at an existing one",
                        staging.project, staging.dataset
                    )),
                });
            }
            r => r?,
        };
        tracing::info!("created the staging table {staging}");
        return Ok(());
    };
    let dest = bq.get_table(&s.destination).await?;
    let same = |m: &crate::bq::TableMeta| {
        (
            m.time_partitioning.clone(),
            m.range_partitioning.clone(),
            m.schema.clone(),
        )
    };
    if dest.as_ref().map(same) != Some(same(&meta)) {
        return Err(RunFailure::Config {
            message: format!(
                "staging table {staging} does not have the schema and partitioning of {}",
                s.destination
            ),
            hint: Some(format!(
                "drop {staging} (bq-backfill creates it again like the destination) or choose another write.staging_dataset"
            )),
        });
    }
    bq.set_expiration(staging, expires).await?;
    Ok(())
}

/// Direct mode: the `within_percent_of_current` values before the write.
pub(crate) async fn baseline(
    slot: &Slot<'_>,
    p: &Partition,
) -> Result<Option<Current>, RunFailure> {
    let s = &slot.ctx.settings;
    if s.write != WriteMode::Direct || !has_current_checks(s) {
        return Ok(None);
    }
    Ok(Some(
        verify::current_values(&slot.ctx.bq, &s.verify, &s.destination, p).await?,
    ))
}

fn has_current_checks(s: &Settings) -> bool {
    s.verify
        .iter()
        .any(|c| matches!(c.expect, Expect::WithinPercentOfCurrent(_)))
}

/// The job succeeded: run the checks, then record SUCCEEDED (direct),
/// VERIFY_FAILED, or VERIFIED and publish (staged).
pub(crate) async fn finish(
    slot: &Slot<'_>,
    attempt: &Attempt<'_>,
    done: &JobInfo,
    t0: Instant,
    may_retry: MayRetry<'_>,
) -> Result<Settled, RunFailure> {
    let s = &slot.ctx.settings;
    let results = checks(slot, attempt).await?;
    let json = (!s.verify.is_empty()).then(|| serde_json::to_string(&results).unwrap_or_default());
    if let Some(message) = verify::failure_message(&results) {
        record_verify_failed(slot, attempt, done, &message, json).await?;
        return Ok(Settled::Done(PartitionResult::Failed {
            runtime: t0.elapsed(),
        }));
    }
    match &s.write {
        WriteMode::Direct => {
            let runtime = t0.elapsed();
            record_success(slot, attempt, done, runtime, json).await?;
            Ok(Settled::Done(PartitionResult::Succeeded { runtime }))
        }
        WriteMode::Staged { .. } => {
            record_stage(slot, attempt, done, Status::Verified, json).await?;
            publish(slot, attempt, t0, may_retry).await
        }
    }
}

/// Run the checks on the written table and announce the results.
async fn checks(slot: &Slot<'_>, attempt: &Attempt<'_>) -> Result<Vec<CheckResult>, RunFailure> {
    let (s, bq, p) = (&slot.ctx.settings, &slot.ctx.bq, attempt.partition);
    if s.verify.is_empty() {
        return Ok(Vec::new());
    }
    let current = match &s.write {
        // The destination is untouched until the publish.
        WriteMode::Staged { .. } if has_current_checks(s) => {
            Some(verify::current_values(bq, &s.verify, &s.destination, p).await?)
        }
        WriteMode::Staged { .. } => Some(Current::new()),
        WriteMode::Direct => attempt.current.clone(),
    };
    let target = s.write_target();
    let results = verify::run_checks(bq, &s.verify, target, current.as_ref(), p).await?;
    for r in &results {
        tracing::info!(
            "partition {} check {}: {} (observed {}, expected {})",
            p.id,
            r.name,
            if r.passed { "passed" } else { "FAILED" },
            r.observed,
            r.expected
        );
    }
    slot.ctx.emitter.emit(Event::PartitionVerified {
        partition: p.id.clone(),
        attempt: attempt.number,
        target: target.partition(&p.id).to_string(),
        passed: results.iter().all(|r| r.passed),
        checks: results.clone(),
    });
    Ok(results)
}

/// The stage job's row (VERIFIED or VERIFY_FAILED) with its statistics.
async fn record_stage(
    slot: &Slot<'_>,
    attempt: &Attempt<'_>,
    done: &JobInfo,
    status: Status,
    checks: Option<String>,
) -> Result<(), RunFailure> {
    slot.cp
        .record(&attempt.finished_row(status, done, checks))
        .await?;
    Ok(())
}

/// VERIFY_FAILED (reason `verify_failed`, the first failed check in the
/// message), then `partition_failed`.
async fn record_verify_failed(
    slot: &Slot<'_>,
    attempt: &Attempt<'_>,
    done: &JobInfo,
    message: &str,
    checks: Option<String>,
) -> Result<(), RunFailure> {
    let row = AuditRow {
        rows_written: done.stats.rows_written,
        checks,
        ..attempt
            .row(Status::VerifyFailed)
            .ended_with("verify_failed", message)
    };
    slot.cp.record(&row).await?;
    let kept = match slot.ctx.settings.write {
        WriteMode::Staged { .. } => "; the destination's partition was left as it was",
        WriteMode::Direct => "; the partition was already written (direct mode)",
    };
    tracing::warn!("partition {}: {message}{kept}", attempt.partition.id);
    slot.ctx.emitter.emit(Event::PartitionFailed {
        partition: attempt.partition.id.clone(),
        bq_job_id: Some(attempt.job_id.clone()),
        attempt: attempt.number,
        reason: "verify_failed".into(),
        message: message.to_string(),
        retryable: false,
        will_retry: false,
    });
    Ok(())
}

/// The copy job publishing `staging$P` into `destination$P`.
fn publish_spec(s: &Settings, staging: &TableRef, p: &Partition) -> JobSpec {
    JobSpec::Copy {
        source: staging.partition(&p.id),
        destination: Destination(s.destination.partition(&p.id)),
    }
}

/// Insert the publish job (or attach to it under its ID), wait, settle.
async fn publish(
    slot: &Slot<'_>,
    attempt: &Attempt<'_>,
    t0: Instant,
    may_retry: MayRetry<'_>,
) -> Result<Settled, RunFailure> {
    let (ctx, p) = (slot.ctx, attempt.partition);
    let WriteMode::Staged { staging } = &ctx.settings.write else {
        unreachable!("publish is only called in staged mode");
    };
    let publish = attempt.with_job(publish_job_id(&attempt.job_id));
    let labels = strategy::job_labels(
        &ctx.settings.job_options.labels,
        &ctx.settings.job,
        &ctx.run_id,
        Some(p),
    );
    let spec = publish_spec(&ctx.settings, staging, p);
    let (info, adopted) = match ctx.bq.insert_job(&publish.job_id, &spec, &labels).await {
        Ok(InsertOutcome::Created(info)) => (info, false),
        // Derived from our own stage job's ID: an earlier try of this call.
        Ok(InsertOutcome::Existing(info)) => (info, true),
        Err(e) if e.is_transient() || e.is_permission() => return Err(e.into()),
        Err(e) => {
            let failure = crate::bq::JobFailure {
                reason: e.reason().to_string(),
                message: e.to_string(),
            };
            record_failure(slot, &publish, &failure, false, false).await?;
            return Ok(Settled::Done(PartitionResult::Failed {
                runtime: t0.elapsed(),
            }));
        }
    };
    settle_publish(slot, &publish, info, adopted, t0, may_retry).await
}

/// Wait for the publish job (cancellably) and record its outcome.
async fn settle_publish(
    slot: &Slot<'_>,
    publish: &Attempt<'_>,
    info: JobInfo,
    adopted: bool,
    t0: Instant,
    may_retry: MayRetry<'_>,
) -> Result<Settled, RunFailure> {
    let ctx = slot.ctx;
    ctx.emitter.emit(Event::PartitionPublishing {
        partition: publish.partition.id.clone(),
        bq_job_id: publish.job_id.clone(),
        attempt: publish.number,
        adopted,
    });
    let done = tokio::select! {
        r = ctx.bq.wait_for(info) => r?,
        _ = ctx.cancel.cancelled() => {
            cancel_publish(slot, publish).await;
            return Ok(Settled::Done(PartitionResult::Cancelled));
        }
    };
    let runtime = t0.elapsed();
    match &done.error {
        None => {
            record_success(slot, publish, &done, runtime, None).await?;
            Ok(Settled::Done(PartitionResult::Succeeded { runtime }))
        }
        Some(err) => {
            // A failed copy wrote nothing; the next attempt stages again.
            let retryable =
                crate::bq::retry::is_transient_job_reason(&err.reason) || err.reason == "stopped";
            let will_retry = retryable && may_retry(false) && !ctx.cancel.is_cancelled();
            record_failure(slot, publish, err, retryable, will_retry).await?;
            Ok(if retryable {
                Settled::NewAttempt
            } else {
                Settled::Done(PartitionResult::Failed { runtime })
            })
        }
    }
}

/// After a signal: ask BigQuery to cancel the publish, within the cleanup
/// budget. Nothing is recorded: VERIFIED stays, and the next run finds the
/// publish job under its ID (DONE → SUCCEEDED, cancelled → stage again).
async fn cancel_publish(slot: &Slot<'_>, publish: &Attempt<'_>) {
    let bq = &slot.ctx.bq;
    match tokio::time::timeout(attempt::CLEANUP_STEP, bq.cancel_job(&publish.job_id)).await {
        Ok(Ok(())) => tracing::info!(job = %publish.job_id, "asked BigQuery to cancel the publish"),
        _ => tracing::warn!(job = %publish.job_id, "could not cancel the publish in time"),
    }
    slot.ctx.emitter.emit(Event::PartitionCancelled {
        partition: publish.partition.id.clone(),
        bq_job_id: publish.job_id.clone(),
        confirmed: false,
    });
}

/// The latest row is VERIFIED: find the publish job under its ID and carry
/// it through, or publish now. `None`: start a new attempt (older logic,
/// a stranger's job, a failed publish, or the staging table is gone).
pub(crate) async fn resume(
    slot: &Slot<'_>,
    p: &Partition,
    st: &PartitionState,
    t0: Instant,
) -> Result<Option<PartitionResult>, RunFailure> {
    let ctx = slot.ctx;
    // Whatever the settings are now, a publish in flight is waited out.
    let recorded = Attempt::recorded(slot, p, st);
    let publishing = recorded.with_job(publish_job_id(&recorded.job_id));
    let same_logic = st.fingerprint.as_deref() == Some(slot.fp);
    let may_retry = |_: bool| true;
    match ctx.bq.get_job(&publishing.job_id).await? {
        Some(info) if !same_logic || info.labels.get(LABEL_RUN) != Some(&st.run_id) => {
            // Let it end (never two writers); then stage anew.
            Ok((!wait_out(ctx, info, false).await?).then_some(PartitionResult::Cancelled))
        }
        Some(info) if info.state == JobState::Done && info.error.is_some() => Ok(None),
        Some(info) => {
            tracing::info!(job = %publishing.job_id, "adopting the publish recorded after VERIFIED");
            Ok(settled(
                settle_publish(slot, &publishing, info, true, t0, &may_retry).await?,
            ))
        }
        // A VERIFIED row with the current fingerprint means staged mode.
        None if !same_logic => Ok(None),
        None if !staging_exists(ctx).await? => {
            tracing::warn!(
                "the staging table is gone; staging partition {} again",
                p.id
            );
            Ok(None)
        }
        None => {
            tracing::info!(
                "partition {} was verified but not published; publishing",
                p.id
            );
            Ok(settled(publish(slot, &recorded, t0, &may_retry).await?))
        }
    }
}

async fn staging_exists(ctx: &crate::engine::runner::RunContext) -> Result<bool, RunFailure> {
    match &ctx.settings.write {
        WriteMode::Staged { staging } => Ok(ctx.bq.get_table(staging).await?.is_some()),
        WriteMode::Direct => Ok(false),
    }
}

fn settled(s: Settled) -> Option<PartitionResult> {
    match s {
        Settled::Done(r) => Some(r),
        Settled::NewAttempt | Settled::RateLimited => None,
    }
}
