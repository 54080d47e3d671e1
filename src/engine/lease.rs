//! The run lease: keeps two runners off one backfill job.
//!
//! An orchestrator retry overlapping a zombie, or two people starting the same
//! job, must never write one partition concurrently. Lease rows live in their
//! own append-only table beside the audit table, `<audit table>_lease`
//! (status HELD / RELEASED, a generation number and an expiry renewed by a
//! heartbeat), so that every audit row is one partition's state change.
//!
//! Appending rows is not a compare-and-set, so claiming generation N+1 is
//! made atomic by BigQuery itself: the claimant inserts a trivial query job
//! whose ID is derived from (job, audit-table incarnation, N+1). Job IDs are
//! unique per project, so exactly one claimant's insert is created; the
//! other meets 409 `duplicate` and refuses to run.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bq::{BigQuery, InsertOutcome, JobSpec, NewTable, QueryJob, QueryParam};
use crate::engine::append::{AppendLog, log_table_spec, ts};
use crate::engine::checkpoint::{CheckpointError, parse_timestamp_cell, table_path};
use crate::planning::strategy::{LABEL_RUN, job_labels};
use crate::task::settings::TableRef;

/// Version of the lease record format written by this build.
pub const LEASE_RECORD_VERSION: i64 = 1;

/// The lease table's columns, in order: (name, type, mode).
pub const LEASE_COLUMNS: &[(&str, &str, &str)] = &[
    ("record_version", "INT64", "REQUIRED"),
    ("job", "STRING", "REQUIRED"),
    ("run_id", "STRING", "REQUIRED"),
    ("status", "STRING", "REQUIRED"),
    ("generation", "INT64", "REQUIRED"),
    ("expires_at", "TIMESTAMP", "REQUIRED"),
    ("tool_version", "STRING", "NULLABLE"),
    ("recorded_at", "TIMESTAMP", "REQUIRED"),
];

/// The lease table beside the audit table: `<audit table>_lease`.
pub fn lease_table(audit: &TableRef) -> TableRef {
    TableRef {
        table: format!("{}_lease", audit.table),
        ..audit.clone()
    }
}

/// The definition used when the lease table is missing.
fn lease_table_spec() -> NewTable {
    log_table_spec(
        LEASE_COLUMNS,
        &["job"],
        format!(
            "bq-backfill run leases (record_version {LEASE_RECORD_VERSION}): who may write a backfill job's partitions"
        ),
    )
}

/// A lease row's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseStatus {
    /// The run holds (or renewed) the lease.
    Held,
    /// The run gave the lease up.
    Released,
}

impl LeaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseStatus::Held => "HELD",
            LeaseStatus::Released => "RELEASED",
        }
    }
}

/// The lease rows of one backfill job, as seen by one run.
pub struct LeaseLog {
    log: AppendLog,
    job: String,
}

impl LeaseLog {
    pub fn new(bq: BigQuery, audit: &TableRef, job: &str, run_id: &str) -> Self {
        LeaseLog {
            log: AppendLog::new(bq, lease_table(audit), run_id, LEASE_COLUMNS),
            job: job.to_string(),
        }
    }

    /// Create the lease table if missing; returns its incarnation (creation
    /// time), so claim IDs of an earlier incarnation never collide.
    pub async fn ensure(&self) -> Result<String, CheckpointError> {
        self.log.ensure(&lease_table_spec()).await
    }

    fn job(&self) -> &str {
        &self.job
    }

    fn run_id(&self) -> &str {
        self.log.run_id()
    }

    fn table(&self) -> &TableRef {
        self.log.table()
    }

    async fn record(
        &self,
        status: LeaseStatus,
        generation: i64,
        expires_at: DateTime<Utc>,
    ) -> Result<(), CheckpointError> {
        let mut row = serde_json::Map::new();
        row.insert("record_version".into(), LEASE_RECORD_VERSION.into());
        row.insert("job".into(), self.job.clone().into());
        row.insert("run_id".into(), self.run_id().into());
        row.insert("status".into(), status.as_str().into());
        row.insert("generation".into(), generation.into());
        row.insert("expires_at".into(), ts(expires_at).into());
        row.insert("tool_version".into(), env!("CARGO_PKG_VERSION").into());
        self.log.append(row).await
    }
}

/// Why the lease could not be taken or kept.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("another run ({holder}) holds the lease of job {job} until {expires_at}")]
    Held {
        job: String,
        holder: String,
        expires_at: String,
    },
    #[error("{by} took over the lease of job {job} (generation {generation}); this run stopped")]
    Lost {
        job: String,
        generation: i64,
        /// Who took it over, as far as this run could tell.
        by: String,
    },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// The latest lease row of a job.
#[derive(Debug, Clone)]
pub struct LeaseRow {
    pub run_id: String,
    pub status: LeaseStatus,
    pub generation: i64,
    pub expires_at: Option<DateTime<Utc>>,
}

impl LeaseRow {
    /// Held by someone, and not expired at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.status == LeaseStatus::Held && self.expires_at.is_some_and(|e| e > now)
    }
}

/// Read the job's latest lease row (highest generation, then latest row).
pub async fn current(cp: &LeaseLog) -> Result<Option<LeaseRow>, CheckpointError> {
    let sql = format!(
        "SELECT run_id, status, generation, expires_at FROM {} \
         WHERE job = @job \
         ORDER BY generation DESC, recorded_at DESC LIMIT 1",
        table_path(cp.table())
    );
    let res = cp
        .log
        .query(&sql, &[QueryParam::string("job", cp.job())])
        .await?;
    let Some(row) = res.rows.first() else {
        return Ok(None);
    };
    let get = |name: &str| {
        res.fields
            .iter()
            .position(|f| f == name)
            .and_then(|i| row.get(i).cloned().flatten())
    };
    Ok(Some(LeaseRow {
        run_id: get("run_id").unwrap_or_default(),
        status: match get("status").as_deref() {
            Some("HELD") => LeaseStatus::Held,
            _ => LeaseStatus::Released,
        },
        generation: get("generation").and_then(|g| g.parse().ok()).unwrap_or(0),
        expires_at: get("expires_at").as_deref().and_then(parse_timestamp_cell),
    }))
}

/// A held lease, renewed in the background until released.
pub struct Lease {
    log: Arc<LeaseLog>,
    generation: i64,
    job: String,
    state: Arc<LeaseState>,
    heartbeat: Option<JoinHandle<()>>,
}

struct LeaseState {
    expires_at: Mutex<DateTime<Utc>>,
    /// Fired by the heartbeat once the lease is no longer ours.
    lost: CancellationToken,
    /// Who holds it now, for the error message.
    taken_by: std::sync::Mutex<String>,
}

impl LeaseState {
    fn mark_lost(&self, by: &str) {
        *self.taken_by.lock().unwrap_or_else(|e| e.into_inner()) = by.to_string();
        self.lost.cancel();
    }
}

/// How many consecutive generations claimed by dead runs (claim job created,
/// LEASE_HELD row never written) one acquisition skips before giving up.
const MAX_ABANDONED_CLAIMS: i64 = 50;

/// Deterministic ID of the claim job for one lease generation.
pub fn claim_job_id(job: &str, incarnation: &str, generation: i64) -> String {
    format!("bqb_{job}_lease_{incarnation}_g{generation}")
}

impl Lease {
    /// Take the lease, or fail with [`LeaseError::Held`]. With `force`, take
    /// it over even from a live holder (the operator knows it is dead).
    pub async fn acquire(
        cp: Arc<LeaseLog>,
        ttl: Duration,
        force: bool,
    ) -> Result<Lease, LeaseError> {
        let incarnation = cp.ensure().await?;
        let bq = cp.log.bq().clone();
        let now = Utc::now();
        let latest = current(&cp).await?;
        if let Some(row) = &latest {
            if row.is_live(now) && !force {
                return Err(LeaseError::Held {
                    job: cp.job().into(),
                    holder: row.run_id.clone(),
                    expires_at: row.expires_at.map(|e| e.to_rfc3339()).unwrap_or_default(),
                });
            }
            if force && row.is_live(now) {
                tracing::warn!(holder = %row.run_id, "--force-unlock: taking over a live lease");
            }
        }
        let first = latest.as_ref().map_or(0, |r| r.generation) + 1;
        let mut generation = first;
        let config = JobSpec::Query(QueryJob::plain("SELECT 1"));
        let labels = job_labels(&Default::default(), cp.job(), cp.run_id(), None);
        let job = cp.job().to_string();
        // Taken before each claim: our lease counts from no later than the
        // claim job's creation, as a rival judges it (see below).
        let mut claimed_at;
        loop {
            claimed_at = Utc::now();
            let claim = claim_job_id(cp.job(), &incarnation, generation);
            let outcome = bq.insert_job(&claim, &config, &labels).await.map_err(|e| {
                CheckpointError::Api {
                    table: cp.table().to_string(),
                    source: e,
                }
            })?;
            let InsertOutcome::Existing(info) = outcome else {
                break;
            };
            let holder = info.labels.get(LABEL_RUN).cloned().unwrap_or_default();
            if holder == cp.run_id() {
                break; // our own claim, whose first answer was lost
            }
            // Another run claimed this generation, but its LEASE_HELD row is
            // not in the table: it is writing it right now, or it died
            // between the claim and the row. Its claim counts as a lease
            // from the claim's creation; once that has expired (or the
            // operator forces), claim the next generation — otherwise one
            // unlucky kill would lock the job for good.
            let claimed_at = info.stats.creation_time.unwrap_or(now);
            let expires_at =
                claimed_at + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
            let abandoned = Utc::now() >= expires_at
                // Its row may have landed since we read: a live lease at
                // this generation or above is held, however old the claim.
                && !current(&cp)
                    .await?
                    .is_some_and(|r| r.generation >= generation && r.is_live(Utc::now()));
            if !(abandoned || force) || generation - first >= MAX_ABANDONED_CLAIMS {
                return Err(LeaseError::Held {
                    job,
                    holder,
                    expires_at: expires_at.to_rfc3339(),
                });
            }
            tracing::warn!(
                holder = %holder,
                generation,
                "lease generation {generation} was claimed by a run that never recorded it; claiming the next"
            );
            generation += 1;
        }
        // Counted from the claim, not from when the row lands: if writing it
        // took longer than the TTL, a rival may already have judged the claim
        // abandoned, and `check` stops this run before its first partition.
        let expires_at =
            claimed_at + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(180));
        cp.record(LeaseStatus::Held, generation, expires_at).await?;
        let state = Arc::new(LeaseState {
            expires_at: Mutex::new(expires_at),
            lost: CancellationToken::new(),
            taken_by: std::sync::Mutex::new(String::new()),
        });
        let heartbeat = tokio::spawn(heartbeat(cp.clone(), state.clone(), generation, ttl));
        Ok(Lease {
            log: cp,
            generation,
            job,
            state,
            heartbeat: Some(heartbeat),
        })
    }

    /// Ok while the lease is ours and unexpired; checked before each job.
    pub async fn check(&self) -> Result<(), LeaseError> {
        if self.state.lost.is_cancelled() || Utc::now() >= *self.state.expires_at.lock().await {
            return Err(self.lost_error());
        }
        Ok(())
    }

    /// Resolves once the heartbeat has seen the lease taken over or gone:
    /// the run loop races its work against this, so a run that lost its
    /// lease stops within one heartbeat — even while waiting on a job.
    pub async fn lost(&self) {
        self.state.lost.cancelled().await
    }

    /// The error a run that lost its lease ends with (exit 73).
    pub fn lost_error(&self) -> LeaseError {
        let by = self
            .state
            .taken_by
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        LeaseError::Lost {
            job: self.job.clone(),
            generation: self.generation,
            by: if by.is_empty() {
                "another run".into()
            } else {
                format!("run {by}")
            },
        }
    }

    /// Stop renewing and record the release (best effort within `timeout`).
    pub async fn release(mut self, timeout: Duration) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
        if self.state.lost.is_cancelled() {
            return;
        }
        let released = self
            .log
            .record(LeaseStatus::Released, self.generation, Utc::now());
        match tokio::time::timeout(timeout, released).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!("could not record the lease release: {e}; it expires on its own")
            }
            Err(_) => {
                tracing::warn!("recording the lease release timed out; it expires on its own")
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }
}

/// Renew the lease every ttl/3; notice a takeover (a higher generation).
async fn heartbeat(cp: Arc<LeaseLog>, state: Arc<LeaseState>, generation: i64, ttl: Duration) {
    let period = (ttl / 3).max(Duration::from_millis(200));
    // Reads in a row that did not show our lease row.
    let mut missing = 0;
    loop {
        tokio::time::sleep(period).await;
        match current(&cp).await {
            Ok(Some(row)) if row.generation == generation && row.run_id == cp.run_id() => {
                missing = 0;
            }
            Ok(Some(row)) if row.generation > generation => {
                tracing::error!(by = %row.run_id, "the lease was taken over by another run; stopping");
                state.mark_lost(&row.run_id);
                return;
            }
            // Our lease rows are gone (the audit table was recreated) or
            // another run holds this generation: not ours any more. Twice in
            // a row, so that a streamed row not yet visible is no reason.
            Ok(_) if missing >= 1 => {
                tracing::error!("this run's lease is no longer in the lease table; stopping");
                state.mark_lost("");
                return;
            }
            Ok(_) => missing += 1,
            // A failed read must not stop the renewal: renewing blind is
            // harmless, letting the lease expire under a live run is not.
            Err(e) => tracing::warn!("lease heartbeat could not read the lease table: {e}"),
        }
        let expires_at =
            Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(180));
        match cp.record(LeaseStatus::Held, generation, expires_at).await {
            Ok(()) => *state.expires_at.lock().await = expires_at,
            Err(e) => tracing::warn!("lease heartbeat could not renew: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_ids_are_valid_bigquery_job_ids() {
        let id = claim_job_id("events_daily", "1732550000000", 7);
        assert_eq!(id, "bqb_events_daily_lease_1732550000000_g7");
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        );
    }

    #[test]
    fn a_lease_is_live_only_while_held_and_unexpired() {
        let now = Utc::now();
        let row = |status, secs: i64| LeaseRow {
            run_id: "r".into(),
            status,
            generation: 1,
            expires_at: Some(now + chrono::Duration::seconds(secs)),
        };
        assert!(row(LeaseStatus::Held, 10).is_live(now));
        assert!(!row(LeaseStatus::Held, -1).is_live(now));
        assert!(!row(LeaseStatus::Released, 10).is_live(now));
    }
}
