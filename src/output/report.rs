//! What `plan` and `status` print for people: short tables, the failed
//! partitions with their errors, the lease and the calendar. Pure: the
//! views are built by `app::inspect`; `--format json` prints them as JSON
//! Lines instead.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use crate::output::calendar::{self, Layout, Shade};
use crate::planning::partition::Partition;

/// At most this many failed partitions are listed; JSON lists all.
const FAILED_SHOWN: usize = 20;
/// Error messages are cut to this many characters in tables.
const ERROR_WIDTH: usize = 100;

/// One partition as `status` sees it.
#[derive(Debug, Clone)]
pub struct PartitionView {
    pub partition: Partition,
    pub shade: Shade,
    /// Highest attempt recorded.
    pub attempts: u32,
    pub bq_job_id: Option<String>,
    pub run_id: Option<String>,
    pub recorded_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

/// The run lease's latest row.
#[derive(Debug, Clone)]
pub struct LeaseView {
    pub run_id: String,
    /// A run holds the lease now (its latest row is HELD and unexpired).
    pub live: bool,
    /// The latest row is HELD (live, or expired: its run died).
    pub held: bool,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Everything `status` shows.
#[derive(Debug, Clone)]
pub struct StatusView {
    pub job: String,
    pub destination: String,
    pub audit_table: String,
    /// `false` before the first run: every partition is pending.
    pub audit_exists: bool,
    pub partitions: Vec<PartitionView>,
    pub layout: Layout,
    pub lease: Option<LeaseView>,
}

impl StatusView {
    /// Partitions per shade, in the calendar's order, zeros left out.
    pub fn counts(&self) -> Vec<(Shade, usize)> {
        Shade::ALL
            .iter()
            .map(|s| (*s, self.partitions.iter().filter(|p| p.shade == *s).count()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// The run that recorded the latest row, and when.
    pub fn last_run(&self) -> Option<(&str, DateTime<Utc>)> {
        self.partitions
            .iter()
            .filter_map(|p| Some((p.run_id.as_deref()?, p.recorded_at?)))
            .max_by_key(|(_, at)| *at)
    }
}

/// `status` for a terminal or a log.
pub fn status_text(v: &StatusView, colour: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} → {}", v.job, v.destination);
    let _ = writeln!(out, "audit log {}", v.audit_table);
    out.push('\n');
    let counts: Vec<String> = v
        .counts()
        .iter()
        .map(|(s, n)| format!("{n} {}", s.name()))
        .collect();
    let _ = writeln!(
        out,
        "{} partitions: {}",
        v.partitions.len(),
        counts.join(" · ")
    );
    if !v.audit_exists {
        let _ = writeln!(
            out,
            "no run yet: the first `bq-backfill run` creates the audit log"
        );
    }
    let _ = writeln!(out, "lease: {}", lease_line(v.lease.as_ref()));
    if let Some((run, at)) = v.last_run() {
        let _ = writeln!(
            out,
            "last run: {run}, last recorded {}",
            at.format("%Y-%m-%d %H:%M:%S UTC")
        );
    }
    failed_table(&mut out, v);
    out.push('\n');
    let cells: Vec<(Partition, Shade)> = v
        .partitions
        .iter()
        .map(|p| (p.partition.clone(), p.shade))
        .collect();
    out.push_str(&calendar::render(&cells, v.layout, colour));
    out
}

fn lease_line(lease: Option<&LeaseView>) -> String {
    match lease {
        None => "free (never taken)".to_string(),
        Some(l) if l.live => match l.expires_at {
            Some(at) => format!(
                "held by run {} until {}",
                l.run_id,
                at.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            None => format!("held by run {}", l.run_id),
        },
        Some(l) if l.held => format!("free (run {} held it; its lease expired)", l.run_id),
        Some(l) => format!("free (released by run {})", l.run_id),
    }
}

fn failed_table(out: &mut String, v: &StatusView) {
    let failed: Vec<&PartitionView> = v
        .partitions
        .iter()
        .filter(|p| matches!(p.shade, Shade::Failed | Shade::VerifyFailed))
        .collect();
    if failed.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nfailed partitions ({}):", failed.len());
    let id_width = failed
        .iter()
        .map(|p| p.partition.id.len())
        .max()
        .unwrap_or(9)
        .max(9);
    let _ = writeln!(out, "  {:<id_width$}  ATTEMPTS  ERROR", "PARTITION");
    for p in failed.iter().take(FAILED_SHOWN) {
        let error = p
            .error
            .as_deref()
            .map_or("(no error recorded)".to_string(), cut);
        let _ = writeln!(
            out,
            "  {:<id_width$}  {:>8}  {error}",
            p.partition.id, p.attempts
        );
    }
    if failed.len() > FAILED_SHOWN {
        let _ = writeln!(
            out,
            "  … and {} more (`bq-backfill status --format json` lists every one)",
            failed.len() - FAILED_SHOWN
        );
    }
}

/// One line, at most [`ERROR_WIDTH`] characters.
fn cut(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= ERROR_WIDTH {
        return one_line;
    }
    let mut s: String = one_line.chars().take(ERROR_WIDTH - 1).collect();
    s.push('…');
    s
}

/// One partition as `plan` sees it.
#[derive(Debug, Clone)]
pub struct PlanRow {
    pub partition: Partition,
    /// `run` or `skip`.
    pub action: &'static str,
    /// The decision's reason as its wire name (`new`, `already_succeeded`, ...).
    pub reason: String,
    /// Dry-run estimate of the bytes the partition's query reads, with `--estimate`.
    pub bytes: Option<i64>,
}

/// Everything `plan` shows.
#[derive(Debug, Clone)]
pub struct PlanView {
    pub job: String,
    pub destination: String,
    pub granularity: String,
    pub fingerprint: String,
    pub rows: Vec<PlanRow>,
    /// Lines about the dry-run checks of the query ("ok" or what is wrong).
    pub checks: Vec<String>,
    /// The write strategy (`direct` or `staged in …`).
    pub write: String,
    /// The verification checks, `name: expectation`.
    pub verify: Vec<String>,
    /// On-demand price per TiB, with `--estimate`.
    pub price_per_tib: Option<f64>,
}

/// A decision's reason, for people.
pub fn describe_reason(reason: &str) -> &str {
    match reason {
        "new" => "never run",
        "stale_fingerprint" => "the query or settings changed since it succeeded",
        "previously_failed" => "failed last time",
        "previously_cancelled" => "cancelled last time",
        "adopt_running" => "a job is recorded running: wait for it or adopt it",
        "publish" => "staged and verified, not yet published: publish it",
        "verify_failed" => "a verification check failed last time",
        "already_succeeded" => "already succeeded",
        "rerun" => "--rerun",
        other => other,
    }
}

/// `plan` for a terminal or a log: consecutive partitions with the same
/// action and reason are one line.
pub fn plan_text(v: &PlanView) -> String {
    let mut out = String::new();
    let to_run = v.rows.iter().filter(|r| r.action == "run").count();
    let _ = writeln!(out, "plan for {} → {}", v.job, v.destination);
    let _ = writeln!(
        out,
        "{} partitions ({}): {to_run} to run, {} to skip",
        v.rows.len(),
        v.granularity,
        v.rows.len() - to_run
    );
    let _ = writeln!(
        out,
        "fingerprint {}",
        &v.fingerprint[..v.fingerprint.len().min(12)]
    );
    for check in &v.checks {
        let _ = writeln!(out, "check: {check}");
    }
    let _ = writeln!(out, "write: {}", v.write);
    for c in &v.verify {
        let _ = writeln!(out, "verify: {c}");
    }
    out.push('\n');
    if v.price_per_tib.is_some() {
        estimate_table(&mut out, v);
    } else {
        runs_table(&mut out, v);
    }
    out
}

fn runs_table(out: &mut String, v: &PlanView) {
    let mut groups: Vec<(&PlanRow, &PlanRow, usize)> = Vec::new();
    for row in &v.rows {
        match groups.last_mut() {
            Some((_, last, n)) if last.action == row.action && last.reason == row.reason => {
                *last = row;
                *n += 1;
            }
            _ => groups.push((row, row, 1)),
        }
    }
    let span = |a: &PlanRow, b: &PlanRow| {
        if a.partition.id == b.partition.id {
            a.partition.id.clone()
        } else {
            format!("{} … {}", a.partition.id, b.partition.id)
        }
    };
    let width = groups
        .iter()
        .map(|(a, b, _)| span(a, b).chars().count())
        .max()
        .unwrap_or(10)
        .max(10);
    let _ = writeln!(
        out,
        "  {:<width$}  {:>5}  ACTION  WHY",
        "PARTITIONS", "COUNT"
    );
    for (a, b, n) in &groups {
        let _ = writeln!(
            out,
            "  {:<width$}  {n:>5}  {:<6}  {}",
            span(a, b),
            a.action,
            describe_reason(&a.reason)
        );
    }
}

fn estimate_table(out: &mut String, v: &PlanView) {
    let width = v
        .rows
        .iter()
        .map(|r| r.partition.id.len())
        .max()
        .unwrap_or(9)
        .max(9);
    let _ = writeln!(
        out,
        "  {:<width$}  ACTION  {:>12}",
        "PARTITION", "BYTES READ"
    );
    let mut total: i64 = 0;
    for r in &v.rows {
        let bytes = match (r.action, r.bytes) {
            ("run", Some(b)) => {
                total += b;
                human_bytes(b)
            }
            ("run", None) => "?".to_string(),
            _ => "-".to_string(),
        };
        let _ = writeln!(
            out,
            "  {:<width$}  {:<6}  {bytes:>12}",
            r.partition.id, r.action
        );
    }
    let price = v.price_per_tib.unwrap_or(0.0);
    let cost = total as f64 / (1u64 << 40) as f64 * price;
    let _ = writeln!(
        out,
        "\n  total {} to read for the partitions to run ≈ ${cost:.2} on demand at ${price:.2}/TiB",
        human_bytes(total)
    );
}

/// Bytes in binary units, as BigQuery's console shows them.
pub fn human_bytes(b: i64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = b as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests;
