//! `plan` and `status`: read the destination and the audit log, dry-run the
//! query, write nothing. Tables for people by default (`output::report`),
//! JSON Lines with `--format json`.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use chrono::Utc;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::bq::{BigQuery, JobSpec, QueryJob};
use crate::engine::checkpoint::Checkpoints;
use crate::engine::failure::RunFailure;
use crate::engine::lease;
use crate::engine::preflight;
use crate::engine::verify;
use crate::exit;
use crate::output::calendar::{Layout, Shade};
use crate::output::report::{self, LeaseView, PartitionView, PlanRow, PlanView, StatusView};
use crate::planning::decision::{self, Decision};
use crate::planning::partition::{self, Partition};
use crate::planning::state::{PartitionState, Status};
use crate::planning::{fingerprint, strategy};
use crate::task::cli::Format;
use crate::task::settings::{Expect, Settings, Source};

/// Dry runs in flight at once for `plan --estimate`.
const ESTIMATE_PARALLELISM: usize = 8;

/// What `plan` was asked for.
#[derive(Debug, Clone, Copy)]
pub struct PlanOptions {
    pub format: Format,
    pub estimate: bool,
    pub price_per_tib: f64,
}

/// The latest audit state per partition; none before the first run.
async fn read_states(
    bq: &BigQuery,
    settings: &Settings,
) -> Result<(bool, HashMap<String, PartitionState>), RunFailure> {
    let cp = Checkpoints::new(
        bq.clone(),
        settings.checkpoint_table.clone(),
        &settings.job,
        "read-only",
    );
    if !cp.exists().await? {
        return Ok((false, HashMap::new()));
    }
    Ok((true, cp.latest_states().await?))
}

/// `plan`: what a run would do with each partition, and why.
pub async fn plan_command(
    settings: Settings,
    bq: BigQuery,
    opts: PlanOptions,
    out: &mut dyn Write,
) -> Result<i32, RunFailure> {
    preflight::preflight(&bq, &settings).await?;
    let (_, states) = read_states(&bq, &settings).await?;
    let fp = fingerprint::fingerprint(&settings);
    let plan = partition::plan(&settings.partitions);
    let checks = query_checks(&bq, &settings, &plan).await?;
    let mut rows: Vec<PlanRow> = plan
        .into_iter()
        .map(|p| {
            let (action, reason) =
                match decision::decide(states.get(&p.id), &fp, settings.rerun.as_deref()) {
                    Decision::Skip(r) => ("skip", wire_name(&r)),
                    Decision::Run(r) => ("run", wire_name(&r)),
                };
            PlanRow {
                partition: p,
                action,
                reason,
                bytes: None,
            }
        })
        .collect();
    let mut checks = checks;
    let estimate_bytes = opts.estimate && matches!(settings.source, Source::Query { .. });
    if estimate_bytes {
        estimate(&bq, &settings, &mut rows).await?;
    } else if opts.estimate {
        // Load and copy jobs read no table bytes and are not billed as queries.
        checks.push("--estimate: load and copy jobs are free; nothing to estimate".into());
    }
    match opts.format {
        Format::Json => plan_json(&settings, &rows, &states, &fp, &checks, out),
        Format::Table => {
            let view = PlanView {
                job: settings.job.clone(),
                destination: settings.destination.to_string(),
                granularity: settings.partitions.granularity_name().to_string(),
                fingerprint: fp,
                rows,
                checks,
                write: settings.describe_write(),
                verify: settings.describe_checks(),
                price_per_tib: estimate_bytes.then_some(opts.price_per_tib),
            };
            let _ = out.write_all(report::plan_text(&view).as_bytes());
        }
    }
    Ok(exit::OK)
}

fn wire_name(reason: &impl serde::Serialize) -> String {
    serde_json::to_value(reason)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn plan_json(
    settings: &Settings,
    rows: &[PlanRow],
    states: &HashMap<String, PartitionState>,
    fp: &str,
    checks: &[String],
    out: &mut dyn Write,
) {
    for r in rows {
        let state = states.get(&r.partition.id);
        let mut line = json!({
            "partition": r.partition.id,
            "destination": settings.destination.partition(&r.partition.id).to_string(),
            "action": r.action,
            "reason": r.reason,
            "last_status": state.map(|s| s.status.as_str()),
            "last_bq_job_id": state.and_then(|s| s.bq_job_id.clone()),
        });
        if let Some(b) = r.bytes {
            line["estimated_bytes_processed"] = json!(b);
        }
        let _ = writeln!(out, "{line}");
    }
    let to_run = rows.iter().filter(|r| r.action == "run").count();
    let mut summary = json!({"partitions_total": rows.len(), "to_run": to_run, "to_skip": rows.len() - to_run, "fingerprint": fp, "checks": checks, "write": settings.describe_write(), "verify": settings.describe_checks()});
    if rows.iter().any(|r| r.bytes.is_some()) {
        summary["estimated_bytes_processed"] =
            json!(rows.iter().filter_map(|r| r.bytes).sum::<i64>());
    }
    let _ = writeln!(out, "{}", json!({"summary": summary}));
}

/// Dry-runs the query for the first and last partitions: a syntax error or a
/// missing column is a configuration error (78) with BigQuery's message.
/// Returns what was checked, and warnings about the query's filters.
pub async fn query_checks(
    bq: &BigQuery,
    settings: &Settings,
    plan: &[Partition],
) -> Result<Vec<String>, RunFailure> {
    let mut checks = source_checks(bq, settings, plan).await?;
    if let Some(first) = plan.first() {
        checks.extend(verify_checks(bq, settings, first).await?);
    }
    Ok(checks)
}

/// Dry-runs every check's query (and equals query) for `first`, against
/// the destination (the staging table has its schema and may not exist yet).
async fn verify_checks(
    bq: &BigQuery,
    settings: &Settings,
    first: &Partition,
) -> Result<Vec<String>, RunFailure> {
    for c in &settings.verify {
        let mut sqls = vec![verify::check_sql(c, &settings.destination)];
        if let Expect::EqualsQuery(q) = &c.expect {
            sqls.push(q.clone());
        }
        for sql in sqls {
            let job = JobSpec::Query(QueryJob {
                params: strategy::partition_parameters(first),
                ..QueryJob::plain(&sql)
            });
            match bq.dry_run(&job).await {
                Ok(_) => {}
                Err(e) if e.is_transient() || e.is_permission() => return Err(e.into()),
                Err(e) => {
                    return Err(RunFailure::Config {
                        message: format!(
                            "check `{}` does not dry-run for partition {}: {e}",
                            c.name, first.id
                        ),
                        hint: Some("fix the check's query (or its equals_query); `{target}` is replaced by the checked table's path and the partition parameters are the source query's".into()),
                    });
                }
            }
        }
    }
    Ok(match settings.verify.len() {
        0 => Vec::new(),
        n => vec![format!(
            "{n} verification check(s) dry-run for {}",
            first.id
        )],
    })
}

/// Dry-runs the source query for the first and last partitions.
async fn source_checks(
    bq: &BigQuery,
    settings: &Settings,
    plan: &[Partition],
) -> Result<Vec<String>, RunFailure> {
    let Source::Query { sql } = &settings.source else {
        return Ok(vec!["no query to dry-run (load or copy source)".into()]);
    };
    let (Some(first), Some(last)) = (plan.first(), plan.last()) else {
        return Ok(Vec::new());
    };
    let strategy = strategy::for_settings(settings);
    let mut ids = vec![first];
    if last.id != first.id {
        ids.push(last);
    }
    for p in &ids {
        if let Err(e) = bq.dry_run(&strategy.job(p)).await {
            if e.is_transient() || e.is_permission() {
                return Err(e.into());
            }
            return Err(RunFailure::Config {
                message: format!("the query does not dry-run for partition {}: {e}", p.id),
                hint: Some("fix the query; it receives @partition_id, @partition_start and @partition_end (and @partition_date for time partitions) as parameters".into()),
            });
        }
    }
    let shown: Vec<&str> = ids.iter().map(|p| p.id.as_str()).collect();
    let mut checks = vec![format!("the query dry-runs for {}", shown.join(" and "))];
    checks.extend(filter_warning(sql));
    Ok(checks)
}

/// A query that bounds its rows on one side only writes rows outside its
/// partition, which BigQuery refuses at run time.
fn filter_warning(sql: &str) -> Option<String> {
    let has = |name: &str| sql.contains(&format!("@{name}"));
    let (start, end) = (has("partition_start"), has("partition_end"));
    (start != end).then(|| {
        let (used, missing) = if start { ("partition_start", "partition_end") } else { ("partition_end", "partition_start") };
        format!(
            "warning: the query uses @{used} but not @{missing}: rows outside a partition make its job fail (\"rows belong to different partitions\"); filter on both: `WHERE col >= @partition_start AND col < @partition_end`"
        )
    })
}

/// `validate --dry-run`: the offline checks passed; now the destination's
/// partitioning and a dry run of the query. Prints `validate`'s JSON line
/// with the checks; a failure is `{"valid": false, ...}` and its exit code.
pub async fn validate_dry_run(
    settings: Settings,
    bq: BigQuery,
    out: &mut dyn Write,
) -> Result<i32, RunFailure> {
    let checked = async {
        preflight::preflight(&bq, &settings).await?;
        query_checks(&bq, &settings, &partition::plan(&settings.partitions)).await
    };
    match checked.await {
        Ok(checks) => {
            let mut line = crate::task::load::summary(&settings);
            line["dry_run"] = json!({"checks": checks});
            let _ = writeln!(out, "{line}");
            Ok(exit::OK)
        }
        Err(f) => {
            let e = f.to_run_error();
            let field = if e.message.starts_with("the query") {
                "source.query"
            } else if e.message.starts_with("check `") {
                "verify"
            } else {
                "destination"
            };
            let line = json!({"valid": false, "exit_code": f.exit_code(), "errors": [{"field": field, "message": e.message, "hint": e.hint}]});
            let _ = writeln!(out, "{line}");
            Err(f)
        }
    }
}

/// Dry-runs every partition to run, a few at a time, for its bytes.
async fn estimate(
    bq: &BigQuery,
    settings: &Settings,
    rows: &mut [PlanRow],
) -> Result<(), RunFailure> {
    let strategy: Arc<dyn strategy::WriteStrategy> = Arc::from(strategy::for_settings(settings));
    let gate = Arc::new(Semaphore::new(ESTIMATE_PARALLELISM));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, row) in rows.iter().enumerate().filter(|(_, r)| r.action == "run") {
        let (bq, strategy, gate, p) = (
            bq.clone(),
            strategy.clone(),
            gate.clone(),
            row.partition.clone(),
        );
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            (i, bq.dry_run(&strategy.job(&p)).await)
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (i, bytes) = done.map_err(|e| RunFailure::Config {
            message: format!("an estimate task failed: {e}"),
            hint: None,
        })?;
        rows[i].bytes = Some(bytes?);
    }
    Ok(())
}

/// `status`: the audit log's view of the job. Before the first run, every
/// partition is pending (exit 0).
pub async fn status_command(
    settings: Settings,
    bq: BigQuery,
    format: Format,
    colour: bool,
    out: &mut dyn Write,
) -> Result<i32, RunFailure> {
    let (audit_exists, states) = read_states(&bq, &settings).await?;
    let lease = if audit_exists {
        read_lease(&bq, &settings).await?
    } else {
        None
    };
    let fp = fingerprint::fingerprint(&settings);
    let partitions = partition::plan(&settings.partitions)
        .into_iter()
        .map(|p| {
            let st = states.get(&p.id);
            PartitionView {
                shade: shade(st, &fp),
                attempts: st.map_or(0, |s| s.max_attempt.max(s.attempt)),
                bq_job_id: st.and_then(|s| s.bq_job_id.clone()),
                run_id: st.map(|s| s.run_id.clone()),
                recorded_at: st.and_then(|s| s.recorded_at),
                error: st.and_then(|s| s.error.clone()).filter(|_| {
                    st.is_some_and(|s| matches!(s.status, Status::Failed | Status::VerifyFailed))
                }),
                partition: p,
            }
        })
        .collect();
    let layout = Layout::for_settings(&settings);
    let view = StatusView {
        job: settings.job.clone(),
        destination: settings.destination.to_string(),
        audit_table: settings.checkpoint_table.to_string(),
        audit_exists,
        partitions,
        layout,
        lease,
    };
    match format {
        Format::Json => status_json(&view, out),
        Format::Table => {
            let _ = out.write_all(report::status_text(&view, colour).as_bytes());
        }
    }
    Ok(exit::OK)
}

fn shade(state: Option<&PartitionState>, fp: &str) -> Shade {
    match state.map(|s| (s.status, s.fingerprint.as_deref() == Some(fp))) {
        None => Shade::Pending,
        Some((Status::Succeeded, true)) => Shade::Succeeded,
        Some((Status::Succeeded, false)) => Shade::Stale,
        Some((Status::Running, _)) => Shade::Running,
        Some((Status::Failed, _)) => Shade::Failed,
        Some((Status::Cancelled, _)) => Shade::Cancelled,
        // Staged and verified; the publish is next.
        Some((Status::Verified, _)) => Shade::Running,
        Some((Status::VerifyFailed, _)) => Shade::VerifyFailed,
    }
}

async fn read_lease(bq: &BigQuery, settings: &Settings) -> Result<Option<LeaseView>, RunFailure> {
    let table = lease::lease_table(&settings.checkpoint_table);
    let exists = bq.get_table(&table).await.map_err(|source| {
        crate::engine::checkpoint::CheckpointError::Api {
            table: table.to_string(),
            source,
        }
    })?;
    if exists.is_none() {
        return Ok(None);
    }
    let log = lease::LeaseLog::new(
        bq.clone(),
        &settings.checkpoint_table,
        &settings.job,
        "read-only",
    );
    Ok(lease::current(&log).await?.map(|row| LeaseView {
        live: row.is_live(Utc::now()),
        held: row.status == lease::LeaseStatus::Held,
        run_id: row.run_id,
        expires_at: row.expires_at,
    }))
}

fn status_json(v: &StatusView, out: &mut dyn Write) {
    for p in &v.partitions {
        let status = match p.shade {
            Shade::Succeeded | Shade::Stale => "SUCCEEDED",
            Shade::Running => "RUNNING",
            Shade::Failed => "FAILED",
            Shade::VerifyFailed => "VERIFY_FAILED",
            Shade::Cancelled => "CANCELLED",
            Shade::Pending => "PENDING",
        };
        let line = json!({
            "partition": p.partition.id,
            "status": status,
            "state": p.shade.name(),
            "current_fingerprint": p.shade == Shade::Succeeded,
            "attempts": p.attempts,
            "bq_job_id": p.bq_job_id,
            "run_id": p.run_id,
            "recorded_at": p.recorded_at.map(|t| t.to_rfc3339()),
            "error": p.error,
        });
        let _ = writeln!(out, "{line}");
    }
    let counts: serde_json::Map<String, serde_json::Value> = v
        .counts()
        .iter()
        .map(|(s, n)| (s.name().to_string(), json!(n)))
        .collect();
    // `held`: some run holds it now; `state` says which of the three it is.
    let lease = v.lease.as_ref().map(|l| {
        let state = match (l.live, l.held) {
            (true, _) => "held",
            (false, true) => "expired",
            (false, false) => "released",
        };
        json!({"run_id": l.run_id, "held": l.live, "state": state, "expires_at": l.expires_at.map(|t| t.to_rfc3339())})
    });
    let last_run = v
        .last_run()
        .map(|(run, at)| json!({"run_id": run, "recorded_at": at.to_rfc3339()}));
    let summary = json!({"partitions_total": v.partitions.len(), "counts": counts, "audit_table_exists": v.audit_exists, "lease": lease, "last_run": last_run});
    let _ = writeln!(out, "{}", json!({"summary": summary}));
}
