//! The emulator's own control API under `/_emulator/` (documented in the crate README).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::parse_body;
use crate::error::ApiError;
use crate::faults::JobMatcher;
use crate::state::AppState;
use crate::util::lock;

type St = State<Arc<AppState>>;
type Res = Result<Json<Value>, ApiError>;

/// Routes relative to `/_emulator`.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/stats", get(stats))
        .route("/reset", post(reset))
        .route("/jobs", get(jobs))
        .route("/config", get(get_config).post(set_config))
        .route("/faults", get(faults))
        .route("/faults/clear", post(faults_clear))
        .route("/faults/fail", post(fault_fail))
        .route(
            "/faults/insert-after-create",
            post(fault_insert_after_create),
        )
        .route("/faults/job-error", post(fault_job_error))
        .route("/faults/delay", post(fault_delay))
        .route("/faults/drop", post(fault_drop))
        .route("/faults/random", post(fault_random))
}

fn body_of<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_value(parse_body(body)?)
        .map_err(|e| ApiError::invalid(format!("invalid control request: {e}")))
}

fn one() -> u32 {
    1
}

async fn stats(State(st): St) -> Res {
    Ok(Json(serde_json::to_value(st.stats()).unwrap_or_default()))
}

async fn reset(State(st): St) -> Res {
    st.reset_stats();
    Ok(Json(json!({"ok": true})))
}

async fn jobs(State(st): St) -> Res {
    Ok(Json(json!({"jobs": job_summaries(&st)})))
}

/// Every job, oldest first, as `GET /_emulator/jobs` lists them.
pub fn job_summaries(st: &AppState) -> Vec<Value> {
    let jobs = lock(&st.jobs);
    let mut list: Vec<_> = jobs
        .jobs
        .values()
        .map(|j| (j.data.seq, j.data.summary()))
        .collect();
    list.sort_by_key(|(seq, _)| *seq);
    list.into_iter().map(|(_, v)| v).collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigReq {
    job_delay_ms: Option<u64>,
}

async fn get_config(State(st): St) -> Res {
    Ok(Json(
        json!({"jobDelayMs": st.job_delay_ms.load(Ordering::Relaxed), "gcsRoot": st.gcs_root}),
    ))
}

async fn set_config(State(st): St, body: Bytes) -> Res {
    let req: ConfigReq = body_of(&body)?;
    if let Some(ms) = req.job_delay_ms {
        st.job_delay_ms.store(ms, Ordering::Relaxed);
    }
    get_config(State(st)).await
}

async fn faults(State(st): St) -> Res {
    Ok(Json(st.faults.describe()))
}

async fn faults_clear(State(st): St) -> Res {
    st.faults.clear();
    Ok(Json(json!({"ok": true})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FailReq {
    method: String,
    #[serde(default = "one")]
    count: u32,
    status: Option<u16>,
    reason: Option<String>,
    message: Option<String>,
}

async fn fault_fail(State(st): St, body: Bytes) -> Res {
    let req: FailReq = body_of(&body)?;
    let reason = req.reason.unwrap_or_else(|| "backendError".into());
    let status = req
        .status
        .unwrap_or_else(|| crate::error::status_for_reason(&reason));
    let message = req
        .message
        .unwrap_or_else(|| format!("injected fault: {reason}"));
    st.faults
        .fail_next_with_message(&req.method, req.count, status, &reason, &message);
    Ok(Json(json!({"ok": true})))
}

#[derive(Deserialize)]
struct CountReq {
    #[serde(default = "one")]
    count: u32,
}

async fn fault_insert_after_create(State(st): St, body: Bytes) -> Res {
    let req: CountReq = body_of(&body)?;
    st.faults.fail_insert_after_create(req.count);
    Ok(Json(json!({"ok": true})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobErrorReq {
    id_prefix: Option<String>,
    id_contains: Option<String>,
    next: Option<u32>,
    reason: String,
    message: Option<String>,
}

async fn fault_job_error(State(st): St, body: Bytes) -> Res {
    let req: JobErrorReq = body_of(&body)?;
    let matcher = match (req.id_prefix, req.id_contains, req.next) {
        (Some(p), None, None) => JobMatcher::IdPrefix(p),
        (None, Some(s), None) => JobMatcher::IdContains(s),
        (None, None, Some(n)) => JobMatcher::Next(n),
        _ => {
            return Err(ApiError::invalid(
                "give exactly one of idPrefix, idContains, next",
            ));
        }
    };
    let message = req
        .message
        .unwrap_or_else(|| format!("injected job failure: {}", req.reason));
    st.faults.fail_jobs(matcher, &req.reason, &message);
    Ok(Json(json!({"ok": true})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DelayReq {
    method: String,
    #[serde(default = "one")]
    count: u32,
    delay_ms: u64,
    #[serde(default)]
    after_handling: bool,
}

async fn fault_delay(State(st): St, body: Bytes) -> Res {
    let req: DelayReq = body_of(&body)?;
    let d = Duration::from_millis(req.delay_ms);
    if req.after_handling {
        st.faults.delay_after(&req.method, req.count, d);
    } else {
        st.faults.delay(&req.method, req.count, d);
    }
    Ok(Json(json!({"ok": true})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DropReq {
    method: String,
    #[serde(default = "one")]
    count: u32,
    #[serde(default)]
    after_handling: bool,
}

async fn fault_drop(State(st): St, body: Bytes) -> Res {
    let req: DropReq = body_of(&body)?;
    if req.after_handling {
        st.faults.drop_after(&req.method, req.count);
    } else {
        st.faults.drop_next(&req.method, req.count);
    }
    Ok(Json(json!({"ok": true})))
}

#[derive(Deserialize)]
struct RandomReq {
    rate: f64,
    #[serde(default)]
    seed: u64,
    methods: Option<Vec<String>>,
}

async fn fault_random(State(st): St, body: Bytes) -> Res {
    let req: RandomReq = body_of(&body)?;
    match req.methods {
        Some(ms) => {
            let refs: Vec<&str> = ms.iter().map(String::as_str).collect();
            st.faults
                .transient_failure_rate_for(&refs, req.rate, req.seed);
        }
        None => st.faults.transient_failure_rate(req.rate, req.seed),
    }
    Ok(Json(json!({"ok": true})))
}
