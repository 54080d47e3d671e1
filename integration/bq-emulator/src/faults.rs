//! Fault injection for reliability tests: failed, delayed and dropped requests, failing jobs, random
//! transient errors. Shared by the library handle [`Faults`] and the `/_emulator/faults/*` control API.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ErrorProto};
use crate::util::lock;

/// Which jobs [`Faults::fail_jobs`] applies to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum JobMatcher {
    /// Every job whose id starts with the string (until cleared).
    IdPrefix(String),
    /// Every job whose id contains the string (until cleared).
    IdContains(String),
    /// The next N jobs created.
    Next(u32),
    /// Only the first job whose id contains the string (then the rule is spent):
    /// for "fails once, succeeds on the next attempt".
    FirstContaining(String),
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct FailRule {
    method: String,
    remaining: u32,
    status: u16,
    reason: String,
    message: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct JobRule {
    matcher: JobMatcher,
    reason: String,
    message: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CountedRule {
    method: String,
    remaining: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    delay_ms: Option<u64>,
    /// Apply after the request was handled (its effects happen, the response is late or lost).
    after_handling: bool,
}

#[derive(Debug)]
struct RandomRule {
    rate: f64,
    seed: u64,
    methods: Option<Vec<String>>,
    rng: StdRng,
}

#[derive(Debug, Default)]
struct FaultState {
    fails: Vec<FailRule>,
    insert_after_create: u32,
    jobs: Vec<JobRule>,
    /// Jobs that spend longer RUNNING than the global job delay.
    slow_jobs: Vec<(JobMatcher, Duration)>,
    delays: Vec<CountedRule>,
    drops: Vec<CountedRule>,
    random: Option<RandomRule>,
    injected: BTreeMap<String, u64>,
}

/// What to do with one incoming request.
#[derive(Debug, Default)]
pub struct RequestFault {
    /// Sleep this long before handling.
    pub delay: Option<Duration>,
    /// Sleep this long after handling, before answering.
    pub delay_after: Option<Duration>,
    /// Close the connection without answering (the request is not handled).
    pub drop: bool,
    /// Handle the request, then close the connection without answering.
    pub drop_after: bool,
    /// Answer this error instead of handling.
    pub fail: Option<ApiError>,
}

/// Cloneable handle to the emulator's fault injection.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    inner: Arc<Mutex<FaultState>>,
}

fn method_matches(rule: &str, method: &str) -> bool {
    rule == "*" || rule == method
}

impl Faults {
    /// Makes the next `n` requests of `method` (`jobs.insert`, `tables.get`, ..., or `*`) answer `status`
    /// with `reason` in BigQuery's error envelope.
    pub fn fail_next(&self, method: &str, n: u32, status: u16, reason: &str) {
        self.fail_next_with_message(
            method,
            n,
            status,
            reason,
            &format!("injected fault: {reason}"),
        );
    }

    /// Like [`Faults::fail_next`] with an explicit message.
    pub fn fail_next_with_message(
        &self,
        method: &str,
        n: u32,
        status: u16,
        reason: &str,
        message: &str,
    ) {
        lock(&self.inner).fails.push(FailRule {
            method: method.into(),
            remaining: n,
            status,
            reason: reason.into(),
            message: message.into(),
        });
    }

    /// Makes the next `n` `jobs.insert` calls create (and run) the job, then answer 503 `backendError`:
    /// the client cannot know whether the job exists.
    pub fn fail_insert_after_create(&self, n: u32) {
        lock(&self.inner).insert_after_create += n;
    }

    /// Makes matching jobs end DONE with `errorResult {reason, message}` without writing anything.
    pub fn fail_jobs(&self, matcher: JobMatcher, reason: &str, message: &str) {
        lock(&self.inner).jobs.push(JobRule {
            matcher,
            reason: reason.into(),
            message: message.into(),
        });
    }

    /// Makes matching jobs spend `dur` RUNNING before they execute (instead of
    /// the global job delay), e.g. only the backfill's partition jobs and not
    /// its audit-log queries. `Next(n)` counts down; the other matchers stay.
    pub fn slow_jobs(&self, matcher: JobMatcher, dur: Duration) {
        lock(&self.inner).slow_jobs.push((matcher, dur));
    }

    /// The RUNNING delay a slow-job rule sets for `job_id`, if any.
    pub(crate) fn job_delay_for(&self, job_id: &str) -> Option<Duration> {
        let mut st = lock(&self.inner);
        let idx = st.slow_jobs.iter().position(|(m, _)| match m {
            JobMatcher::IdPrefix(p) => job_id.starts_with(p.as_str()),
            JobMatcher::IdContains(s) | JobMatcher::FirstContaining(s) => {
                job_id.contains(s.as_str())
            }
            JobMatcher::Next(n) => *n > 0,
        })?;
        let dur = st.slow_jobs[idx].1;
        match &mut st.slow_jobs[idx].0 {
            JobMatcher::FirstContaining(_) => {
                st.slow_jobs.remove(idx);
            }
            JobMatcher::Next(n) => {
                *n -= 1;
                if *n == 0 {
                    st.slow_jobs.remove(idx);
                }
            }
            JobMatcher::IdPrefix(_) | JobMatcher::IdContains(_) => {}
        }
        Some(dur)
    }

    /// Delays the next `n` requests of `method` by `dur` before they are handled.
    pub fn delay(&self, method: &str, n: u32, dur: Duration) {
        self.push_delay(method, n, dur, false);
    }

    /// Delays the responses of the next `n` requests of `method` by `dur` after they were handled (a
    /// client that times out meanwhile does not know the outcome).
    pub fn delay_after(&self, method: &str, n: u32, dur: Duration) {
        self.push_delay(method, n, dur, true);
    }

    fn push_delay(&self, method: &str, n: u32, dur: Duration, after_handling: bool) {
        lock(&self.inner).delays.push(CountedRule {
            method: method.into(),
            remaining: n,
            delay_ms: Some(dur.as_millis() as u64),
            after_handling,
        });
    }

    /// Closes the connection without any response for the next `n` requests of `method`. The request
    /// is not handled (a dropped `jobs.insert` creates no job).
    pub fn drop_next(&self, method: &str, n: u32) {
        self.push_drop(method, n, false);
    }

    /// Handles the next `n` requests of `method`, then closes the connection without a response (a
    /// dropped `jobs.insert` did create its job).
    pub fn drop_after(&self, method: &str, n: u32) {
        self.push_drop(method, n, true);
    }

    fn push_drop(&self, method: &str, n: u32, after_handling: bool) {
        lock(&self.inner).drops.push(CountedRule {
            method: method.into(),
            remaining: n,
            delay_ms: None,
            after_handling,
        });
    }

    /// Fails each request with probability `rate` (503 `backendError` or 429 `rateLimitExceeded`, chosen by
    /// the same seeded generator, so a run is reproducible for a given request order). `rate` 0 disables.
    pub fn transient_failure_rate(&self, rate: f64, seed: u64) {
        self.set_random(rate, seed, None);
    }

    /// Like [`Faults::transient_failure_rate`], restricted to the given methods.
    pub fn transient_failure_rate_for(&self, methods: &[&str], rate: f64, seed: u64) {
        self.set_random(
            rate,
            seed,
            Some(methods.iter().map(|m| m.to_string()).collect()),
        );
    }

    fn set_random(&self, rate: f64, seed: u64, methods: Option<Vec<String>>) {
        lock(&self.inner).random = (rate > 0.0).then(|| RandomRule {
            rate: rate.min(1.0),
            seed,
            methods,
            rng: StdRng::seed_from_u64(seed),
        });
    }

    /// Removes every fault rule (counters of injected faults are kept until a stats reset).
    pub fn clear(&self) {
        let mut st = lock(&self.inner);
        let injected = std::mem::take(&mut st.injected);
        *st = FaultState {
            injected,
            ..FaultState::default()
        };
    }

    /// Decides the faults for one request of `method` and consumes the matching rules.
    pub(crate) fn on_request(&self, method: &str) -> RequestFault {
        let mut st = lock(&self.inner);
        let mut out = RequestFault::default();
        if let Some(rule) = st
            .delays
            .iter_mut()
            .find(|r| r.remaining > 0 && method_matches(&r.method, method))
        {
            rule.remaining -= 1;
            let d = rule.delay_ms.map(Duration::from_millis);
            if rule.after_handling {
                out.delay_after = d;
            } else {
                out.delay = d;
            }
            *st.injected.entry("delay".into()).or_default() += 1;
        }
        if let Some(rule) = st
            .drops
            .iter_mut()
            .find(|r| r.remaining > 0 && method_matches(&r.method, method))
        {
            rule.remaining -= 1;
            if rule.after_handling {
                out.drop_after = true;
            } else {
                out.drop = true;
            }
            *st.injected.entry("drop".into()).or_default() += 1;
            if out.drop {
                st.drops.retain(|r| r.remaining > 0);
                st.delays.retain(|r| r.remaining > 0);
                return out;
            }
        }
        if let Some(rule) = st
            .fails
            .iter_mut()
            .find(|r| r.remaining > 0 && method_matches(&r.method, method))
        {
            rule.remaining -= 1;
            out.fail = Some(ApiError::new(
                rule.status,
                rule.reason.clone(),
                rule.message.clone(),
            ));
            *st.injected.entry("fail".into()).or_default() += 1;
            st.fails.retain(|r| r.remaining > 0);
            st.delays.retain(|r| r.remaining > 0);
            st.drops.retain(|r| r.remaining > 0);
            return out;
        }
        if let Some(r) = st.random.as_mut()
            && r.methods
                .as_ref()
                .is_none_or(|ms| ms.iter().any(|m| method_matches(m, method)))
            && r.rng.random::<f64>() < r.rate
        {
            out.fail = Some(if r.rng.random_bool(0.5) {
                ApiError::new(
                    503,
                    "backendError",
                    "injected transient fault: backendError",
                )
            } else {
                ApiError::new(
                    429,
                    "rateLimitExceeded",
                    "injected transient fault: rateLimitExceeded",
                )
            });
            *st.injected.entry("random".into()).or_default() += 1;
        }
        st.fails.retain(|r| r.remaining > 0);
        st.delays.retain(|r| r.remaining > 0);
        st.drops.retain(|r| r.remaining > 0);
        out
    }

    /// Consumes one "insert after create" fault, if armed.
    pub(crate) fn take_insert_after_create(&self) -> bool {
        let mut st = lock(&self.inner);
        if st.insert_after_create == 0 {
            return false;
        }
        st.insert_after_create -= 1;
        *st.injected.entry("insertAfterCreate".into()).or_default() += 1;
        true
    }

    /// The error a newly created job `job_id` must end with, if a job rule matches (consumes `Next`).
    pub(crate) fn job_fault(&self, job_id: &str) -> Option<ErrorProto> {
        let mut st = lock(&self.inner);
        let idx = st.jobs.iter().position(|r| match &r.matcher {
            JobMatcher::IdPrefix(p) => job_id.starts_with(p.as_str()),
            JobMatcher::IdContains(s) => job_id.contains(s.as_str()),
            JobMatcher::Next(n) => *n > 0,
            JobMatcher::FirstContaining(s) => job_id.contains(s.as_str()),
        })?;
        let rule = st.jobs[idx].clone();
        match &mut st.jobs[idx].matcher {
            JobMatcher::FirstContaining(_) => {
                st.jobs.remove(idx);
            }
            JobMatcher::Next(n) => {
                *n -= 1;
                if *n == 0 {
                    st.jobs.remove(idx);
                }
            }
            JobMatcher::IdPrefix(_) | JobMatcher::IdContains(_) => {}
        }
        *st.injected.entry("jobError".into()).or_default() += 1;
        Some(ErrorProto::new(rule.reason, rule.message))
    }

    /// Injected-fault counters.
    pub(crate) fn injected(&self) -> BTreeMap<String, u64> {
        lock(&self.inner).injected.clone()
    }

    /// Zeroes the injected-fault counters.
    pub(crate) fn reset_counters(&self) {
        lock(&self.inner).injected.clear();
    }

    /// The armed rules, for `GET /_emulator/faults`.
    pub(crate) fn describe(&self) -> serde_json::Value {
        let st = lock(&self.inner);
        serde_json::json!({
            "fail": st.fails,
            "insertAfterCreate": st.insert_after_create,
            "jobs": st.jobs,
            "delay": st.delays,
            "drop": st.drops,
            "random": st.random.as_ref().map(|r| serde_json::json!({"rate": r.rate, "seed": r.seed, "methods": r.methods})),
        })
    }
}
