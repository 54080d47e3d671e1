use chrono::TimeZone;

use super::*;
use crate::planning::partition::{Granularity, Order, PartitionSpec, Scheme, Selection, plan};

fn january() -> Vec<Partition> {
    let at = |d| Utc.with_ymd_and_hms(2024, 1, d, 0, 0, 0).unwrap();
    plan(&PartitionSpec {
        scheme: Scheme::Time {
            granularity: Granularity::Day,
            selection: Selection::Range {
                start: at(1),
                end: at(31),
            },
        },
        order: Order::OldestFirst,
    })
}

fn view(partitions: Vec<PartitionView>, lease: Option<LeaseView>) -> StatusView {
    StatusView {
        job: "events_daily".into(),
        destination: "demo-project.analytics.events_daily".into(),
        audit_table: "demo-project.ops.backfill_audit".into(),
        audit_exists: true,
        partitions,
        layout: Layout::Time(Granularity::Day),
        lease,
    }
}

fn recorded(i: usize) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 2, 9, 0, 0).unwrap() + chrono::Duration::seconds(i as i64)
}

fn partition_view(i: usize, p: Partition) -> PartitionView {
    let (shade, error) = match i {
        4 => (
            Shade::Failed,
            Some("invalidQuery: Syntax error: Unexpected keyword FROM at [3:1]".to_string()),
        ),
        9 => (
            Shade::Failed,
            Some(format!(
                "backendError: {}",
                "the backend said a lot ".repeat(10)
            )),
        ),
        12 => (Shade::Running, None),
        15 => (Shade::Stale, None),
        20.. => (Shade::Pending, None),
        _ => (Shade::Succeeded, None),
    };
    let ran = shade != Shade::Pending;
    PartitionView {
        partition: p,
        shade,
        attempts: if shade == Shade::Failed {
            3
        } else {
            u32::from(ran)
        },
        bq_job_id: ran.then(|| format!("bqb_events_daily_{i}")),
        run_id: ran.then(|| "20261202t090000-0000beef".to_string()),
        recorded_at: ran.then(|| recorded(i)),
        error,
    }
}

#[test]
fn status_shows_counts_failures_lease_last_run_and_the_calendar() {
    let parts = january()
        .into_iter()
        .enumerate()
        .map(|(i, p)| partition_view(i, p))
        .collect();
    let lease = LeaseView {
        run_id: "20261202t090000-0000beef".into(),
        live: true,
        held: true,
        expires_at: Some(Utc.with_ymd_and_hms(2026, 12, 2, 9, 3, 0).unwrap()),
    };
    insta::assert_snapshot!(status_text(&view(parts, Some(lease)), false));
}

#[test]
fn status_before_the_first_run_is_all_pending() {
    let parts = january()
        .into_iter()
        .map(|p| PartitionView {
            partition: p,
            shade: Shade::Pending,
            attempts: 0,
            bq_job_id: None,
            run_id: None,
            recorded_at: None,
            error: None,
        })
        .collect();
    let mut v = view(parts, None);
    v.audit_exists = false;
    insta::assert_snapshot!(status_text(&v, false));
}

#[test]
fn many_failures_are_cut_to_twenty_lines() {
    let parts: Vec<PartitionView> = january()
        .into_iter()
        .enumerate()
        .map(|(i, p)| PartitionView {
            shade: Shade::Failed,
            error: Some(format!("invalidQuery: bad {i}")),
            ..partition_view(i, p)
        })
        .collect();
    let text = status_text(&view(parts, None), false);
    assert!(text.contains("… and 10 more"), "{text}");
    assert_eq!(text.matches("invalidQuery: bad").count(), 20);
}

fn plan_view(rows: Vec<PlanRow>, price: Option<f64>) -> PlanView {
    PlanView {
        job: "events_daily".into(),
        destination: "demo-project.analytics.events_daily".into(),
        granularity: "day".into(),
        fingerprint: "b14cb1df53b12f1ee43a510a522bbb489f864d3874651e12a269bf9f1d16b8a0".into(),
        rows,
        checks: vec!["the query dry-runs for 20240101 and 20240130".into()],
        write: "staged in demo-project.scratch.events_daily__bqb_stage, published by a copy job once every check passed".into(),
        verify: vec!["no_duplicate_keys: zero_rows".into(), "some_rows: row_count [1, -]".into()],
        price_per_tib: price,
    }
}

fn plan_rows() -> Vec<PlanRow> {
    january()
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let (action, reason) = match i {
                0..=9 => ("skip", "already_succeeded"),
                10 | 11 => ("run", "previously_failed"),
                12 => ("run", "adopt_running"),
                _ => ("run", "new"),
            };
            PlanRow {
                partition: p,
                action,
                reason: reason.into(),
                bytes: Some(1_500_000 * (i as i64 + 1)),
            }
        })
        .collect()
}

#[test]
fn plan_groups_consecutive_partitions_with_the_same_fate() {
    insta::assert_snapshot!(plan_text(&plan_view(plan_rows(), None)));
}

#[test]
fn plan_estimate_lists_bytes_per_partition_and_the_cost() {
    insta::assert_snapshot!(plan_text(&plan_view(plan_rows(), Some(6.25))));
}

#[test]
fn bytes_read_like_the_console() {
    assert_eq!(human_bytes(512), "512 B");
    assert_eq!(human_bytes(1536), "1.5 KiB");
    assert_eq!(human_bytes(5 * (1 << 40)), "5.0 TiB");
}
