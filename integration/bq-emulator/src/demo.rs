//! The embedded default scenario: a year of synthetic raw events and the
//! `events_daily` aggregate that `make demo` backfills.
//!
//! The generator is deterministic (a seeded SplitMix64 per day), so tests
//! can compute the expected aggregates independently of any SQL engine.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use serde_json::{Map, Value, json};

/// Project, datasets and tables of the demo.
pub const PROJECT: &str = "demo-project";
pub const RAW_DATASET: &str = "raw";
pub const RAW_TABLE: &str = "events";
pub const ANALYTICS_DATASET: &str = "analytics";
pub const DAILY_TABLE: &str = "events_daily";
pub const OPS_DATASET: &str = "ops";

/// Event kinds in the synthetic stream.
pub const EVENT_TYPES: [&str; 4] = ["view", "click", "purchase", "signup"];

/// The backfill query: per-day event counts by user and event type. The
/// partition arrives only through parameters.
pub const DAILY_QUERY: &str = "SELECT DATE(event_ts) AS day, user_id, event_type, COUNT(*) AS events \
FROM `demo-project.raw.events` \
WHERE event_ts >= @partition_start AND event_ts < @partition_end \
GROUP BY day, user_id, event_type";

/// tables.insert body of the raw events table (day-partitioned on event_ts).
pub fn raw_table() -> Value {
    json!({
        "tableReference": {"projectId": PROJECT, "datasetId": RAW_DATASET, "tableId": RAW_TABLE},
        "schema": {"fields": [
            {"name": "event_id", "type": "STRING", "mode": "REQUIRED"},
            {"name": "event_ts", "type": "TIMESTAMP", "mode": "REQUIRED"},
            {"name": "user_id", "type": "STRING", "mode": "REQUIRED"},
            {"name": "event_type", "type": "STRING", "mode": "REQUIRED"},
            {"name": "amount", "type": "FLOAT", "mode": "NULLABLE"}
        ]},
        "timePartitioning": {"type": "DAY", "field": "event_ts"}
    })
}

/// tables.insert body of the destination (day-partitioned on `day`).
pub fn daily_table() -> Value {
    json!({
        "tableReference": {"projectId": PROJECT, "datasetId": ANALYTICS_DATASET, "tableId": DAILY_TABLE},
        "schema": {"fields": [
            {"name": "day", "type": "DATE", "mode": "NULLABLE"},
            {"name": "user_id", "type": "STRING", "mode": "NULLABLE"},
            {"name": "event_type", "type": "STRING", "mode": "NULLABLE"},
            {"name": "events", "type": "INTEGER", "mode": "NULLABLE"}
        ]},
        "timePartitioning": {"type": "DAY", "field": "day"}
    })
}

struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The raw events of one day: 60–140 events from 25 users, deterministic.
pub fn events_for_day(day: NaiveDate) -> Vec<Map<String, Value>> {
    let seed = day
        .signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
        .num_days() as u64;
    let mut rng = SplitMix64(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0xB0B);
    let n = 60 + rng.below(81);
    let start = Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).unwrap());
    (0..n)
        .map(|i| {
            let micros = rng.below(86_400_000_000) as i64;
            let ts = start + Duration::microseconds(micros);
            let event_type = EVENT_TYPES[rng.below(EVENT_TYPES.len() as u64) as usize];
            let user = format!("u{:03}", 1 + rng.below(25));
            let amount = (event_type == "purchase").then(|| (rng.below(10_000) as f64) / 100.0);
            let mut row = Map::new();
            row.insert(
                "event_id".into(),
                json!(format!("{}-{:04}", day.format("%Y%m%d"), i)),
            );
            row.insert(
                "event_ts".into(),
                json!(ts.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
            );
            row.insert("user_id".into(), json!(user));
            row.insert("event_type".into(), json!(event_type));
            row.insert("amount".into(), amount.map_or(Value::Null, |a| json!(a)));
            row
        })
        .collect()
}

/// Every day in [start, end).
pub fn days(start: NaiveDate, end: NaiveDate) -> impl Iterator<Item = NaiveDate> {
    start.iter_days().take_while(move |d| *d < end)
}

/// The expected `events_daily` rows for [start, end): (day, user, type) → count,
/// computed from the generator alone.
pub fn expected_daily(start: NaiveDate, end: NaiveDate) -> BTreeMap<(String, String, String), i64> {
    let mut out = BTreeMap::new();
    for day in days(start, end) {
        for row in events_for_day(day) {
            let key = (
                day.format("%Y-%m-%d").to_string(),
                row["user_id"].as_str().unwrap_or_default().to_string(),
                row["event_type"].as_str().unwrap_or_default().to_string(),
            );
            *out.entry(key).or_insert(0) += 1;
        }
    }
    out
}

/// Seed the demo over the REST API of a running emulator (or anything that
/// speaks BigQuery's REST v2): datasets, the raw table with [start, end) of
/// events, and the empty destination table.
pub async fn seed_over_http(
    base_url: &str,
    start: NaiveDate,
    end: NaiveDate,
) -> Result<usize, String> {
    let http = reqwest::Client::new();
    let api = format!(
        "{}/bigquery/v2/projects/{PROJECT}",
        base_url.trim_end_matches('/')
    );
    let post = |url: String, body: Value| {
        let http = http.clone();
        async move {
            let resp = http
                .post(&url)
                .json(&body)
                .send()
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            // 409: already there (seeding twice is fine).
            if status.is_success() || status.as_u16() == 409 {
                Ok(serde_json::from_str::<Value>(&text).unwrap_or(Value::Null))
            } else {
                Err(format!("{url}: HTTP {status}: {text}"))
            }
        }
    };
    for ds in [RAW_DATASET, ANALYTICS_DATASET, OPS_DATASET] {
        post(
            format!("{api}/datasets"),
            json!({"datasetReference": {"projectId": PROJECT, "datasetId": ds}}),
        )
        .await?;
    }
    post(format!("{api}/datasets/{RAW_DATASET}/tables"), raw_table()).await?;
    post(
        format!("{api}/datasets/{ANALYTICS_DATASET}/tables"),
        daily_table(),
    )
    .await?;
    let mut total = 0;
    for day in days(start, end) {
        let rows: Vec<Value> = events_for_day(day)
            .into_iter()
            .map(|r| json!({"insertId": r["event_id"].clone(), "json": r}))
            .collect();
        total += rows.len();
        let resp = post(
            format!("{api}/datasets/{RAW_DATASET}/tables/{RAW_TABLE}/insertAll"),
            json!({"kind": "bigquery#tableDataInsertAllRequest", "rows": rows}),
        )
        .await?;
        if resp
            .get("insertErrors")
            .is_some_and(|e| e.as_array().is_some_and(|a| !a.is_empty()))
        {
            return Err(format!("insertAll for {day}: {resp}"));
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_deterministic_and_stays_inside_its_day() {
        let d = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
        let a = events_for_day(d);
        assert_eq!(a, events_for_day(d));
        assert!((60..=140).contains(&a.len()));
        for row in &a {
            assert!(row["event_ts"].as_str().unwrap().starts_with("2024-02-29T"));
        }
        assert_ne!(a, events_for_day(d.succ_opt().unwrap()));
    }

    #[test]
    fn expected_counts_add_up_to_the_events() {
        let s = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
        let e = NaiveDate::from_ymd_opt(2024, 1, 8).unwrap();
        let total: i64 = expected_daily(s, e).values().sum();
        let events: usize = days(s, e).map(|d| events_for_day(d).len()).sum();
        assert_eq!(total as usize, events);
    }
}
