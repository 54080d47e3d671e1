//! GitHub Actions, when `GITHUB_ACTIONS=true`: each partition's log lines in
//! a `::group::` on stderr, an `::error` annotation per failed partition, a
//! Markdown step summary appended to `$GITHUB_STEP_SUMMARY`, and the run's
//! outcome as step outputs in `$GITHUB_OUTPUT`.
//!
//! All of it is written when `run_finished` arrives and before that line is
//! printed, so `run_finished` stays the last line of stdout+stderr.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::PathBuf;

use crate::output::calendar::RunCalendar;
use crate::output::events::{Event, EventRecord, EventSink, RunStatus};

/// GitHub shows at most this many error annotations per step.
pub const MAX_ANNOTATIONS: usize = 10;

/// Where the runner wants the files; `None` when not in GitHub Actions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GithubEnv {
    pub step_summary: Option<PathBuf>,
    pub output: Option<PathBuf>,
}

impl GithubEnv {
    pub fn detect(env: &dyn Fn(&str) -> Option<String>) -> Option<GithubEnv> {
        if env("GITHUB_ACTIONS").as_deref() != Some("true") {
            return None;
        }
        let path = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        Some(GithubEnv {
            step_summary: path("GITHUB_STEP_SUMMARY"),
            output: path("GITHUB_OUTPUT"),
        })
    }
}

/// A partition that failed for good in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedPartition {
    pub partition: String,
    pub attempt: u32,
    pub reason: String,
    pub message: String,
    pub bq_job_id: Option<String>,
}

/// The run's final tally: what the summary and the outputs are made of.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub job: String,
    pub run_id: String,
    pub destination: String,
    pub status: String,
    pub exit_code: i32,
    pub total: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub skipped: usize,
    pub cancelled: usize,
    pub pending: usize,
    pub duration_seconds: f64,
    /// Why the run stopped early, if it did.
    pub error: Option<String>,
    pub failures: Vec<FailedPartition>,
}

/// Escaping for a workflow command's message.
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escaping for a workflow command's property value (`title=...`).
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// The `::error` lines for the failed partitions. GitHub shows 10 per step,
/// so past 10 the tenth line says how many more there are.
pub fn annotations(t: &Tally) -> Vec<String> {
    let f = &t.failures;
    let shown = if f.len() > MAX_ANNOTATIONS {
        MAX_ANNOTATIONS - 1
    } else {
        f.len()
    };
    let mut lines: Vec<String> = f[..shown]
        .iter()
        .map(|p| {
            let title = format!("{}: partition {} failed", t.job, p.partition);
            let msg = format!("{} (attempt {}): {}", p.reason, p.attempt, p.message);
            format!(
                "::error title={}::{}",
                escape_property(&title),
                escape_data(&msg)
            )
        })
        .collect();
    if f.len() > shown {
        let more = f.len() - shown;
        let title = format!("{}: {more} more partitions failed", t.job);
        let msg = format!(
            "and {more} more failed partitions: see the step summary or `bq-backfill status`"
        );
        lines.push(format!(
            "::error title={}::{}",
            escape_property(&title),
            escape_data(&msg)
        ));
    }
    if f.is_empty()
        && let Some(e) = &t.error
    {
        let title = format!("{}: bq-backfill {}", t.job, t.status);
        lines.push(format!(
            "::error title={}::{}",
            escape_property(&title),
            escape_data(e)
        ));
    }
    lines
}

/// A table cell: no line breaks, no column breaks.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\r', '\n'], " ")
}

/// The step summary: totals, duration, failed partitions with their errors,
/// then `extra` Markdown sections (e.g. the calendar) in order.
pub fn step_summary(t: &Tally, extra: &[String]) -> String {
    let icon = if t.status == "succeeded" {
        "✅"
    } else {
        "❌"
    };
    let mut md = format!(
        "## {icon} bq-backfill `{}`: {}\n\n`{}` · run `{}` · exit {} · {:.1} s\n\n",
        t.job, t.status, t.destination, t.run_id, t.exit_code, t.duration_seconds
    );
    md.push_str("| total | succeeded | failed | skipped | cancelled | pending |\n|---:|---:|---:|---:|---:|---:|\n");
    md.push_str(&format!(
        "| {} | {} | {} | {} | {} | {} |\n\n",
        t.total, t.succeeded, t.failed, t.skipped, t.cancelled, t.pending
    ));
    if let Some(e) = &t.error {
        md.push_str(&format!("**Error:** {}\n\n", cell(e)));
    }
    if !t.failures.is_empty() {
        md.push_str("### Failed partitions\n\n| partition | attempt | reason | error | BigQuery job |\n|---|---:|---|---|---|\n");
        for f in &t.failures {
            md.push_str(&format!(
                "| `{}` | {} | `{}` | {} | {} |\n",
                f.partition,
                f.attempt,
                cell(&f.reason),
                cell(&f.message),
                f.bq_job_id
                    .as_deref()
                    .map(|j| format!("`{j}`"))
                    .unwrap_or_default()
            ));
        }
        md.push('\n');
    }
    for section in extra {
        md.push_str(section.trim_end());
        md.push_str("\n\n");
    }
    md
}

/// The step outputs, one `name=value` line each.
pub fn outputs(t: &Tally) -> String {
    format!(
        "status={}\nexit_code={}\nsucceeded={}\nfailed={}\nskipped={}\npending={}\nrun_id={}\n",
        t.status, t.exit_code, t.succeeded, t.failed, t.skipped, t.pending, t.run_id
    )
}

/// Writes the GitHub Actions side of a run.
pub struct GithubSink {
    env: GithubEnv,
    tally: Tally,
    calendar: RunCalendar,
    group_open: bool,
    err: Box<dyn Write + Send>,
}

impl GithubSink {
    pub fn new(env: GithubEnv, calendar: RunCalendar, err: Box<dyn Write + Send>) -> GithubSink {
        GithubSink {
            env,
            tally: Tally::default(),
            calendar,
            group_open: false,
            err,
        }
    }

    fn end_group(&mut self) -> io::Result<()> {
        if std::mem::take(&mut self.group_open) {
            writeln!(self.err, "::endgroup::")?;
            self.err.flush()?;
        }
        Ok(())
    }

    fn finish(&mut self, record: &EventRecord) -> io::Result<()> {
        let Event::RunFinished {
            status,
            exit_code,
            partitions_total,
            succeeded,
            failed,
            skipped,
            cancelled,
            pending,
            duration_seconds,
            error,
        } = &record.event
        else {
            return Ok(());
        };
        let t = &mut self.tally;
        t.job.clone_from(&record.job);
        t.run_id.clone_from(&record.run_id);
        t.status = status_name(*status);
        (t.exit_code, t.total, t.succeeded, t.failed) =
            (*exit_code, *partitions_total, *succeeded, *failed);
        (t.skipped, t.cancelled, t.pending, t.duration_seconds) =
            (*skipped, *cancelled, *pending, *duration_seconds);
        t.error = error.as_ref().map(|e| match &e.hint {
            Some(h) => format!("{} (hint: {h})", e.message),
            None => e.message.clone(),
        });
        self.end_group()?;
        for line in annotations(&self.tally) {
            writeln!(self.err, "{line}")?;
        }
        self.err.flush()?;
        if let Some(p) = &self.env.step_summary {
            append(p, &step_summary(&self.tally, &[self.calendar.markdown()]))?;
        }
        if let Some(p) = &self.env.output {
            append(p, &outputs(&self.tally))?;
        }
        Ok(())
    }
}

fn status_name(s: RunStatus) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn append(path: &PathBuf, text: &str) -> io::Result<()> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(text.as_bytes())
}

impl EventSink for GithubSink {
    fn emit(&mut self, record: &EventRecord) -> io::Result<()> {
        self.calendar.observe(&record.event);
        match &record.event {
            Event::RunStarted { destination, .. } => {
                self.tally.destination.clone_from(destination);
                Ok(())
            }
            Event::PartitionStarted {
                partition, attempt, ..
            } => {
                self.end_group()?;
                writeln!(
                    self.err,
                    "::group::partition {partition} (attempt {attempt})"
                )?;
                self.group_open = true;
                self.err.flush()
            }
            Event::PartitionSucceeded { .. } | Event::PartitionCancelled { .. } => self.end_group(),
            Event::PartitionFailed {
                partition,
                bq_job_id,
                attempt,
                reason,
                message,
                will_retry,
                ..
            } => {
                if !*will_retry {
                    self.tally.failures.retain(|f| &f.partition != partition);
                    self.tally.failures.push(FailedPartition {
                        partition: partition.clone(),
                        attempt: *attempt,
                        reason: reason.clone(),
                        message: message.clone(),
                        bq_job_id: bq_job_id.clone(),
                    });
                }
                self.end_group()
            }
            Event::RunFinished { .. } => self.finish(record),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(i: usize) -> FailedPartition {
        FailedPartition {
            partition: format!("202401{i:02}"),
            attempt: 3,
            reason: "invalidQuery".into(),
            message: "Syntax error: 100% wrong\nat [1:8]".into(),
            bq_job_id: Some(format!("job_{i}")),
        }
    }

    fn tally(failures: usize) -> Tally {
        Tally {
            job: "events_daily".into(),
            run_id: "r1".into(),
            destination: "p.d.t".into(),
            status: if failures == 0 { "succeeded" } else { "failed" }.into(),
            exit_code: if failures == 0 { 0 } else { 1 },
            total: 20,
            succeeded: 20 - failures,
            failed: failures,
            duration_seconds: 12.34,
            failures: (1..=failures).map(failure).collect(),
            ..Tally::default()
        }
    }

    #[test]
    fn workflow_command_values_are_escaped() {
        assert_eq!(escape_data("a%b\r\nc"), "a%25b%0D%0Ac");
        assert_eq!(escape_property("t: a, b"), "t%3A a%2C b");
    }

    #[test]
    fn one_annotation_per_failed_partition_escaped() {
        let a = annotations(&tally(2));
        assert_eq!(a.len(), 2);
        assert_eq!(
            a[0],
            "::error title=events_daily%3A partition 20240101 failed::invalidQuery (attempt 3): Syntax error: 100%25 wrong%0Aat [1:8]"
        );
        assert!(annotations(&tally(0)).is_empty());
    }

    #[test]
    fn past_ten_failures_the_tenth_annotation_counts_the_rest() {
        let a = annotations(&tally(14));
        assert_eq!(a.len(), MAX_ANNOTATIONS);
        assert!(a[8].contains("partition 20240109 failed"), "{}", a[8]);
        assert!(a[9].contains("::and 5 more failed partitions"), "{}", a[9]);
        assert_eq!(annotations(&tally(10)).len(), 10);
    }

    #[test]
    fn a_run_that_stopped_early_is_one_annotation() {
        let mut t = tally(0);
        t.status = "error".into();
        t.error = Some("table p.d.t does not exist".into());
        assert_eq!(
            annotations(&t),
            ["::error title=events_daily%3A bq-backfill error::table p.d.t does not exist"]
        );
    }

    #[test]
    fn the_summary_has_totals_failures_and_extra_sections() {
        let md = step_summary(&tally(1), &["### Calendar\n\nxx\n".into()]);
        assert!(
            md.starts_with("## ❌ bq-backfill `events_daily`: failed\n"),
            "{md}"
        );
        assert!(md.contains("run `r1` · exit 1 · 12.3 s"), "{md}");
        assert!(md.contains("| 20 | 19 | 1 | 0 | 0 | 0 |"), "{md}");
        assert!(
            md.contains(
                "| `20240101` | 3 | `invalidQuery` | Syntax error: 100% wrong at [1:8] | `job_1` |"
            ),
            "{md}"
        );
        assert!(md.ends_with("### Calendar\n\nxx\n\n"), "{md}");
    }

    #[test]
    fn outputs_are_name_value_lines() {
        assert_eq!(
            outputs(&tally(1)),
            "status=failed\nexit_code=1\nsucceeded=19\nfailed=1\nskipped=0\npending=0\nrun_id=r1\n"
        );
    }
}
