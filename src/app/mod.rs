//! The application layer: commands, logging, and turning every outcome into
//! an exit code — with `run_finished` as the very last line of output.

pub mod schema;

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::Utc;
use serde_json::json;

use crate::bq::{BigQuery, ClientConfig, Endpoint};
use crate::engine::cancel::{self, Cancel};
use crate::engine::checkpoint::Checkpoints;
use crate::engine::failure::RunFailure;
use crate::engine::preflight;
use crate::engine::runner::{self, RunContext, RunOutcome};
use crate::exit::{self, ErrorKind};
use crate::output::events::{Emitter, Event, EventSink, JsonLinesSink, RunError, RunStatus};
use crate::output::orchestrators::Orchestrators;
use crate::planning::decision::{self, Decision};
use crate::planning::fingerprint;
use crate::planning::partition;
use crate::task::cli::Command;
use crate::task::settings::Settings;

/// The whole program: arguments in, exit code out.
pub fn main<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match crate::task::cli::parse_args(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
        }
    };
    let env = |k: &str| std::env::var(k).ok();
    crate::output::logging::init(cli.verbose, cli.quiet, &env);
    let (stdout, stderr) = (io::stdout(), io::stderr());
    let command = cli.command();
    match command {
        Command::Schema { name } => {
            return crate::app::schema::schema_command(
                name.as_deref(),
                &mut stdout.lock(),
                &mut stderr.lock(),
            );
        }
        Command::Validate => {
            return crate::task::load::validate_command(
                &cli,
                io::stdin(),
                &env,
                &mut stdout.lock(),
                &mut stderr.lock(),
            );
        }
        Command::Run | Command::Plan | Command::Status => {}
    }
    let orchestrators = if command == Command::Run {
        match Orchestrators::detect(&env) {
            Ok(o) => o,
            Err(e) => {
                let _ = writeln!(stderr.lock(), "error: {e}\n  hint: {}", e.hint);
                finish_invalid(
                    ErrorKind::Config,
                    &e.message,
                    Some(&e.hint),
                    Box::new(io::stdout()),
                );
                return ErrorKind::Config.code();
            }
        }
    } else {
        Orchestrators::default()
    };
    let external = orchestrators.external_range();
    let loaded = crate::task::load::load_settings_with(&cli, io::stdin(), &env, external.as_ref());
    let settings = match loaded {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(stderr.lock(), "error: {e}");
            let _ = stderr.lock().flush();
            if command == Command::Run {
                let first = e.to_json().get(0).cloned().unwrap_or_default();
                let message = first["message"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| e.to_string());
                let field = first["field"].as_str().unwrap_or("");
                let message = if field.is_empty() || field == "$" {
                    message
                } else {
                    format!("{field}: {message}")
                };
                finish_invalid(
                    e.kind(),
                    &message,
                    first["hint"].as_str(),
                    Box::new(io::stdout()),
                );
            }
            return e.exit_code();
        }
    };
    let api = ApiOptions {
        api_endpoint: cli.api_endpoint.clone(),
        force_unlock: cli.force_unlock,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(stderr.lock(), "error: cannot start the async runtime: {e}");
            return exit::INTERNAL;
        }
    };
    let code = runtime.block_on(async {
        match command {
            Command::Run => {
                run_command(settings, &api, &env, orchestrators, Box::new(io::stdout())).await
            }
            Command::Plan | Command::Status => {
                let mut out = io::stdout().lock();
                let res = if command == Command::Plan {
                    plan_command(settings, &api, &env, &mut out).await
                } else {
                    status_command(settings, &api, &env, &mut out).await
                };
                res.unwrap_or_else(|f| {
                    let e = f.to_run_error();
                    let _ = writeln!(io::stderr(), "error: {}", e.message);
                    if let Some(h) = e.hint {
                        let _ = writeln!(io::stderr(), "  hint: {h}");
                    }
                    f.exit_code()
                })
            }
            Command::Schema { .. } | Command::Validate => unreachable!("handled above"),
        }
    });
    // Nothing may print after run_finished: stop background tasks now.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    code
}

/// Options of the commands that talk to BigQuery.
#[derive(Debug, Clone, Default)]
pub struct ApiOptions {
    pub api_endpoint: Option<String>,
    pub force_unlock: bool,
}

/// A run ID: sortable by time, unique, valid as a BigQuery label value.
pub fn new_run_id() -> String {
    let rand: u32 = rand::random();
    format!("{}-{:08x}", Utc::now().format("%Y%m%dt%H%M%S"), rand)
}

async fn connect(
    settings: &Settings,
    api: &ApiOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BigQuery, RunFailure> {
    let endpoint = Endpoint::from_env(api.api_endpoint.as_deref(), env);
    let cfg = ClientConfig {
        endpoint,
        project: settings.project.clone(),
        location: settings.location.clone(),
        retry: settings.retry,
        request_timeout: std::time::Duration::from_secs(60),
    };
    Ok(BigQuery::connect(cfg).await?)
}

/// `run`: the backfill. Writes events to `stdout`; returns the exit code.
pub async fn run_command(
    settings: Settings,
    api: &ApiOptions,
    env: &dyn Fn(&str) -> Option<String>,
    orchestrators: Orchestrators,
    stdout: Box<dyn Write + Send>,
) -> i32 {
    let started = Instant::now();
    let run_id = new_run_id();
    // The orchestrators' sinks first: whatever they write for `run_finished`
    // (Pipes `closed`, annotations) comes before the line itself.
    let mut sinks: Vec<Box<dyn EventSink>> = orchestrators.sinks(&settings);
    sinks.push(Box::new(JsonLinesSink::new(stdout)));
    let emitter = Emitter::new(&run_id, &settings.job, sinks);
    tracing::info!(run_id = %run_id, job = %settings.job, destination = %settings.destination, "starting");

    let cancel = Cancel::new();
    if let Err(e) = cancel::install_signal_handlers(cancel.clone()) {
        tracing::warn!("could not install signal handlers: {e}");
    }
    let total = partition::plan(&settings.partitions).len();
    let outcome = match connect(&settings, api, env).await {
        Err(f) => RunOutcome::not_started(f.run_status(), f.exit_code(), total, f.to_run_error()),
        Ok(bq) => {
            let current: Arc<Mutex<Option<String>>> = Arc::default();
            let observer_emitter = emitter.clone();
            let observer_current = current.clone();
            let bq = bq.with_retry_observer(Arc::new(move |n: &crate::bq::retry::RetryNotice| {
                tracing::warn!(
                    operation = n.operation,
                    attempt = n.attempt,
                    "transient failure ({}); retrying in {:.2?}",
                    n.reason,
                    n.delay
                );
                observer_emitter.emit(Event::RetryScheduled {
                    partition: observer_current
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone(),
                    operation: n.operation.to_string(),
                    attempt: n.attempt,
                    reason: n.reason.clone(),
                    delay_seconds: n.delay.as_secs_f64(),
                    next_at: n.next_at,
                });
            }));
            let ctx = RunContext {
                settings,
                bq,
                emitter: emitter.clone(),
                cancel: cancel.clone(),
                run_id: run_id.clone(),
                force_unlock: api.force_unlock,
                current_partition: current,
            };
            run_guarded(ctx, total).await
        }
    };
    finish(&emitter, &outcome, started);
    outcome.exit_code
}

/// Run the loop in its own task, so that a panic (a bug) still ends with
/// `run_finished` and exit 70 instead of killing the process with 101. The
/// audit log keeps an in-flight partition RUNNING and the lease expires on
/// its own, so the next run adopts the work as after a kill.
async fn run_guarded(ctx: RunContext, total: usize) -> RunOutcome {
    let task = tokio::spawn(async move { runner::run(&ctx).await });
    match task.await {
        Ok(outcome) => outcome,
        Err(e) => {
            let what = match e.try_into_panic() {
                Ok(p) => p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into()),
                Err(e) => e.to_string(),
            };
            let error = RunError::new(
                ErrorKind::Internal,
                format!("internal error: {what}"),
                Some(
                    "this is a bug in bq-backfill: please report it with the log. \
                     The audit log keeps any in-flight partition RUNNING; the next run adopts it"
                        .into(),
                ),
            );
            RunOutcome::not_started(RunStatus::Error, ErrorKind::Internal.code(), total, error)
        }
    }
}

/// Log the outcome, then emit `run_finished` as the last line.
fn finish(emitter: &Emitter, o: &RunOutcome, started: Instant) {
    match &o.error {
        Some(e) => {
            tracing::error!("{}", e.message);
            if let Some(h) = &e.hint {
                tracing::error!("hint: {h}");
            }
        }
        None => tracing::info!(
            status = ?o.status,
            succeeded = o.succeeded,
            skipped = o.skipped,
            failed = o.failed,
            pending = o.pending,
            "finished in {:.1?}",
            started.elapsed()
        ),
    }
    crate::output::logging::close();
    emitter.emit(o.finished_event(started.elapsed()));
}

/// `run` with a descriptor that could not be loaded: the error on stderr,
/// then a `run_finished` line so the orchestrator's last line is still JSON.
pub fn finish_invalid(
    kind: ErrorKind,
    message: &str,
    hint: Option<&str>,
    stdout: Box<dyn Write + Send>,
) {
    let emitter = Emitter::new(
        &new_run_id(),
        "",
        vec![Box::new(JsonLinesSink::new(stdout))],
    );
    let error = RunError::new(kind, message.into(), hint.map(Into::into));
    let o = RunOutcome::not_started(RunStatus::Error, kind.code(), 0, error);
    crate::output::logging::close();
    emitter.emit(o.finished_event(std::time::Duration::ZERO));
}

/// Read-only access to the job's audit log (`plan`, `status`).
fn audit_reader(bq: &BigQuery, settings: &Settings) -> Checkpoints {
    Checkpoints::new(
        bq.clone(),
        settings.checkpoint_table.clone(),
        &settings.job,
        "read-only",
    )
}

/// `plan`: what a run would do with each partition, and why. Reads the
/// destination and the audit log; writes nothing (not even the audit table).
pub async fn plan_command(
    settings: Settings,
    api: &ApiOptions,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<i32, RunFailure> {
    let bq = connect(&settings, api, env).await?;
    preflight::preflight(&bq, &settings).await?;
    let cp = audit_reader(&bq, &settings);
    let states = if cp.exists().await? {
        cp.latest_states().await?
    } else {
        Default::default()
    };
    let fp = fingerprint::fingerprint(&settings);
    let plan = partition::plan(&settings.partitions);
    let (mut run, mut skip) = (0, 0);
    for p in &plan {
        let state = states.get(&p.id);
        let (action, reason) = match decision::decide(state, &fp) {
            Decision::Skip(r) => {
                skip += 1;
                ("skip", serde_json::to_value(r).unwrap_or_default())
            }
            Decision::Run(r) => {
                run += 1;
                ("run", serde_json::to_value(r).unwrap_or_default())
            }
        };
        let line = json!({
            "partition": p.id,
            "destination": settings.destination.partition(&p.id).to_string(),
            "action": action,
            "reason": reason,
            "last_status": state.map(|s| s.status.as_str()),
            "last_bq_job_id": state.and_then(|s| s.bq_job_id.clone()),
        });
        let _ = writeln!(out, "{line}");
    }
    let summary = json!({"summary": {"partitions_total": plan.len(), "to_run": run, "to_skip": skip, "fingerprint": fp}});
    let _ = writeln!(out, "{summary}");
    Ok(exit::OK)
}

/// `status`: the audit log's view of the job — one line per partition in
/// the plan, then counts per status.
pub async fn status_command(
    settings: Settings,
    api: &ApiOptions,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<i32, RunFailure> {
    let bq = connect(&settings, api, env).await?;
    let cp = audit_reader(&bq, &settings);
    if !cp.exists().await? {
        return Err(RunFailure::Config {
            message: format!(
                "audit table {} does not exist yet",
                settings.checkpoint_table
            ),
            hint: Some("it is created by the first `bq-backfill run`".into()),
        });
    }
    let states = cp.latest_states().await?;
    let fp = fingerprint::fingerprint(&settings);
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for p in partition::plan(&settings.partitions) {
        let st = states.get(&p.id);
        let status = st.map_or("PENDING", |s| s.status.as_str());
        let current = st.is_some_and(|s| s.fingerprint.as_deref() == Some(fp.as_str()));
        *counts
            .entry(if status == "SUCCEEDED" && !current {
                "STALE"
            } else {
                status
            })
            .or_default() += 1;
        let line = json!({
            "partition": p.id,
            "status": status,
            "current_fingerprint": current,
            "attempt": st.map(|s| s.attempt),
            "bq_job_id": st.and_then(|s| s.bq_job_id.clone()),
            "run_id": st.map(|s| s.run_id.clone()),
            "recorded_at": st.and_then(|s| s.recorded_at).map(|t| t.to_rfc3339()),
        });
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "{}", json!({"summary": counts}));
    Ok(exit::OK)
}
