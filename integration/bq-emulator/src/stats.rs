//! Request and job counters served by `GET /_emulator/stats`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Counters since start or the last reset.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Requests per BigQuery method name (`jobs.insert`, `tabledata.list`, ...), faulted ones included.
    pub requests: BTreeMap<String, u64>,
    /// Jobs created (dry runs excluded).
    pub jobs_created: u64,
    /// Current state (`PENDING`/`RUNNING`/`DONE`) of the jobs created since the last reset.
    pub jobs_by_state: BTreeMap<String, u64>,
    /// Jobs that ended DONE without errorResult.
    pub jobs_succeeded: u64,
    /// Jobs that ended DONE with an errorResult (cancelled ones included).
    pub jobs_failed: u64,
    /// Jobs that ended with reason `stopped`.
    pub jobs_cancelled: u64,
    /// Times a job started RUNNING while another RUNNING job targeted the same destination partition
    /// (same table and decorator, or either of them the whole table).
    pub concurrency_violations: u64,
    /// Highest number of jobs RUNNING at the same time.
    pub max_concurrent_running: u64,
    /// Job calls (`jobs.insert`, `jobs.query`, `jobs.get`, `jobs.getQueryResults`, `jobs.cancel`,
    /// `jobs.delete`) that named no location, per method: a client that always passes its location
    /// keeps this empty.
    #[serde(default)]
    pub job_calls_without_location: BTreeMap<String, u64>,
    /// Injected faults per kind (`fail`, `insertAfterCreate`, `jobError`, `delay`, `drop`, `random`).
    pub faults_injected: BTreeMap<String, u64>,
    /// BigQuery requests per `Authorization` header value (`""` when absent): the emulator accepts any
    /// credentials, and tests check which tokens a client sent.
    pub authorization: BTreeMap<String, u64>,
    /// BigQuery requests per `x-goog-user-project` header value (`""` when absent).
    pub user_project: BTreeMap<String, u64>,
}

/// Mutable counters; `jobs_by_state` is computed from the job store when read.
#[derive(Default)]
pub struct Counters {
    /// See [`Stats`]; `jobs_by_state` left empty here.
    pub stats: Stats,
    /// Creation sequence number at the last reset: jobs before it are not counted by state.
    pub reset_seq: u64,
}

impl Counters {
    /// Counts one request of `method` with its credentials headers.
    pub fn request(&mut self, method: &str, authorization: &str, user_project: &str) {
        *self.stats.requests.entry(method.to_string()).or_default() += 1;
        *self
            .stats
            .authorization
            .entry(authorization.to_string())
            .or_default() += 1;
        *self
            .stats
            .user_project
            .entry(user_project.to_string())
            .or_default() += 1;
    }

    /// Counts a job call of `method` that named no location.
    pub fn job_call_without_location(&mut self, method: &str) {
        *self
            .stats
            .job_calls_without_location
            .entry(method.to_string())
            .or_default() += 1;
    }

    /// Counts one injected fault of `kind`.
    pub fn fault(&mut self, kind: &str) {
        *self
            .stats
            .faults_injected
            .entry(kind.to_string())
            .or_default() += 1;
    }
}
