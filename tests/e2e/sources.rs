//! Granularities other than day, and load and copy sources.

use std::collections::BTreeMap;

use bq_emulator::{Config, demo};
use chrono::{DateTime, Datelike, Timelike, Utc};
use serde_json::{Map, Value, json};

use crate::harness::*;

/// Raw events of [start, end) from the generator: (timestamp, event_type).
fn raw(start: &str, end: &str) -> Vec<(DateTime<Utc>, String)> {
    demo::days(date(start), date(end))
        .flat_map(demo::events_for_day)
        .map(|r| {
            let ts = DateTime::parse_from_rfc3339(r["event_ts"].as_str().unwrap())
                .unwrap()
                .with_timezone(&Utc);
            (ts, r["event_type"].as_str().unwrap().to_string())
        })
        .collect()
}

fn table_counts(env: &Env, table: &str, key: &[&str]) -> BTreeMap<Vec<String>, i64> {
    let mut out = BTreeMap::new();
    for r in env.rows(demo::ANALYTICS_DATASET, table) {
        let k: Vec<String> = key.iter().map(|c| s(&r[*c])).collect();
        assert!(
            out.insert(k, s(&r["events"]).parse::<i64>().unwrap())
                .is_none(),
            "duplicate row"
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hourly_partitions() {
    let env = Env::demo("2024-01-01", "2024-01-02").await;
    env.table(
        demo::ANALYTICS_DATASET,
        "events_hourly",
        json!([{"name": "hour", "type": "TIMESTAMP"}, {"name": "events", "type": "INTEGER"}]),
        json!({"type": "HOUR", "field": "hour"}),
    );
    let d = env.descriptor(
        "x",
        "x",
        json!({
            "job": "events_hourly",
            "destination": "demo-project.analytics.events_hourly",
            "partitions": {"granularity": "hour", "start": "2024-01-01T00", "end": "2024-01-01T06"},
            "source": {"query": "SELECT TIMESTAMP_TRUNC(event_ts, HOUR) AS hour, COUNT(*) AS events \
                FROM `demo-project.raw.events` WHERE event_ts >= @partition_start AND event_ts < @partition_end GROUP BY hour"}
        }),
    );
    let r = env.run(&d, &[]);
    r.expect_code(0);
    let ids = r.partitions("partition_succeeded");
    assert_eq!(
        ids,
        (0..6)
            .map(|h| format!("20240101{h:02}"))
            .collect::<Vec<_>>()
    );
    let mut expected: BTreeMap<u32, i64> = BTreeMap::new();
    for (ts, _) in raw("2024-01-01", "2024-01-02") {
        if ts.hour() < 6 {
            *expected.entry(ts.hour()).or_default() += 1;
        }
    }
    let got: BTreeMap<u32, i64> = table_counts(&env, "events_hourly", &["hour"])
        .into_iter()
        .map(|(k, v)| {
            let secs: f64 = k[0].parse().unwrap();
            (DateTime::from_timestamp(secs as i64, 0).unwrap().hour(), v)
        })
        .collect();
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monthly_and_yearly_partitions() {
    let env = Env::demo("2024-01-01", "2024-04-01").await;
    env.table(
        demo::ANALYTICS_DATASET,
        "events_monthly",
        json!([{"name": "month", "type": "DATE"}, {"name": "event_type", "type": "STRING"}, {"name": "events", "type": "INTEGER"}]),
        json!({"type": "MONTH", "field": "month"}),
    );
    let d = env.descriptor(
        "x",
        "x",
        json!({
            "job": "events_monthly",
            "destination": "demo-project.analytics.events_monthly",
            "partitions": {"granularity": "month", "start": "2024-01", "end": "2024-04"},
            "source": {"query": "SELECT DATE_TRUNC(DATE(event_ts), MONTH) AS month, event_type, COUNT(*) AS events \
                FROM `demo-project.raw.events` WHERE event_ts >= @partition_start AND event_ts < @partition_end \
                GROUP BY month, event_type"}
        }),
    );
    let r = env.run(&d, &[]);
    r.expect_code(0);
    let ids = r.partitions("partition_succeeded");
    assert_eq!(ids, vec!["202401", "202402", "202403"]);
    let mut expected: BTreeMap<Vec<String>, i64> = BTreeMap::new();
    for (ts, ty) in raw("2024-01-01", "2024-04-01") {
        *expected
            .entry(vec![format!("2024-{:02}-01", ts.month()), ty])
            .or_default() += 1;
    }
    assert_eq!(
        table_counts(&env, "events_monthly", &["month", "event_type"]),
        expected
    );

    env.table(
        demo::ANALYTICS_DATASET,
        "events_yearly",
        json!([{"name": "year_start", "type": "DATE"}, {"name": "events", "type": "INTEGER"}]),
        json!({"type": "YEAR", "field": "year_start"}),
    );
    let d = env.descriptor(
        "x",
        "x",
        json!({
            "job": "events_yearly",
            "destination": "demo-project.analytics.events_yearly",
            "partitions": {"granularity": "year", "start": "2024", "end": "2025"},
            "source": {"query": "SELECT DATE_TRUNC(DATE(event_ts), YEAR) AS year_start, COUNT(*) AS events \
                FROM `demo-project.raw.events` WHERE event_ts >= @partition_start AND event_ts < @partition_end \
                GROUP BY year_start"}
        }),
    );
    let r = env.run(&d, &[]);
    r.expect_code(0);
    assert_eq!(r.of("partition_succeeded")[0]["partition"], "2024");
    let total = raw("2024-01-01", "2024-04-01").len() as i64;
    assert_eq!(
        table_counts(&env, "events_yearly", &["year_start"]),
        BTreeMap::from([(vec!["2024-01-01".to_string()], total)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_source_fills_each_partition_from_its_own_files() {
    let gcs = tempfile::tempdir().unwrap();
    let expected = demo::expected_daily(date("2024-01-01"), date("2024-01-05"));
    // One folder per day, as an upstream export would write them.
    for ((day, user, ty), n) in &expected {
        let dir = gcs
            .path()
            .join("exports/events_daily")
            .join(format!("dt={day}"));
        std::fs::create_dir_all(&dir).unwrap();
        let line =
            json!({"day": day, "user_id": user, "event_type": ty, "events": n}).to_string() + "\n";
        let f = dir.join(format!("part-{}.json", &user[1..]));
        let mut existing = std::fs::read_to_string(&f).unwrap_or_default();
        existing.push_str(&line);
        std::fs::write(f, existing).unwrap();
    }
    let config = Config {
        gcs_root: Some(gcs.path().to_path_buf()),
        ..Config::default()
    };
    let env = Env::with_config(config, "2024-01-01", "2024-01-01").await;
    let d = env.descriptor(
        "2024-01-01",
        "2024-01-05",
        json!({
            "job": "events_daily_load",
            "source": {"query": null, "load": {"uris": ["gs://exports/events_daily/dt={partition_date}/*.json"], "format": "NEWLINE_DELIMITED_JSON"}}
        }),
    );
    let r = env.run(&d, &[]);
    r.expect_code(0);
    assert_eq!(r.of("partition_succeeded").len(), 4);
    let rows: i64 = r
        .of("partition_succeeded")
        .iter()
        .map(|e| e["rows_written"].as_i64().unwrap())
        .sum();
    assert_eq!(rows as usize, expected.len());
    assert_eq!(env.daily(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_source_copies_the_same_partition() {
    let env = Env::demo("2024-01-01", "2024-01-01").await;
    env.table(
        demo::ANALYTICS_DATASET,
        "events_daily_staging",
        json!([{"name": "day", "type": "DATE"}, {"name": "user_id", "type": "STRING"}, {"name": "event_type", "type": "STRING"}, {"name": "events", "type": "INTEGER"}]),
        json!({"type": "DAY", "field": "day"}),
    );
    let expected = demo::expected_daily(date("2024-01-01"), date("2024-01-04"));
    let rows: Vec<Map<String, Value>> = expected
        .iter()
        .map(|((day, user, ty), n)| {
            json!({"day": day, "user_id": user, "event_type": ty, "events": n})
                .as_object()
                .unwrap()
                .clone()
        })
        .collect();
    env.emu
        .insert_rows(
            demo::PROJECT,
            demo::ANALYTICS_DATASET,
            "events_daily_staging",
            rows,
        )
        .unwrap();
    let d = env.descriptor(
        "2024-01-01",
        "2024-01-04",
        json!({"job": "events_daily_copy", "source": {"query": null, "copy": {"table": "demo-project.analytics.events_daily_staging"}}}),
    );
    let r = env.run(&d, &[]);
    r.expect_code(0);
    assert_eq!(r.of("partition_succeeded").len(), 3);
    assert_eq!(env.daily(), expected);
}
