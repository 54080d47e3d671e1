//! Bounded concurrency: up to `concurrency` partitions at once, each slot
//! taking the next partition in plan order, running it (`engine::attempt`,
//! the same steps as one at a time) and pausing per `throttle` before its
//! next one. A limiter shared by the slots keeps partition jobs under
//! `throttle.partition_writes_per_10s` in any 10-second window (BigQuery
//! allows about 50 partition modifications per table per 10 s).
//!
//! Every rule of a partition holds per slot: a partition is in one slot
//! only, so "never two jobs on one partition" is unchanged. What stops the
//! run (a failure with `on_failure: stop`, a signal, the time budget, an
//! error) stops the slots from taking new partitions; the partitions in
//! flight finish (a signal cancels their jobs), so no job is left behind
//! unrecorded. A lost lease drops everything at once (see `runner`).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::engine::attempt::{PartitionResult, Slot, process_partition};
use crate::engine::cancel::Cancel;
use crate::engine::failure::RunFailure;
use crate::engine::runner::{States, Tally, budget_spent, throttle};
use crate::planning::partition::Partition;
use crate::task::settings::OnFailure;

/// A pause at least this long writes the audit rows that were waiting for
/// the next partition's (so the log is current while nothing runs).
const FLUSH_BEFORE_PAUSE: Duration = Duration::from_secs(5);

/// Runs `to_run` (in plan order) in `concurrency` slots.
pub(crate) async fn run_slots(
    slot: &Slot<'_>,
    to_run: &[&Partition],
    states: &States,
    tally: &mut Tally,
) -> Result<(), RunFailure> {
    let s = &slot.ctx.settings;
    let slots = (s.concurrency.max(1) as usize).min(to_run.len().max(1));
    let shared = Shared {
        to_run,
        next: Mutex::new(0),
        stop: AtomicBool::new(false),
        tally: Mutex::new(tally),
        limiter: s.throttle.writes_per_10s(slots).map(StartLimiter::per_10s),
        // One partition at a time: the retry observer can name it.
        label_retries: slots == 1,
    };
    let workers = (0..slots).map(|_| worker(slot, &shared, states));
    let results = futures_util::future::join_all(workers).await;
    results.into_iter().collect()
}

struct Shared<'a> {
    to_run: &'a [&'a Partition],
    next: Mutex<usize>,
    stop: AtomicBool,
    tally: Mutex<&'a mut Tally>,
    limiter: Option<StartLimiter>,
    label_retries: bool,
}

impl Shared<'_> {
    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    fn more_left(&self) -> bool {
        *lock(&self.next) < self.to_run.len()
    }

    /// The next partition for a slot, once the run may start one: not
    /// stopped, within budget, still holding the lease, under the rate.
    async fn take(&self, slot: &Slot<'_>) -> Result<Option<&Partition>, RunFailure> {
        let ctx = slot.ctx;
        if self.stop.load(Ordering::Relaxed) || ctx.cancel.is_cancelled() {
            return Ok(None);
        }
        let p = {
            let mut next = lock(&self.next);
            let Some(p) = self.to_run.get(*next) else {
                return Ok(None);
            };
            if budget_spent(&ctx.settings, slot.started) {
                tracing::warn!("time budget spent: stopping before partition {}", p.id);
                drop(next);
                self.stop();
                return Ok(None);
            }
            *next += 1;
            *p
        };
        if let Err(e) = slot.lease.check().await {
            self.stop();
            return Err(e.into());
        }
        if let Some(limiter) = &self.limiter
            && !limiter.acquire(&ctx.cancel).await
        {
            return Ok(None);
        }
        Ok(Some(p))
    }

    /// Counts a partition's result; `None` when it stops the run.
    fn count(
        &self,
        p: &Partition,
        result: PartitionResult,
        on_failure: OnFailure,
    ) -> Option<Duration> {
        let mut tally = lock(&self.tally);
        match result {
            PartitionResult::Succeeded { runtime } => {
                tally.succeeded += 1;
                Some(runtime)
            }
            PartitionResult::Failed { runtime } => {
                tally.failed += 1;
                if on_failure == OnFailure::Stop {
                    tracing::error!("partition {} failed; stopping (on_failure = stop)", p.id);
                    return None;
                }
                Some(runtime)
            }
            PartitionResult::Cancelled => {
                tally.cancelled += 1;
                None
            }
            PartitionResult::Deferred => {
                tracing::warn!("time budget spent: partition {} not started", p.id);
                None
            }
        }
    }
}

/// One slot: partitions one after another, with the throttle's pause
/// between them.
async fn worker(slot: &Slot<'_>, shared: &Shared<'_>, states: &States) -> Result<(), RunFailure> {
    let ctx = slot.ctx;
    while let Some(p) = shared.take(slot).await? {
        if shared.label_retries {
            *lock(&ctx.current_partition) = Some(p.id.clone());
        }
        let result = process_partition(slot, p, states.get(&p.id)).await;
        if shared.label_retries {
            *lock(&ctx.current_partition) = None;
        }
        let result = result.inspect_err(|_| shared.stop())?;
        let Some(runtime) = shared.count(p, result, ctx.settings.on_failure) else {
            shared.stop();
            return Ok(());
        };
        // The pause belongs between partitions, not after the last one; a
        // long one first writes the SUCCEEDED rows waiting for the next row.
        if shared.more_left() {
            if ctx.settings.throttle.pause_after(runtime) >= FLUSH_BEFORE_PAUSE {
                slot.cp.flush().await.inspect_err(|_| shared.stop())?;
            }
            throttle(ctx, &ctx.settings, runtime, slot.started).await;
        }
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// BigQuery counts partition modifications per table in 10-second windows.
const WINDOW: Duration = Duration::from_secs(10);

/// At most `n` partition jobs start in any 10-second window: a sliding
/// window of the last `n` start times (stricter than a token bucket of
/// capacity `n`, which lets up to `2n` through in a window). A slot
/// reserves its start time and waits until then, so slots are served in
/// the order they asked.
pub(crate) struct StartLimiter {
    n: usize,
    /// The last `n` reserved start times, oldest first (some may be ahead).
    starts: Mutex<VecDeque<Instant>>,
}

impl StartLimiter {
    pub(crate) fn per_10s(n: u32) -> StartLimiter {
        let n = n.max(1) as usize;
        StartLimiter {
            n,
            starts: Mutex::new(VecDeque::with_capacity(n)),
        }
    }

    /// Reserves a start at `now` or later: how long to wait for it.
    pub(crate) fn reserve(&self, now: Instant) -> Duration {
        let mut starts = lock(&self.starts);
        let at = if starts.len() < self.n {
            now.max(starts.back().copied().unwrap_or(now))
        } else {
            let oldest = starts.pop_front().unwrap_or(now);
            now.max(oldest + WINDOW)
        };
        starts.push_back(at);
        at.saturating_duration_since(now)
    }

    /// Waits for a start; `false` if a signal came first.
    async fn acquire(&self, cancel: &Cancel) -> bool {
        let wait = self.reserve(Instant::now());
        if wait.is_zero() {
            return true;
        }
        tracing::info!(
            "waiting {:.1} s: at most {} partition jobs start per 10 s (throttle.partition_writes_per_10s)",
            wait.as_secs_f64(),
            self.n
        );
        tokio::select! {
            () = tokio::time::sleep(wait) => true,
            () = cancel.cancelled() => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(d: Duration) -> f64 {
        (d.as_secs_f64() * 10.0).round() / 10.0
    }

    #[test]
    fn no_ten_second_window_holds_more_than_n_starts() {
        let t0 = Instant::now();
        let l = StartLimiter::per_10s(3);
        let waits: Vec<f64> = (0..7).map(|_| secs(l.reserve(t0))).collect();
        assert_eq!(waits, [0.0, 0.0, 0.0, 10.0, 10.0, 10.0, 20.0]);
        // 25 s in, two of the starts at 10 s have expired; the one at 20 s
        // holds its place in the window until 30 s.
        let later = t0 + Duration::from_secs(25);
        assert_eq!(secs(l.reserve(later)), 0.0);
        assert_eq!(secs(l.reserve(later)), 0.0);
        assert_eq!(secs(l.reserve(later)), 5.0);
    }

    #[test]
    fn several_slots_are_limited_by_default_and_one_only_when_asked() {
        let t = |w| crate::task::settings::Throttle {
            pause_seconds: 0.0,
            pause_ratio: 0.0,
            partition_writes_per_10s: w,
        };
        assert_eq!(t(None).writes_per_10s(1), None);
        assert_eq!(t(None).writes_per_10s(4), Some(50));
        assert_eq!(t(Some(10)).writes_per_10s(1), Some(10));
        assert_eq!(t(Some(10)).writes_per_10s(8), Some(10));
    }

    #[test]
    fn spaced_out_starts_never_wait() {
        let t0 = Instant::now();
        let l = StartLimiter::per_10s(2);
        for i in 0..10 {
            assert_eq!(l.reserve(t0 + Duration::from_secs(6 * i)), Duration::ZERO);
        }
    }
}
