//! The application layer: commands, logging, and turning every outcome into
//! an exit code — with `run_finished` as the very last line of output.

pub mod inspect;
pub mod schema;

use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::Utc;

use crate::bq::{BigQuery, ClientConfig, Endpoint};
use crate::engine::cancel::{self, Cancel};
use crate::engine::failure::RunFailure;
use crate::engine::runner::{self, RunContext, RunOutcome};
use crate::exit::{self, ErrorKind};
use crate::output::events::{Emitter, Event, EventSink, JsonLinesSink, RunError, RunStatus};
use crate::output::orchestrators::Orchestrators;
use crate::output::progress::ProgressSink;
use crate::planning::partition;
use crate::task::cli::Command;
use crate::task::settings::Settings;

/// The whole program: arguments in, exit code out. Stages: the command
/// line; the offline commands; what `run` finds in its environment; the
/// descriptor; then the commands that talk to BigQuery, on a runtime.
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
    let command = cli.command();
    if let Some(code) = offline_command(&cli, &command, &env) {
        return code;
    }
    let orchestrators = match detect_orchestrators(&command, &env) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let external = orchestrators.external_range();
    let loaded = crate::task::load::load_settings_with(&cli, io::stdin(), &env, external.as_ref());
    let settings = match loaded {
        Ok(s) => s,
        Err(e) => return refuse_descriptor(&command, &e),
    };
    let api = ApiOptions {
        api_endpoint: cli.api_endpoint.clone(),
        force_unlock: cli.force_unlock,
        progress_bar: crate::output::progress::wanted(&env, cli.quiet),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(io::stderr(), "error: cannot start the async runtime: {e}");
            return exit::INTERNAL;
        }
    };
    let code = runtime.block_on(async {
        match command {
            Command::Run => {
                run_command(settings, &api, &env, orchestrators, Box::new(io::stdout())).await
            }
            other => inspect(other, settings, &api, &env).await,
        }
    });
    // Nothing may print after run_finished: stop background tasks now.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    code
}

/// `schema` and `validate` (without `--dry-run`): no BigQuery, no runtime.
/// `None` for the other commands.
fn offline_command(
    cli: &crate::task::cli::Cli,
    command: &Command,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<i32> {
    let (stdout, stderr) = (io::stdout(), io::stderr());
    match command {
        Command::Schema { name } => Some(crate::app::schema::schema_command(
            name.as_deref(),
            &mut stdout.lock(),
            &mut stderr.lock(),
        )),
        Command::Validate { dry_run: false } => Some(crate::task::load::validate_command(
            cli,
            io::stdin(),
            env,
            &mut stdout.lock(),
            &mut stderr.lock(),
        )),
        Command::Run
        | Command::Plan { .. }
        | Command::Status { .. }
        | Command::Validate { dry_run: true } => None,
    }
}

/// For `run`: Dagster Pipes or GitHub Actions, from the environment, before
/// the descriptor (Pipes may select the range). A Pipes context that cannot
/// be read ends the run here: `Err` is its exit code, after `run_finished`.
fn detect_orchestrators(
    command: &Command,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Orchestrators, i32> {
    if *command != Command::Run {
        return Ok(Orchestrators::default());
    }
    Orchestrators::detect(env).map_err(|e| {
        let _ = writeln!(io::stderr(), "error: {e}\n  hint: {}", e.hint);
        finish_invalid(
            ErrorKind::Config,
            &e.message,
            Some(&e.hint),
            Box::new(io::stdout()),
        );
        ErrorKind::Config.code()
    })
}

/// A descriptor that cannot be loaded: the error on stderr; `validate
/// --dry-run` prints its JSON line, `run` its `run_finished` (naming the
/// field). Returns the exit code.
fn refuse_descriptor(command: &Command, e: &crate::task::load::LoadError) -> i32 {
    let _ = writeln!(io::stderr(), "error: {e}");
    let _ = io::stderr().flush();
    if matches!(command, Command::Validate { .. }) {
        let line =
            serde_json::json!({"valid": false, "exit_code": e.exit_code(), "errors": e.to_json()});
        let _ = writeln!(io::stdout(), "{line}");
    }
    if *command == Command::Run {
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
    e.exit_code()
}

/// Options of the commands that talk to BigQuery.
#[derive(Debug, Clone, Default)]
pub struct ApiOptions {
    pub api_endpoint: Option<String>,
    pub force_unlock: bool,
    /// Draw a progress bar on stderr (a terminal, not `-q`, not `TERM=dumb`).
    pub progress_bar: bool,
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
    // (Pipes `closed`, annotations) comes before the line itself; then the
    // progress bar, whose summary line must precede it too.
    let mut sinks: Vec<Box<dyn EventSink>> = orchestrators.sinks(&settings);
    if api.progress_bar {
        sinks.push(Box::new(ProgressSink::new(colour_allowed(env))));
    }
    let beside_bar = api.progress_bar && io::stdout().is_terminal();
    sinks.push(Box::new(JsonLinesSink::new(stdout).beside_bar(beside_bar)));
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
    finish(&emitter, &outcome, started, !api.progress_bar);
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

/// Log the outcome, then emit `run_finished` as the last line. With a
/// progress bar, its own summary line replaces the log's.
fn finish(emitter: &Emitter, o: &RunOutcome, started: Instant, log_summary: bool) {
    match &o.error {
        Some(e) => {
            tracing::error!("{}", e.message);
            if let Some(h) = &e.hint {
                tracing::error!("hint: {h}");
            }
        }
        None if !log_summary => {}
        None => tracing::info!(
            "{}",
            crate::output::progress::summary(&o.finished_event(started.elapsed()), false)
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

/// `plan` or `status`: output on stdout, an error on stderr.
async fn inspect(
    command: Command,
    settings: Settings,
    api: &ApiOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> i32 {
    let mut out = io::stdout().lock();
    let result = match connect(&settings, api, env).await {
        Err(f) => Err(f),
        Ok(bq) => match command {
            Command::Plan {
                format,
                estimate,
                price_per_tib,
            } => {
                let opts = inspect::PlanOptions {
                    format,
                    estimate,
                    price_per_tib,
                };
                inspect::plan_command(settings, bq, opts, &mut out).await
            }
            Command::Status { format } => {
                let colour = colour_allowed(env) && io::IsTerminal::is_terminal(&io::stdout());
                inspect::status_command(settings, bq, format, colour, &mut out).await
            }
            Command::Validate { .. } => inspect::validate_dry_run(settings, bq, &mut out).await,
            _ => unreachable!("run, schema and validate are handled elsewhere"),
        },
    };
    result.unwrap_or_else(|f| {
        let e = f.to_run_error();
        let _ = writeln!(io::stderr(), "error: {}", e.message);
        if let Some(h) = e.hint {
            let _ = writeln!(io::stderr(), "  hint: {h}");
        }
        f.exit_code()
    })
}

/// `NO_COLOR` (set and non-empty) and `TERM=dumb` turn colour off.
pub fn colour_allowed(env: &dyn Fn(&str) -> Option<String>) -> bool {
    env("NO_COLOR").is_none_or(|v| v.is_empty()) && env("TERM").as_deref() != Some("dumb")
}
