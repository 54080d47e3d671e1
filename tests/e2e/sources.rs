//! Granularities other than day, and load and copy sources.

use std::collections::{BTreeMap, BTreeSet};

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

/// Creates an integer-range partitioned `analytics.<table>` on `bucket`.
fn range_table(env: &Env, table: &str, start: i64, end: i64, interval: i64) {
    env.emu
        .create_table(
            demo::PROJECT,
            demo::ANALYTICS_DATASET,
            table,
            json!({
                "tableReference": {"projectId": demo::PROJECT, "datasetId": demo::ANALYTICS_DATASET, "tableId": table},
                "schema": {"fields": [{"name": "bucket", "type": "INTEGER"}, {"name": "orders", "type": "INTEGER"}, {"name": "amount", "type": "INTEGER"}]},
                "rangePartitioning": {"field": "bucket", "range": {"start": start.to_string(), "end": end.to_string(), "interval": interval.to_string()}}
            }),
        )
        .expect("range-partitioned table created");
}

/// The destination as bucket → (orders, amount).
fn buckets(env: &Env, table: &str) -> BTreeMap<i64, (i64, i64)> {
    let mut out = BTreeMap::new();
    for r in env.rows(demo::ANALYTICS_DATASET, table) {
        let n = |c: &str| s(&r[c]).parse::<i64>().expect("INT64 as a decimal string");
        assert!(
            out.insert(n("bucket"), (n("orders"), n("amount")))
                .is_none(),
            "bucket {} appears twice",
            n("bucket")
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integer_range_partitions() {
    let env = Env::demo("2024-01-01", "2024-01-01").await;
    // Source: orders with buckets from -15 to 114, some outside every partition.
    env.emu
        .create_table(
            demo::PROJECT,
            demo::ANALYTICS_DATASET,
            "orders_raw",
            json!({
                "tableReference": {"projectId": demo::PROJECT, "datasetId": demo::ANALYTICS_DATASET, "tableId": "orders_raw"},
                "schema": {"fields": [{"name": "order_id", "type": "INTEGER"}, {"name": "bucket", "type": "INTEGER"}, {"name": "amount", "type": "INTEGER"}]}
            }),
        )
        .unwrap();
    let orders: Vec<(i64, i64, i64)> = (0..400)
        .map(|i| (i, (i * 7) % 130 - 15, i % 17 + 1))
        .collect();
    let rows: Vec<Map<String, Value>> = orders
        .iter()
        .map(|(id, bucket, amount)| {
            json!({"order_id": id, "bucket": bucket, "amount": amount})
                .as_object()
                .unwrap()
                .clone()
        })
        .collect();
    env.emu
        .insert_rows(demo::PROJECT, demo::ANALYTICS_DATASET, "orders_raw", rows)
        .unwrap();
    let expected = |lo: i64, hi: i64| {
        let mut m: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        for (_, b, a) in &orders {
            if (lo..hi).contains(b) {
                let e = m.entry(*b).or_default();
                e.0 += 1;
                e.1 += a;
            }
        }
        m
    };
    range_table(&env, "orders_by_bucket", 0, 100, 10);
    let query = "SELECT bucket, COUNT(*) AS orders, SUM(amount) AS amount \
        FROM `demo-project.analytics.orders_raw` \
        WHERE bucket >= @partition_start AND bucket < @partition_end GROUP BY bucket";
    let descriptor = |table: &str, partitions: Value| {
        env.descriptor(
            "x",
            "x",
            json!({
                "job": format!("{table}_backfill"),
                "destination": format!("demo-project.analytics.{table}"),
                "partitions": partitions,
                "source": {"query": query}
            }),
        )
    };
    let d = descriptor(
        "orders_by_bucket",
        json!({"granularity": "integer_range", "interval": 10, "start": 0, "end": 100}),
    );
    let r = env.run(&d, &[]);
    r.expect_code(0);
    let ids: Vec<String> = (0..10).map(|k| (k * 10).to_string()).collect();
    assert_eq!(r.partitions("partition_succeeded"), ids);
    let started = r.of("partition_started");
    assert_eq!(
        started[4]["destination"],
        "demo-project.analytics.orders_by_bucket$40"
    );
    assert!(
        s(&started[4]["bq_job_id"]).starts_with("bqb_orders_by_bucket_backfill_40_"),
        "{}",
        started[4]
    );
    assert_eq!(buckets(&env, "orders_by_bucket"), expected(0, 100));
    let latest: BTreeMap<String, String> = env.latest_status();
    assert_eq!(
        latest.keys().cloned().collect::<BTreeSet<_>>(),
        ids.iter().cloned().collect()
    );
    assert!(latest.values().all(|st| st == "SUCCEEDED"));

    // A rerun skips everything and submits no job.
    env.emu.reset_stats();
    let r2 = env.run(&d, &[]);
    r2.expect_code(0);
    assert_eq!(r2.partitions("partition_skipped"), ids);
    assert_eq!(r2.finished()["skipped"], 10);
    assert_eq!(env.stat("jobs.insert"), 0, "a rerun submits no job at all");
    assert_eq!(buckets(&env, "orders_by_bucket"), expected(0, 100));

    // `plan` and `status` speak integer ranges too (--start/--end as strings).
    let p = env.run(
        &d,
        &["plan", "--format", "json", "--start", "30", "--end", "50"],
    );
    p.expect_code(0);
    let lines: Vec<&Value> = p
        .events
        .iter()
        .filter(|e| e.get("partition").is_some())
        .collect();
    assert_eq!(lines.len(), 2, "{}", p.stdout);
    assert_eq!(lines[0]["partition"], "30");
    assert_eq!(
        lines[1]["destination"],
        "demo-project.analytics.orders_by_bucket$40"
    );
    assert!(lines.iter().all(|l| l["action"] == "skip"), "{}", p.stdout);
    let st = env.run(&d, &["status", "--format", "json"]);
    st.expect_code(0);
    let summary = st.events.last().unwrap();
    assert_eq!(
        summary["summary"]["counts"]["succeeded"], 10,
        "{}",
        st.stdout
    );
    let st = env.run(&d, &["status"]);
    assert!(
        st.stdout.contains("10 partitions: 10 succeeded"),
        "{}",
        st.stdout
    );
    assert!(
        st.stdout.contains("\n 0 SSSSSSSSSS\n"),
        "the calendar: {}",
        st.stdout
    );

    // A table whose range is not a whole number of intervals: the last
    // partition is [90, 95), and @partition_end says so (rows with buckets
    // 95..99 would otherwise fail the job).
    range_table(&env, "orders_short", 0, 95, 10);
    let d = descriptor(
        "orders_short",
        json!({"granularity": "integer_range", "interval": 10, "start": 0, "end": 95, "order": "newest_first"}),
    );
    let r = env.run(&d, &[]);
    r.expect_code(0);
    assert_eq!(r.partitions("partition_succeeded")[0], "90");
    assert_eq!(buckets(&env, "orders_short"), expected(0, 95));

    // Refused before any job or audit row: misaligned start, wrong
    // interval, an end beyond the table's range, a mismatched granularity.
    env.emu.reset_stats();
    let cases = [
        (
            "orders_by_bucket",
            json!({"granularity": "integer_range", "interval": 10, "start": 5, "end": 100}),
            "partitions.start: 5 is not the start of a partition",
            "use 0 (the partition containing it) or 10",
        ),
        (
            "orders_by_bucket",
            json!({"granularity": "integer_range", "interval": 10, "list": [20, 45], "start": null, "end": null}),
            "partitions.list: 45 is not the start of a partition",
            "use 40",
        ),
        (
            "orders_by_bucket",
            json!({"granularity": "integer_range", "interval": 20, "start": 0, "end": 100}),
            "partitions.interval: 20 differs from the interval",
            "set partitions.interval to 10",
        ),
        (
            "orders_by_bucket",
            json!({"granularity": "integer_range", "interval": 10, "start": 0, "end": 120}),
            "partitions.end: the range 0..120 reaches partition 110",
            "at most 100",
        ),
        (
            "orders_by_bucket",
            json!({"granularity": "integer_range", "interval": 10, "start": -10, "end": 100}),
            "partitions.start: -10 is below the first partition",
            "starts at 0",
        ),
        (
            "orders_by_bucket",
            json!({"granularity": "day", "start": "2024-01-01", "end": "2024-01-03"}),
            "is integer-range partitioned (on `bucket`, range [0, 100), interval 10), but partitions.granularity is day",
            "\"integer_range\"",
        ),
        (
            demo::DAILY_TABLE,
            json!({"granularity": "integer_range", "interval": 10, "start": 0, "end": 100}),
            "is time-partitioned by day, but partitions.granularity is integer_range",
            "set partitions.granularity to \"day\"",
        ),
    ];
    for (table, partitions, message, hint) in cases {
        let mut d = descriptor(table, partitions.clone());
        if partitions["granularity"] == "day" {
            d["source"] = json!({"query": demo::DAILY_QUERY});
        }
        let r = env.run(&d, &[]);
        let error = r.expect_config_error(message, &partitions.to_string());
        assert!(s(&error["hint"]).contains(hint), "{partitions}: {error}");
    }
    assert_eq!(env.stat("jobs.insert"), 0, "nothing was submitted");
    assert_eq!(env.stat("tabledata.insertAll"), 0, "nothing was recorded");
    assert_eq!(buckets(&env, "orders_by_bucket"), expected(0, 100));
}
