//! The progress bar of `run` at a terminal: done/total, the current
//! partition, elapsed time, ETA and rate, on stderr (indicatif). Only when
//! stderr is a terminal and `TERM` is not `dumb`; without colour under
//! `NO_COLOR`. Log lines are printed above the bar (`logging.rs` writes
//! through [`suspended`]), and the run ends with a short human summary.

use std::io::{self, IsTerminal, Write};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::output::events::{Event, EventRecord, EventSink};

/// The active bar, shared with the log writer.
static BAR: OnceLock<Mutex<Option<ProgressBar>>> = OnceLock::new();

fn slot() -> &'static Mutex<Option<ProgressBar>> {
    BAR.get_or_init(|| Mutex::new(None))
}

/// Whether a bar should be drawn: stderr is a terminal and `TERM` is not dumb.
pub fn wanted(env: &dyn Fn(&str) -> Option<String>, quiet: bool) -> bool {
    !quiet && io::stderr().is_terminal() && env("TERM").as_deref() != Some("dumb")
}

/// Runs `f` with the bar hidden, so a log line does not tear it.
pub fn suspended<R>(f: impl FnOnce() -> R) -> R {
    let bar = slot().lock().unwrap_or_else(|e| e.into_inner()).clone();
    match bar {
        Some(bar) => bar.suspend(f),
        None => f(),
    }
}

/// An [`EventSink`] that drives the bar.
pub struct ProgressSink {
    bar: ProgressBar,
    colour: bool,
}

impl ProgressSink {
    pub fn new(colour: bool) -> ProgressSink {
        // Hidden until the plan is known (`run_started`).
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden());
        let template = if colour {
            "{spinner:.cyan} {elapsed_precise} [{bar:30.green/white}] {pos}/{len} {msg:.bold} · {rate} · ETA {eta}"
        } else {
            "{spinner} {elapsed_precise} [{bar:30}] {pos}/{len} {msg} · {rate} · ETA {eta}"
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.1}/s", s.per_sec());
            })
            .progress_chars("=> ");
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        *slot().lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
        ProgressSink { bar, colour }
    }
}

impl EventSink for ProgressSink {
    fn emit(&mut self, record: &EventRecord) -> io::Result<()> {
        match &record.event {
            Event::RunStarted {
                partitions_to_run,
                partitions_to_skip,
                ..
            } => {
                self.bar.set_length(*partitions_to_run as u64);
                self.bar
                    .set_draw_target(ProgressDrawTarget::stderr_with_hz(10));
                if *partitions_to_skip > 0 {
                    self.bar.println(format!(
                        "{partitions_to_skip} partitions already done: skipped"
                    ));
                }
            }
            Event::PartitionStarted { partition, .. } => self.bar.set_message(partition.clone()),
            Event::PartitionSucceeded { .. } | Event::PartitionCancelled { .. } => self.bar.inc(1),
            Event::PartitionFailed {
                will_retry: false, ..
            } => self.bar.inc(1),
            Event::RunFinished { .. } => {
                self.bar.finish_and_clear();
                *slot().lock().unwrap_or_else(|e| e.into_inner()) = None;
                let _ = writeln!(io::stderr(), "{}", summary(&record.event, self.colour));
            }
            _ => {}
        }
        Ok(())
    }
}

/// One line for people: what the run did, how long it took.
pub fn summary(event: &Event, colour: bool) -> String {
    let Event::RunFinished {
        status,
        succeeded,
        failed,
        skipped,
        cancelled,
        pending,
        duration_seconds,
        error,
        ..
    } = event
    else {
        return String::new();
    };
    let ok = *failed == 0 && error.is_none() && *pending == 0 && *cancelled == 0;
    let mark = match (ok, colour) {
        (true, true) => "\x1b[32m✔\x1b[0m",
        (true, false) => "✔",
        (false, true) => "\x1b[31m✘\x1b[0m",
        (false, false) => "✘",
    };
    let rate = if *duration_seconds > 0.0 {
        *succeeded as f64 / duration_seconds
    } else {
        0.0
    };
    let mut parts = vec![format!("{succeeded} succeeded")];
    for (n, what) in [
        (*failed, "failed"),
        (*skipped, "skipped"),
        (*cancelled, "cancelled"),
        (*pending, "pending"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    let status = serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    format!(
        "{mark} {status}: {} in {:.1} s ({rate:.1} partitions/s)",
        parts.join(", "),
        duration_seconds
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::events::RunStatus;

    fn finished(failed: usize, pending: usize) -> Event {
        Event::RunFinished {
            status: if failed > 0 {
                RunStatus::Failed
            } else {
                RunStatus::Succeeded
            },
            exit_code: 0,
            partitions_total: 366,
            succeeded: 360 - failed - pending,
            failed,
            skipped: 6,
            cancelled: 0,
            pending,
            duration_seconds: 36.0,
            error: None,
        }
    }

    #[test]
    fn the_summary_says_what_happened_in_one_line() {
        assert_eq!(
            summary(&finished(0, 0), false),
            "✔ succeeded: 360 succeeded, 6 skipped in 36.0 s (10.0 partitions/s)"
        );
        assert_eq!(
            summary(&finished(2, 0), false),
            "✘ failed: 358 succeeded, 2 failed, 6 skipped in 36.0 s (9.9 partitions/s)"
        );
        assert!(summary(&finished(0, 0), true).contains("\x1b[32m✔"));
    }
}
