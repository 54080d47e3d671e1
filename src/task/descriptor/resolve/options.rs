//! How carefully to run: throttle, job options and labels, retry policy,
//! run-time budget and lease.

use std::time::Duration;

use super::{Builder, Mode};
use crate::bq::retry::RetryPolicy;
use crate::task::descriptor::ident;
use crate::task::descriptor::raw::{ByteCount, JobConfig, Lease, Priority, Retry, Throttle};
use crate::task::descriptor::{MAX_USER_LABELS, RESERVED_LABEL_PREFIX};
use crate::task::settings;

const MAX_PAUSE_SECONDS: f64 = 86_400.0;
/// Partitions at once: BigQuery runs about 100 interactive queries per project at once, shared with everyone else.
const MAX_CONCURRENCY: u32 = 16;
const MAX_PAUSE_RATIO: f64 = 100.0;
const MAX_BACKOFF_SECONDS: f64 = 3_600.0;
const MAX_DEADLINE_SECONDS: f64 = 86_400.0;
const MAX_RUNTIME_SECONDS: f64 = 31_536_000.0;
const MIN_LEASE_SECONDS: f64 = 1.0;
const MAX_LEASE_SECONDS: f64 = 86_400.0;

impl Builder<'_> {
    pub(super) fn throttle(&mut self, t: &Throttle) -> Option<settings::Throttle> {
        let s = self.number(
            "throttle.pause_seconds",
            t.pause_seconds,
            0.0,
            false,
            MAX_PAUSE_SECONDS,
            "use 0 for no fixed pause; at most a day",
        );
        let r = self.number(
            "throttle.pause_ratio",
            t.pause_ratio,
            0.0,
            false,
            MAX_PAUSE_RATIO,
            "e.g. 0.2 pauses for a fifth of each partition's runtime; 0 disables it",
        );
        let writes = match t.partition_writes_per_10s {
            None => Some(None),
            Some(w) if (1..=settings::Throttle::DEFAULT_WRITES_PER_10S).contains(&w) => {
                Some(Some(w))
            }
            Some(w) => {
                self.issue(
                "throttle.partition_writes_per_10s",
                format!("{w} is out of range: must be from 1 to 50"),
                "BigQuery allows about 50 partition modifications per table per 10 s, shared with the table's other writers",
                );
                None
            }
        };
        Some(settings::Throttle {
            pause_seconds: s?,
            pause_ratio: r?,
            partition_writes_per_10s: writes?,
        })
    }

    /// `--concurrency`, else the descriptor's `concurrency`, else 1.
    pub(super) fn concurrency(&mut self, v: Option<u32>) -> Option<u32> {
        let (field, n) = match (self.overrides.concurrency, v) {
            (Some(n), _) => ("--concurrency", n),
            (None, Some(n)) => ("concurrency", n),
            (None, None) => return Some(1),
        };
        if (1..=MAX_CONCURRENCY).contains(&n) {
            return Some(n);
        }
        self.issue(
            field,
            format!("{n} is out of range: must be from 1 to {MAX_CONCURRENCY}"),
            "1 runs partitions one after another; a few slots (4-8) suit cheap partitions bound by round trips",
        );
        None
    }

    pub(super) fn job_options(&mut self, j: &JobConfig) -> Option<settings::JobOptions> {
        let mut ok = true;
        let maximum_bytes_billed = match j.maximum_bytes_billed {
            None => None,
            Some(ByteCount(n)) => match i64::try_from(n) {
                Ok(v) if v > 0 => Some(v),
                _ => {
                    self.issue(
                        "job_config.maximum_bytes_billed",
                        format!("{n} is out of range: must be from 1 to {}", i64::MAX),
                        "give the byte limit as a positive integer, e.g. 1000000000000 for 1 TB; leave it out for no limit",
                    );
                    ok = false;
                    None
                }
            },
        };
        if j.labels.0.len() > MAX_USER_LABELS {
            self.issue(
                "job_config.labels",
                format!(
                    "{} labels given; at most {MAX_USER_LABELS} are allowed",
                    j.labels.0.len()
                ),
                "BigQuery allows 64 labels per job and bq-backfill adds its own; remove some",
            );
            ok = false;
        }
        for (k, v) in &j.labels.0 {
            let field = format!("job_config.labels.{k}");
            if let Err(p) = ident::label_key(k) {
                self.problem(field, p);
                ok = false;
            } else if k.starts_with(RESERVED_LABEL_PREFIX) {
                self.issue(
                    field,
                    format!("label key `{k}` uses the reserved prefix `{RESERVED_LABEL_PREFIX}`"),
                    "bq-backfill sets `bq-backfill*` labels itself; choose another key",
                );
                ok = false;
            } else if let Err(p) = ident::label_value(v) {
                self.problem(field, p);
                ok = false;
            }
        }
        ok.then(|| settings::JobOptions {
            priority: match j.priority {
                Priority::Interactive => settings::Priority::Interactive,
                Priority::Batch => settings::Priority::Batch,
            },
            maximum_bytes_billed,
            labels: j.labels.0.clone(),
        })
    }

    pub(super) fn retry(&mut self, r: &Retry) -> Option<RetryPolicy> {
        let mut ok = true;
        if !(1..=10).contains(&r.max_attempts) {
            self.issue(
                "retry.max_attempts",
                format!("{} is out of range: must be from 1 to 10", r.max_attempts),
                "1 means no job-level retry; 3 is the default",
            );
            ok = false;
        }
        let initial = self.number(
            "retry.initial_backoff_seconds",
            r.initial_backoff_seconds,
            0.0,
            true,
            MAX_BACKOFF_SECONDS,
            "1 second is the default",
        );
        let max = self.number(
            "retry.max_backoff_seconds",
            r.max_backoff_seconds,
            0.0,
            true,
            MAX_BACKOFF_SECONDS,
            "60 seconds is the default",
        );
        let deadline = self.number(
            "retry.deadline_seconds",
            r.deadline_seconds,
            0.0,
            true,
            MAX_DEADLINE_SECONDS,
            "600 seconds is the default",
        );
        if let (Some(i), Some(m)) = (initial, max)
            && m < i
        {
            self.issue(
                "retry.max_backoff_seconds",
                format!("max_backoff_seconds ({m}) is less than initial_backoff_seconds ({i})"),
                "the cap must be at least the first backoff",
            );
            ok = false;
        }
        let (initial, max, deadline) = (initial?, max?, deadline?);
        ok.then(|| RetryPolicy {
            initial_backoff: Duration::from_secs_f64(initial),
            max_backoff: Duration::from_secs_f64(max),
            deadline: Duration::from_secs_f64(deadline),
            max_attempts: r.max_attempts,
        })
    }

    pub(super) fn max_runtime(&mut self, v: Option<f64>) -> Option<Option<Duration>> {
        const HINT: &str = "give the time budget in seconds, e.g. 3300 to stop starting partitions after 55 minutes; leave it out for no budget";
        let (field, secs) = match (self.mode, self.overrides.max_runtime, v) {
            (Mode::Resolve, Some(d), _) => ("--max-runtime", d.as_secs_f64()),
            (_, _, Some(v)) => ("max_runtime_seconds", v),
            (_, _, None) => return Some(None),
        };
        let secs = self.number(field, secs, 0.0, true, MAX_RUNTIME_SECONDS, HINT)?;
        Some(Some(Duration::from_secs_f64(secs)))
    }

    pub(super) fn lease(&mut self, l: &Lease) -> Option<settings::LeaseOptions> {
        let ttl = self.number(
            "lease.ttl_seconds",
            l.ttl_seconds,
            MIN_LEASE_SECONDS,
            false,
            MAX_LEASE_SECONDS,
            "180 (three minutes) is the default; a crashed run's lease is taken over after this long",
        )?;
        Some(settings::LeaseOptions {
            ttl: Duration::from_secs_f64(ttl),
        })
    }
}
