//! Retry policy and classification of failures as transient or permanent.
//! The one place that decides what is retried, how often and how long.
//!
//! Two levels are classified separately: an API *call* that failed
//! ([`classify_http`], retried here with the same request), and a BigQuery
//! *job* that ended with an error ([`is_transient_job_reason`], which the run
//! loop re-runs under a new job ID). The sets follow the official clients
//! (python-bigquery's `_should_retry` / `_job_should_retry`, the Go client's
//! `retryableError`).

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::Serialize;

/// Backoff settings (the `retry` block of the descriptor).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RetryPolicy {
    /// First backoff; doubles per retry (full jitter), capped at `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Total time one API call may spend retrying, and one partition
    /// re-running jobs that ended with a rate-limit reason.
    pub deadline: Duration,
    /// Attempts per partition when a job *ends* with a transient reason
    /// (each attempt is a new BigQuery job with a new job ID); jobs that met
    /// a rate limit do not count.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            deadline: Duration::from_secs(600),
            max_attempts: 3,
        }
    }
}

/// Whether a failure may go away if the same request is sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Transient,
    Permanent,
}

/// API error reasons worth retrying, whatever the HTTP status.
const TRANSIENT_API_REASONS: &[&str] = &[
    "backendError",
    "internalError",
    "rateLimitExceeded",
    "badGateway",
];

/// API error reasons that never go away by retrying, whatever the HTTP status.
/// `quotaExceeded` shares 403 with the retryable `rateLimitExceeded`, and the
/// `job*` reasons describe a finished job (retrying the call that reports
/// them cannot change the job), so the reason must win over the status.
const PERMANENT_API_REASONS: &[&str] = &[
    "accessDenied",
    "billingNotEnabled",
    "billingTierLimitExceeded",
    "blocked",
    "duplicate",
    "forbidden",
    "invalid",
    "invalidQuery",
    "invalidUser",
    "jobBackendError",
    "jobInternalError",
    "jobRateLimitExceeded",
    "notFound",
    "notImplemented",
    "quotaExceeded",
    "resourcesExceeded",
    "responseTooLarge",
    "stopped",
];

/// Reasons with which a *finished* job may be re-run under a new job ID.
const TRANSIENT_JOB_REASONS: &[&str] = &[
    "backendError",
    "internalError",
    "rateLimitExceeded",
    "jobRateLimitExceeded",
    "jobBackendError",
    "jobInternalError",
];

/// Classifies a failed API call by its HTTP status and the first error
/// reason of BigQuery's error envelope (if the body had one).
///
/// A known reason decides; an unknown or missing reason falls back to the
/// status: 408, 429, 500, 502, 503 and 504 are transient, anything else is
/// permanent.
pub fn classify_http(status: u16, reason: Option<&str>) -> Class {
    if let Some(reason) = reason {
        if TRANSIENT_API_REASONS.contains(&reason) {
            return Class::Transient;
        }
        if PERMANENT_API_REASONS.contains(&reason) {
            return Class::Permanent;
        }
    }
    match status {
        408 | 429 | 500 | 502 | 503 | 504 => Class::Transient,
        _ => Class::Permanent,
    }
}

/// Whether a job that *ended* with this `errorResult.reason` may succeed if
/// run again (as a new job). `stopped` (cancelled), `invalid`,
/// `invalidQuery`, `quotaExceeded` and the like are final.
pub fn is_transient_job_reason(reason: &str) -> bool {
    TRANSIENT_JOB_REASONS.contains(&reason)
}

/// Whether a job that *ended* with this reason met BigQuery's rate limits
/// (too many jobs or partition modifications at once): the run backs off and
/// runs it again without counting the attempt against `retry.max_attempts`,
/// for as long as `retry.deadline_seconds` allows.
pub fn is_rate_limit_reason(reason: &str) -> bool {
    matches!(reason, "rateLimitExceeded" | "jobRateLimitExceeded")
}

/// The upper bound of the backoff before retry number `retry_index`
/// (0 = the first retry): `min(max_backoff, initial_backoff × 2^retry_index)`.
pub fn backoff_cap(policy: &RetryPolicy, retry_index: u32) -> Duration {
    let factor = 2u32.checked_pow(retry_index).unwrap_or(u32::MAX);
    policy
        .initial_backoff
        .checked_mul(factor)
        .unwrap_or(Duration::MAX)
        .min(policy.max_backoff)
}

/// The backoff before retry number `retry_index` (0 = the first retry), with
/// full jitter: uniform in `[0, backoff_cap(policy, retry_index)]`. Full
/// jitter spreads out clients that failed together (several backfills hitting
/// the same rate limit) better than a fixed or equal-jitter schedule.
pub fn backoff_delay(policy: &RetryPolicy, retry_index: u32, rng: &mut impl Rng) -> Duration {
    let cap = backoff_cap(policy, retry_index);
    let cap_nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(0..=cap_nanos))
}

/// Reported before each backoff sleep (the run loop turns it into a
/// `retry_scheduled` event).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryNotice {
    /// The API method, e.g. `jobs.insert`.
    pub operation: &'static str,
    /// The attempt that just failed (1-based).
    pub attempt: u32,
    /// BigQuery's error reason, or a short transport description.
    pub reason: String,
    /// How long we sleep before the next attempt.
    pub delay: Duration,
    /// When the next attempt is due (wall clock).
    pub next_at: DateTime<Utc>,
}

/// An error the [`retry`] helper can classify and annotate.
pub trait Retryable {
    /// Whether sending the same request again may succeed.
    fn is_transient(&self) -> bool;
    /// A short reason for [`RetryNotice::reason`].
    fn reason(&self) -> &str;
    /// Records how many attempts were made and how long they took in total,
    /// so the final error can say so.
    fn set_attempts(&mut self, attempts: u32, elapsed: Duration);
    /// How long the server asked us to wait (`Retry-After`), if it did.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

/// A shareable observer of retries (what the client stores).
pub type RetryObserver = std::sync::Arc<dyn Fn(&RetryNotice) + Send + Sync>;

/// Observer called before each backoff sleep.
pub type Observer<'a> = Option<&'a (dyn Fn(&RetryNotice) + Send + Sync)>;

/// Runs `f` until it succeeds, fails permanently, or `policy.deadline` has
/// passed since the first attempt. Transient failures are retried after
/// [`backoff_delay`], or after the server's `Retry-After` if that is longer;
/// a sleep is cut short so that it never ends past the deadline, and no
/// attempt starts after it. The error returned is the last
/// one, annotated with the attempt count and the total time.
///
pub async fn retry<T, E, F, Fut>(
    policy: &RetryPolicy,
    operation: &'static str,
    observer: Observer<'_>,
    mut f: F,
) -> Result<T, E>
where
    E: Retryable,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let start = tokio::time::Instant::now();
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let mut err = match f().await {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        let elapsed = start.elapsed();
        let remaining = policy.deadline.saturating_sub(elapsed);
        if !err.is_transient() || remaining.is_zero() {
            err.set_attempts(attempt, elapsed);
            return Err(err);
        }
        // The thread-local rng must not live across the await below (it is not Send).
        let delay = backoff_delay(policy, attempt - 1, &mut rand::rng())
            .max(err.retry_after().unwrap_or_default())
            .min(remaining);
        if let Some(observe) = observer {
            observe(&RetryNotice {
                operation,
                attempt,
                reason: err.reason().to_string(),
                delay,
                next_at: Utc::now()
                    + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX),
            });
        } else {
            // Nobody else reports it (plan, status): say what is being waited for.
            tracing::warn!(
                "bigquery {operation}: {} (attempt {attempt}); retrying in {:.1} s",
                err.reason(),
                delay.as_secs_f64()
            );
        }
        tokio::time::sleep(delay).await;
    }
}

/// Formats "N attempt(s) in S.SSSs" for error messages.
pub fn describe_attempts(attempts: u32, elapsed: Duration) -> String {
    let noun = if attempts == 1 { "attempt" } else { "attempts" };
    format!("{attempts} {noun} in {:.1}s", elapsed.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[derive(Debug, PartialEq)]
    struct TestError {
        transient: bool,
        attempts: u32,
        elapsed: Duration,
        retry_after: Option<Duration>,
    }

    impl TestError {
        fn new(transient: bool) -> Self {
            TestError {
                transient,
                attempts: 0,
                elapsed: Duration::ZERO,
                retry_after: None,
            }
        }
    }

    impl Retryable for TestError {
        fn is_transient(&self) -> bool {
            self.transient
        }
        fn reason(&self) -> &str {
            if self.transient {
                "backendError"
            } else {
                "invalid"
            }
        }
        fn set_attempts(&mut self, attempts: u32, elapsed: Duration) {
            self.attempts = attempts;
            self.elapsed = elapsed;
        }
        fn retry_after(&self) -> Option<Duration> {
            self.retry_after
        }
    }

    fn policy(initial_ms: u64, max_ms: u64, deadline_ms: u64) -> RetryPolicy {
        RetryPolicy {
            initial_backoff: Duration::from_millis(initial_ms),
            max_backoff: Duration::from_millis(max_ms),
            deadline: Duration::from_millis(deadline_ms),
            max_attempts: 3,
        }
    }

    #[test]
    fn reference_table_rows_are_classified() {
        use Class::*;
        let rows: &[(u16, Option<&str>, Class)] = &[
            (500, Some("backendError"), Transient),
            (502, Some("backendError"), Transient),
            (503, Some("backendError"), Transient),
            (504, Some("backendError"), Transient),
            (500, Some("internalError"), Transient),
            (403, Some("rateLimitExceeded"), Transient),
            (403, Some("quotaExceeded"), Permanent),
            (403, Some("accessDenied"), Permanent),
            (403, Some("responseTooLarge"), Permanent),
            (409, Some("duplicate"), Permanent),
            (404, Some("notFound"), Permanent),
            (400, Some("invalid"), Permanent),
            (400, Some("invalidQuery"), Permanent),
            (400, Some("jobBackendError"), Permanent),
            (400, Some("jobInternalError"), Permanent),
            (400, Some("jobRateLimitExceeded"), Permanent),
            (502, Some("badGateway"), Transient),
            // No envelope (e.g. an HTML page from a proxy): the status decides.
            (429, None, Transient),
            (500, None, Transient),
            (502, None, Transient),
            (503, None, Transient),
            (504, None, Transient),
            (408, None, Transient),
            (400, None, Permanent),
            (401, None, Permanent),
            (403, None, Permanent),
            (404, None, Permanent),
            (409, None, Permanent),
            // An unknown reason falls back to the status.
            (503, Some("somethingNew"), Transient),
            (400, Some("somethingNew"), Permanent),
            // A quota is not a rate limit, even behind a 5xx-looking gateway.
            (503, Some("quotaExceeded"), Permanent),
        ];
        for &(status, reason, expected) in rows {
            assert_eq!(
                classify_http(status, reason),
                expected,
                "status {status} reason {reason:?}"
            );
        }
    }

    #[test]
    fn job_reasons_are_classified() {
        for reason in [
            "backendError",
            "internalError",
            "rateLimitExceeded",
            "jobRateLimitExceeded",
            "jobBackendError",
            "jobInternalError",
        ] {
            assert!(is_transient_job_reason(reason), "{reason}");
        }
        for reason in [
            "stopped",
            "invalid",
            "invalidQuery",
            "quotaExceeded",
            "accessDenied",
            "notFound",
            "duplicate",
            "",
        ] {
            assert!(!is_transient_job_reason(reason), "{reason}");
        }
    }

    #[test]
    fn backoff_cap_doubles_and_saturates() {
        let p = policy(1000, 60_000, 600_000);
        let caps: Vec<u64> = (0..9)
            .map(|i| backoff_cap(&p, i).as_millis() as u64)
            .collect();
        assert_eq!(
            caps,
            [
                1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000
            ]
        );
        assert_eq!(backoff_cap(&p, 40), Duration::from_secs(60));
        assert_eq!(backoff_cap(&p, u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn full_jitter_stays_within_the_cap_and_spreads() {
        let p = policy(1000, 60_000, 600_000);
        let mut rng = StdRng::seed_from_u64(7);
        for retry_index in 0..12 {
            let cap = backoff_cap(&p, retry_index);
            let samples: Vec<Duration> = (0..500)
                .map(|_| backoff_delay(&p, retry_index, &mut rng))
                .collect();
            assert!(
                samples.iter().all(|d| *d <= cap),
                "retry {retry_index} exceeded {cap:?}"
            );
            // Full jitter: draws land in both the lower and the upper quarter.
            assert!(samples.iter().any(|d| *d < cap / 4), "retry {retry_index}");
            assert!(
                samples.iter().any(|d| *d > cap * 3 / 4),
                "retry {retry_index}"
            );
        }
    }

    #[tokio::test]
    async fn transient_then_success_is_retried_and_observed() {
        let calls = AtomicU32::new(0);
        let notices = Mutex::new(Vec::new());
        let observe = |n: &RetryNotice| notices.lock().unwrap().push(n.clone());
        let out: Result<&str, TestError> =
            retry(&policy(10, 100, 60_000), "jobs.get", Some(&observe), || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 2 {
                        Err(TestError::new(true))
                    } else {
                        Ok("done")
                    }
                }
            })
            .await;
        assert_eq!(out, Ok("done"));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let notices = notices.into_inner().unwrap();
        assert_eq!(
            notices.iter().map(|n| n.attempt).collect::<Vec<_>>(),
            [1, 2]
        );
        assert!(
            notices
                .iter()
                .all(|n| n.operation == "jobs.get" && n.reason == "backendError")
        );
        assert!(notices[0].delay <= Duration::from_millis(10));
        assert!(notices[1].delay <= Duration::from_millis(20));
        assert!(notices[1].next_at > notices[0].next_at - chrono::Duration::milliseconds(10));
    }

    #[tokio::test]
    async fn permanent_failure_is_not_retried() {
        let calls = AtomicU32::new(0);
        let out: Result<(), TestError> =
            retry(&policy(100, 1000, 60_000), "jobs.query", None, || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(TestError::new(false)) }
            })
            .await;
        let err = out.unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(err.attempts, 1);
        assert!(err.elapsed < Duration::from_millis(50));
    }

    /// The sleeps of a retry whose first attempt fails with `Retry-After: ms`.
    async fn sleeps_after_retry_after(ms: u64) -> Vec<Duration> {
        let delays = Mutex::new(Vec::new());
        let calls = AtomicU32::new(0);
        let observe = |n: &RetryNotice| delays.lock().unwrap().push(n.delay);
        retry(&policy(1, 2, 60), "jobs.insert", Some(&observe), || {
            let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if first {
                    Err(TestError {
                        retry_after: Some(Duration::from_millis(ms)),
                        ..TestError::new(true)
                    })
                } else {
                    Ok(())
                }
            }
        })
        .await
        .unwrap();
        delays.into_inner().unwrap()
    }

    #[tokio::test]
    async fn the_servers_retry_after_wins_over_a_shorter_backoff_but_not_the_deadline() {
        // Backoff is at most 1 ms here; the server asked for 30 ms.
        assert_eq!(
            sleeps_after_retry_after(30).await,
            vec![Duration::from_millis(30)]
        );
        // Asked for longer than the 60 ms deadline: the sleep is cut to it.
        let cut = sleeps_after_retry_after(10_000).await;
        assert_eq!(cut.len(), 1);
        assert!(cut[0] <= Duration::from_millis(60), "{cut:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_bounds_the_retries() {
        let calls = AtomicU32::new(0);
        let slept = Mutex::new(Duration::ZERO);
        let observe = |n: &RetryNotice| *slept.lock().unwrap() += n.delay;
        let p = policy(2, 16, 150);
        let start = tokio::time::Instant::now();
        let out: Result<(), TestError> = retry(&p, "jobs.get", Some(&observe), || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(TestError::new(true)) }
        })
        .await;
        let err = out.unwrap_err();
        let total = start.elapsed();
        // Virtual time: the last sleep was cut so that the last attempt starts
        // exactly at the deadline, and none starts after it.
        assert_eq!(total, p.deadline, "took {total:?}");
        // (tokio's timer rounds each sleep up to a whole millisecond)
        assert!(*slept.lock().unwrap() <= p.deadline);
        assert!(err.attempts >= 2);
        assert_eq!(err.attempts, calls.load(Ordering::SeqCst));
        assert_eq!(err.elapsed, p.deadline);
    }

    #[tokio::test]
    async fn zero_deadline_means_one_attempt() {
        let calls = AtomicU32::new(0);
        let out: Result<(), TestError> = retry(&policy(100, 1000, 0), "jobs.get", None, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(TestError::new(true)) }
        })
        .await;
        assert_eq!(out.unwrap_err().attempts, 1);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn attempts_are_described() {
        assert_eq!(
            describe_attempts(1, Duration::from_millis(240)),
            "1 attempt in 0.2s"
        );
        assert_eq!(
            describe_attempts(4, Duration::from_millis(12_340)),
            "4 attempts in 12.3s"
        );
    }
}
