//! `bq-emulator serve`: run the BigQuery emulator until SIGTERM/SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bq_emulator::{Config, Emulator};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bq-emulator",
    version,
    about = "A local BigQuery REST v2 emulator with real partition semantics"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the BigQuery REST API on 127.0.0.1.
    Serve {
        /// Port to listen on (0 picks a free one).
        #[arg(long, default_value_t = 9050)]
        port: u16,
        /// Persist datasets, tables, rows and jobs in this directory.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Directory that gs://bucket/path maps to (as <dir>/bucket/path) for load jobs.
        #[arg(long)]
        gcs_root: Option<PathBuf>,
        /// Time every job spends RUNNING before it executes, in milliseconds.
        #[arg(long, default_value_t = 0)]
        job_delay_ms: u64,
    },
    /// Seed the demo scenario into a running emulator over its REST API:
    /// datasets, a day-partitioned raw events table with [start, end) of
    /// synthetic events, and the empty `events_daily` destination.
    SeedDemo {
        /// Base URL of the emulator, e.g. http://127.0.0.1:9050.
        #[arg(long)]
        url: String,
        /// First day of events (YYYY-MM-DD).
        #[arg(long, default_value = "2024-01-01")]
        start: chrono::NaiveDate,
        /// Day after the last day of events (exclusive).
        #[arg(long, default_value = "2025-01-01")]
        end: chrono::NaiveDate,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let (port, data, gcs_root, job_delay_ms) = match Cli::parse().command {
        Command::Serve {
            port,
            data,
            gcs_root,
            job_delay_ms,
        } => (port, data, gcs_root, job_delay_ms),
        Command::SeedDemo { url, start, end } => return seed(&url, start, end).await,
    };
    let config = Config {
        port,
        data_dir: data,
        gcs_root,
        job_delay: Duration::from_millis(job_delay_ms),
    };
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stderr)]
async fn seed(url: &str, start: chrono::NaiveDate, end: chrono::NaiveDate) -> ExitCode {
    match bq_emulator::demo::seed_over_http(url, start, end).await {
        Ok(n) => {
            eprintln!(
                "seeded {n} raw events from {start} to {end} (exclusive) into demo-project.raw.events"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: seeding failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<(), bq_emulator::EmulatorError> {
    let emulator = Emulator::start(config).await?;
    // Scripts wait for this exact line before talking to the emulator.
    #[allow(clippy::print_stderr)]
    {
        eprintln!("listening on {}", emulator.host());
    }
    wait_for_signal().await;
    emulator.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
