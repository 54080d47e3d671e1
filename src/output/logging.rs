//! Human-readable logs on stderr, with a gate that closes for good once
//! `run_finished` is about to be written.
//!
//! Orchestrators merge stdout and stderr and read the last line as the run's
//! summary, so nothing may follow `run_finished` — not even a dependency's
//! trace line from a connection pool torn down while the runtime shuts down
//! (hyper logs "pool closed" at TRACE). Closing the gate drops every later
//! log record instead of racing the shutdown.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::fmt::writer::OptionalWriter;

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Log targets that print secrets, always off.
const NO_SECRETS: &str = "yup_oauth2=off";

/// Set up logging on stderr. `RUST_LOG` wins over the flags.
/// With a progress bar, per-partition lines are left to `-v`: the bar says it.
pub fn init(verbose: u8, quiet: bool, env: &dyn Fn(&str) -> Option<String>) {
    use tracing_subscriber::EnvFilter;
    let bar = crate::output::progress::wanted(env, quiet);
    let default = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) if bar => "warn",
        (false, 0) => "info",
        (false, 1) => "bq_backfill=debug,info",
        (false, _) => "trace",
    };
    let filter = env("RUST_LOG")
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default))
        // yup-oauth2 logs token requests and answers (JWT assertions,
        // access tokens) at DEBUG: never shown, whatever RUST_LOG says.
        .add_directive(NO_SECRETS.parse().expect("a valid directive"));
    let no_color =
        env("NO_COLOR").is_some_and(|v| !v.is_empty()) || env("TERM").as_deref() == Some("dumb");
    let ansi = !no_color && io::IsTerminal::is_terminal(&io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(gated_stderr)
        .with_ansi(ansi)
        .with_target(false)
        // On a failed write tracing-subscriber would report it with
        // `eprintln!`, which panics when stderr is a closed pipe (`| tee`
        // killed by Ctrl-C). A lost log line must never end the run.
        .log_internal_errors(false)
        .try_init();
}

/// Stop all further log output (idempotent) and flush what was written.
pub fn close() {
    CLOSED.store(true, Ordering::SeqCst);
    let _ = io::Write::flush(&mut io::stderr());
}

/// Whether [`close`] has been called.
pub fn is_closed() -> bool {
    CLOSED.load(Ordering::SeqCst)
}

fn gated_stderr() -> OptionalWriter<EventLine> {
    if is_closed() {
        OptionalWriter::none()
    } else {
        OptionalWriter::some(EventLine(Vec::new()))
    }
}

/// One log event, written to stderr in one piece when dropped — above the
/// progress bar if one is drawn.
struct EventLine(Vec<u8>);

impl io::Write for EventLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for EventLine {
    fn drop(&mut self) {
        if !self.0.is_empty() && !is_closed() {
            crate::output::progress::suspended(|| {
                let _ = io::Write::write_all(&mut io::stderr(), &self.0);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_turns_stderr_into_a_sink_once_closed() {
        // The only test touching the global gate, so no other test races it.
        assert!(matches!(
            gated_stderr(),
            tracing_subscriber::fmt::writer::EitherWriter::A(_)
        ));
        close();
        assert!(is_closed());
        assert!(matches!(
            gated_stderr(),
            tracing_subscriber::fmt::writer::EitherWriter::B(_)
        ));
    }
}
