//! `--rerun --reason`: rebuilding partitions that already succeeded, after a
//! fix to the source data, and the audit table's upgrade to the column that
//! records the reason.

use std::collections::BTreeMap;

use bq_emulator::demo;
use serde_json::{Map, Value, json};

use crate::harness::*;

/// Late events for `day`: rows the first run did not see.
fn late_events(day: &str, n: usize) -> Vec<Map<String, Value>> {
    (0..n)
        .map(|i| {
            let Value::Object(row) = json!({
                "event_id": format!("late-{day}-{i}"),
                "event_ts": format!("{day}T12:00:00Z"),
                "user_id": "u999",
                "event_type": "click",
                "amount": null,
            }) else {
                unreachable!()
            };
            row
        })
        .collect()
}

fn reasons_by_partition(env: &Env) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in env.audit() {
        if r["status"] == "SUCCEEDED" {
            out.entry(s(&r["partition_id"]))
                .or_default()
                .push(s(&r["reason"]));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_after_a_source_fix_rebuilds_succeeded_partitions_once_per_reason() {
    let env = Env::demo("2024-06-01", "2024-06-09").await;
    let d = env.descriptor("2024-06-01", "2024-06-09", json!({}));
    env.run(&d, &[]).expect_code(0);

    // The source is fixed: late events arrive for two days. A plain run
    // does not see them (nothing about the job changed)...
    for day in ["2024-06-03", "2024-06-05"] {
        env.emu
            .insert_rows(
                demo::PROJECT,
                demo::RAW_DATASET,
                demo::RAW_TABLE,
                late_events(day, 7),
            )
            .unwrap();
    }
    let r = env.run(&d, &[]);
    r.expect_code(0);
    assert_eq!(r.of("partition_skipped").len(), 8);
    let u999 = |env: &Env| {
        env.daily()
            .into_iter()
            .filter(|((_, user, _), _)| user == "u999")
            .map(|((day, _, _), n)| (day, n))
            .collect::<Vec<_>>()
    };
    assert!(u999(&env).is_empty());

    // ...`plan --rerun` shows what a rerun would rebuild, writing nothing.
    let fix = "late events INC-42";
    let p = env.run(
        &d,
        &["plan", "--format", "json", "--rerun", "--reason", fix],
    );
    p.expect_code(0);
    let reasons: Vec<String> = p
        .events
        .iter()
        .filter(|e| e["partition"].is_string())
        .map(|e| s(&e["reason"]))
        .collect();
    assert_eq!(reasons, vec!["rerun"; 8], "{}", p.stdout);

    // A rerun of the two days rebuilds them, with a new attempt (a new job ID).
    let r = env.run(
        &d,
        &[
            "run",
            "--rerun",
            "--reason",
            fix,
            "--partitions",
            "20240603,20240605",
        ],
    );
    r.expect_code(0);
    assert_eq!(
        r.partitions("partition_succeeded"),
        ["20240603", "20240605"]
    );
    assert_eq!(r.of("run_started")[0]["rerun_reason"], fix);
    assert!(r.of("partition_started").iter().all(|e| e["attempt"] == 2));
    assert_eq!(
        u999(&env),
        [("2024-06-03".to_string(), 7), ("2024-06-05".to_string(), 7)]
    );

    // The same rerun over the whole range resumes: the two rebuilt days are
    // skipped, the other six are rebuilt; running it again rebuilds nothing.
    let r = env.run(&d, &["run", "--rerun", "--reason", fix]);
    r.expect_code(0);
    assert_eq!(r.of("partition_succeeded").len(), 6);
    assert_eq!(r.partitions("partition_skipped"), ["20240603", "20240605"]);
    env.emu.reset_stats();
    let r = env.run(&d, &["run", "--rerun", "--reason", fix]);
    r.expect_code(0);
    assert_eq!(r.of("partition_skipped").len(), 8);
    assert_eq!(env.stat("jobs.insert"), 0);

    // The audit log says why each partition was rebuilt.
    let reasons = reasons_by_partition(&env);
    assert_eq!(reasons.len(), 8);
    for (pid, rs) in &reasons {
        assert_eq!(rs, &["", fix], "partition {pid}: first run, then the rerun");
    }
    let mut expected = demo::expected_daily(date("2024-06-01"), date("2024-06-09"));
    for day in ["2024-06-03", "2024-06-05"] {
        expected.insert((day.into(), "u999".into(), "click".into()), 7);
    }
    assert_eq!(env.daily(), expected, "exactly the fixed data, no doubling");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerun_needs_a_reason_and_a_bad_reason_is_a_usage_error() {
    let env = Env::demo("2024-06-01", "2024-06-03").await;
    let d = env.descriptor("2024-06-01", "2024-06-03", json!({}));
    for (args, needle) in [
        (vec!["run", "--rerun"], "--reason"),
        (vec!["run", "--reason", "x"], "--rerun"),
        (vec!["run", "--rerun", "--reason", "  "], "reason is empty"),
        (
            vec!["plan", "--rerun", "--reason", "a\nb"],
            "control character",
        ),
    ] {
        let r = env.run(&d, &args);
        r.expect_code(64);
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
    }
    assert!(env.emu.jobs().is_empty(), "nothing ran");
}

/// An audit table written by an older version (record_version 2, without
/// `reason`): `status` and `plan` read it as it is; a run adds the column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_audit_table_gains_the_reason_column_on_the_next_run() {
    let env = Env::demo("2024-06-01", "2024-06-04").await;
    let d = env.descriptor("2024-06-01", "2024-06-04", json!({}));
    env.run(&d, &[]).expect_code(0);
    // Make the table look like record_version 2's: the same rows, no `reason`.
    let rows = env.audit();
    let old_columns: Vec<Value> = bq_backfill::engine::checkpoint::COLUMNS
        .iter()
        .filter(|c| !bq_backfill::engine::checkpoint::ADDED_COLUMNS.contains(&c.0))
        .map(|(n, t, m)| json!({"name": n, "type": t, "mode": m}))
        .collect();
    env.drop_table(demo::OPS_DATASET, AUDIT).await;
    env.table(
        demo::OPS_DATASET,
        AUDIT,
        json!(old_columns),
        json!({"type": "DAY", "field": "recorded_at"}),
    );
    let old_rows: Vec<Map<String, Value>> = rows
        .into_iter()
        .map(|mut r| {
            r.remove("reason");
            r.retain(|_, v| !v.is_null());
            r
        })
        .collect();
    env.emu
        .insert_rows(demo::PROJECT, demo::OPS_DATASET, AUDIT, old_rows)
        .unwrap();

    let st = env.run(&d, &["status", "--format", "json"]);
    st.expect_code(0);
    assert!(st.stdout.contains("\"succeeded\":3"), "{}", st.stdout);
    let p = env.run(
        &d,
        &["plan", "--format", "json", "--rerun", "--reason", "r1"],
    );
    p.expect_code(0);
    assert_eq!(
        p.events.iter().filter(|e| e["reason"] == "rerun").count(),
        3,
        "{}",
        p.stdout
    );
    assert_eq!(env.stat("tables.patch"), 0, "plan and status write nothing");

    let r = env.run(
        &d,
        &[
            "run",
            "--rerun",
            "--reason",
            "r1",
            "--partitions",
            "20240602",
        ],
    );
    r.expect_code(0);
    assert_eq!(env.stat("tables.patch"), 1, "the run added the column once");
    let reasons = reasons_by_partition(&env);
    assert_eq!(reasons["20240602"], ["", "r1"]);
    assert_eq!(reasons["20240601"], [""]);
}
