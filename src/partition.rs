//! Partition planning: granularities, partition IDs, decorators, and the
//! ordered list of partitions a run covers. Pure: no I/O.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Timelike, Utc};
use serde::Serialize;

/// Partition granularity, matching BigQuery's `timePartitioning.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    Hour,
    Day,
    Month,
    Year,
}

/// Processing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    OldestFirst,
    NewestFirst,
}

/// Which partitions a run covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Half-open: every partition whose start is in [start, end).
    Range {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    /// Explicit partitions, each given by its start instant.
    List(Vec<DateTime<Utc>>),
}

/// The `partitions` block of the settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionSpec {
    pub granularity: Granularity,
    pub selection: Selection,
    pub order: Order,
}

/// One partition: its decorator ID and its half-open time window.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Partition {
    /// The decorator ID: `2024011503` (hour), `20240115` (day),
    /// `202401` (month), `2024` (year).
    pub id: String,
    /// Inclusive start of the partition's window (UTC).
    pub start: DateTime<Utc>,
    /// Exclusive end of the partition's window (UTC).
    pub end: DateTime<Utc>,
}

impl Partition {
    /// The date of the window's start: the `@partition_date` parameter.
    pub fn date(&self) -> NaiveDate {
        self.start.date_naive()
    }
}

/// BigQuery's most partitions per table: a larger selection can never be
/// written by one backfill.
pub const MAX_PARTITIONS: usize = 10_000;

impl Granularity {
    /// The descriptor spelling: `hour`, `day`, `month`, `year`.
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Hour => "hour",
            Granularity::Day => "day",
            Granularity::Month => "month",
            Granularity::Year => "year",
        }
    }

    /// BigQuery's `timePartitioning.type` for this granularity.
    pub fn bigquery_type(self) -> &'static str {
        match self {
            Granularity::Hour => "HOUR",
            Granularity::Day => "DAY",
            Granularity::Month => "MONTH",
            Granularity::Year => "YEAR",
        }
    }

    /// `a` or `an`, for messages.
    pub fn article(self) -> &'static str {
        if self == Granularity::Hour { "an" } else { "a" }
    }

    /// Example boundary values in every accepted spelling, for hints.
    pub fn examples(self) -> &'static str {
        match self {
            Granularity::Hour => "`2024-01-15T03`, `2024-01-15T03:00:00Z` or `2024011503`",
            Granularity::Day => "`2024-01-15` or `20240115`",
            Granularity::Month => "`2024-01` or `202401`",
            Granularity::Year => "`2024`",
        }
    }
}

impl std::fmt::Display for Granularity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// First instant a partition may start at. Time-unit column partitioning
/// sends values outside [1960-01-01, 2160-01-01) to `__UNPARTITIONED__`, so
/// no decorator outside that window names a real partition.
pub fn earliest() -> DateTime<Utc> {
    ymdh(1960, 1, 1, 0).expect("valid constant date")
}

/// The exclusive upper end of the partitionable window (see [`earliest`]).
pub fn latest() -> DateTime<Utc> {
    ymdh(2160, 1, 1, 0).expect("valid constant date")
}

fn ymdh(y: i32, m: u32, d: u32, h: u32) -> Option<DateTime<Utc>> {
    NaiveDate::from_ymd_opt(y, m, d)?
        .and_hms_opt(h, 0, 0)
        .map(|t| t.and_utc())
}

/// Start of the partition that contains `t`.
pub fn floor(g: Granularity, t: DateTime<Utc>) -> DateTime<Utc> {
    let (y, m, d, h) = (t.year(), t.month(), t.day(), t.hour());
    let floored = match g {
        Granularity::Hour => ymdh(y, m, d, h),
        Granularity::Day => ymdh(y, m, d, 0),
        Granularity::Month => ymdh(y, m, 1, 0),
        Granularity::Year => ymdh(y, 1, 1, 0),
    };
    floored.expect("flooring a valid instant yields a valid instant")
}

/// Whether `t` is the first instant of a partition of granularity `g`.
pub fn is_boundary(g: Granularity, t: DateTime<Utc>) -> bool {
    floor(g, t) == t
}

/// Start of the partition after the one containing `t`.
pub fn next_start(g: Granularity, t: DateTime<Utc>) -> DateTime<Utc> {
    let start = floor(g, t);
    let next = match g {
        Granularity::Hour => Some(start + Duration::hours(1)),
        Granularity::Day => Some(start + Duration::days(1)),
        Granularity::Month => {
            let (y, m) = if start.month() == 12 {
                (start.year() + 1, 1)
            } else {
                (start.year(), start.month() + 1)
            };
            ymdh(y, m, 1, 0)
        }
        Granularity::Year => ymdh(start.year() + 1, 1, 1, 0),
    };
    next.expect("the next partition of a valid instant is a valid instant")
}

/// The partition ID (decorator suffix) of the partition containing `t`.
pub fn format_id(g: Granularity, t: DateTime<Utc>) -> String {
    let f = match g {
        Granularity::Hour => "%Y%m%d%H",
        Granularity::Day => "%Y%m%d",
        Granularity::Month => "%Y%m",
        Granularity::Year => "%Y",
    };
    floor(g, t).format(f).to_string()
}

/// The partition containing `start` (normally its first instant).
pub fn partition_at(g: Granularity, start: DateTime<Utc>) -> Partition {
    let start = floor(g, start);
    Partition {
        id: format_id(g, start),
        start,
        end: next_start(g, start),
    }
}

/// `table$id`: the destination that addresses exactly one partition.
pub fn decorator(table: &str, p: &Partition) -> String {
    format!("{table}${}", p.id)
}

/// First partition start at or after `t`.
fn ceil(g: Granularity, t: DateTime<Utc>) -> DateTime<Utc> {
    if is_boundary(g, t) {
        t
    } else {
        next_start(g, t)
    }
}

fn months_since_year_zero(t: DateTime<Utc>) -> i64 {
    i64::from(t.year()) * 12 + i64::from(t.month0())
}

/// How many partitions the spec covers, without materialising them.
///
/// For a range this counts partitions whose start lies in `[start, end)`;
/// for a list it is the list's length (duplicates are rejected earlier).
pub fn count(spec: &PartitionSpec) -> usize {
    match &spec.selection {
        Selection::List(list) => list.len(),
        Selection::Range { start, end } => {
            let g = spec.granularity;
            let first = ceil(g, *start);
            if first >= *end {
                return 0;
            }
            // `end` itself may be off-grid: count up to the last start before it.
            let last_end = ceil(g, *end);
            let n = match g {
                Granularity::Hour => (last_end - first).num_hours(),
                Granularity::Day => (last_end - first).num_days(),
                Granularity::Month => {
                    months_since_year_zero(last_end) - months_since_year_zero(first)
                }
                Granularity::Year => i64::from(last_end.year() - first.year()),
            };
            usize::try_from(n).unwrap_or(0)
        }
    }
}

/// Every partition the spec covers, in the spec's processing order.
pub fn plan(spec: &PartitionSpec) -> Vec<Partition> {
    let g = spec.granularity;
    let mut out: Vec<Partition> = match &spec.selection {
        Selection::List(list) => {
            let mut starts: Vec<DateTime<Utc>> = list.iter().map(|t| floor(g, *t)).collect();
            starts.sort_unstable();
            starts.dedup();
            starts.into_iter().map(|t| partition_at(g, t)).collect()
        }
        Selection::Range { start, end } => {
            let mut v = Vec::with_capacity(count(spec).min(MAX_PARTITIONS));
            let mut t = ceil(g, *start);
            while t < *end {
                let p = partition_at(g, t);
                t = p.end;
                v.push(p);
            }
            v
        }
    };
    if spec.order == Order::NewestFirst {
        out.reverse();
    }
    out
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses a fixed-layout date-time whose fields sit at known byte offsets:
/// stricter than chrono's format parser, which accepts signs and extra digits.
fn fixed(s: &str, layout: &str) -> Option<DateTime<Utc>> {
    if s.len() != layout.len() || !s.is_ascii() {
        return None;
    }
    let (mut y, mut mo, mut d, mut h) =
        (String::new(), String::new(), String::new(), String::new());
    for (c, l) in s.chars().zip(layout.chars()) {
        match l {
            'Y' => y.push(c),
            'M' => mo.push(c),
            'D' => d.push(c),
            'H' => h.push(c),
            sep if c != sep => return None,
            _ => {}
        }
    }
    let year = i32::try_from(digits(&y)?).ok()?;
    let month = if mo.is_empty() { 1 } else { digits(&mo)? };
    let day = if d.is_empty() { 1 } else { digits(&d)? };
    let hour = if h.is_empty() { 0 } else { digits(&h)? };
    ymdh(year, month, day, hour)
}

/// Parses a point in time in any spelling the descriptor accepts, without
/// checking that it is a partition boundary:
/// `2024`, `202401`, `20240115`, `2024011503` (partition IDs),
/// `2024-01`, `2024-01-15`, `2024-01-15T03`, or RFC 3339 with an offset.
pub fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    const LAYOUTS: &[&str] = &[
        "YYYY",
        "YYYYMM",
        "YYYYMMDD",
        "YYYYMMDDHH",
        "YYYY-MM",
        "YYYY-MM-DD",
        "YYYY-MM-DDTHH",
    ];
    for layout in LAYOUTS {
        if s.len() == layout.len()
            && let Some(t) = fixed(s, layout)
        {
            return Ok(t);
        }
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok() {
        return Err(format!("`{s}` has no UTC offset"));
    }
    Err(format!("`{s}` is not a recognised date or time"))
}

fn check_window(t: DateTime<Utc>, s: &str) -> Result<(), String> {
    if t < earliest() || t > latest() {
        return Err(format!(
            "`{s}` is outside BigQuery's partitionable dates (1960-01-01 to 2159-12-31)"
        ));
    }
    Ok(())
}

/// Parses a range bound or list entry and checks that it is the first
/// instant of a partition of granularity `g` inside BigQuery's
/// partitionable window. Errors are lowercase message fragments.
pub fn parse_boundary(g: Granularity, s: &str) -> Result<DateTime<Utc>, String> {
    let t = parse_instant(s)?;
    check_window(t, s)?;
    if !is_boundary(g, t) {
        return Err(format!(
            "`{s}` is not the start of {} {g} partition",
            g.article()
        ));
    }
    Ok(t)
}

/// Parses a partition ID of exactly the granularity's layout
/// (`2024011503`, `20240115`, `202401`, `2024`) into the partition's start.
pub fn parse_partition_id(g: Granularity, id: &str) -> Result<DateTime<Utc>, String> {
    let layout = match g {
        Granularity::Hour => "YYYYMMDDHH",
        Granularity::Day => "YYYYMMDD",
        Granularity::Month => "YYYYMM",
        Granularity::Year => "YYYY",
    };
    let t = fixed(id, layout)
        .ok_or_else(|| format!("`{id}` is not a {g} partition id (expected {layout})"))?;
    check_window(t, id)?;
    if t >= latest() {
        return Err(format!(
            "`{id}` is outside BigQuery's partitionable dates (1960-01-01 to 2159-12-31)"
        ));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn spec(g: Granularity, start: &str, end: &str, order: Order) -> PartitionSpec {
        PartitionSpec {
            granularity: g,
            selection: Selection::Range {
                start: t(start),
                end: t(end),
            },
            order,
        }
    }

    #[test]
    fn ids_and_decorators() {
        let at = t("2024-01-15T03:00:00Z");
        assert_eq!(partition_at(Granularity::Hour, at).id, "2024011503");
        assert_eq!(partition_at(Granularity::Day, at).id, "20240115");
        assert_eq!(partition_at(Granularity::Month, at).id, "202401");
        assert_eq!(partition_at(Granularity::Year, at).id, "2024");
        let p = partition_at(Granularity::Day, at);
        assert_eq!(
            (p.start, p.end),
            (t("2024-01-15T00:00:00Z"), t("2024-01-16T00:00:00Z"))
        );
        assert_eq!(p.date().to_string(), "2024-01-15");
        assert_eq!(decorator("orders", &p), "orders$20240115");
    }

    #[test]
    fn calendar_edges() {
        let feb = partition_at(Granularity::Month, t("2024-02-10T00:00:00Z"));
        assert_eq!(feb.end, t("2024-03-01T00:00:00Z"));
        let dec = partition_at(Granularity::Month, t("2023-12-31T23:00:00Z"));
        assert_eq!(
            (dec.id.as_str(), dec.end),
            ("202312", t("2024-01-01T00:00:00Z"))
        );
        let leap = partition_at(Granularity::Day, t("2024-02-29T12:00:00Z"));
        assert_eq!(leap.end, t("2024-03-01T00:00:00Z"));
        let year = partition_at(Granularity::Year, t("2023-07-01T00:00:00Z"));
        assert_eq!(year.end, t("2024-01-01T00:00:00Z"));
    }

    #[test]
    fn plan_orders_and_matches_count() {
        let s = spec(
            Granularity::Month,
            "2023-11-01T00:00:00Z",
            "2024-03-01T00:00:00Z",
            Order::OldestFirst,
        );
        let ids: Vec<String> = plan(&s).into_iter().map(|p| p.id).collect();
        assert_eq!(ids, ["202311", "202312", "202401", "202402"]);
        let s = PartitionSpec {
            order: Order::NewestFirst,
            ..s
        };
        let ids: Vec<String> = plan(&s).into_iter().map(|p| p.id).collect();
        assert_eq!(ids, ["202402", "202401", "202312", "202311"]);

        let ranges = [
            ("2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z"),
            ("2024-01-01T00:00:00Z", "2024-03-01T05:00:00Z"),
            ("2023-12-31T22:00:00Z", "2025-01-02T00:00:00Z"),
            ("2024-03-01T00:00:00Z", "2024-01-01T00:00:00Z"),
        ];
        for g in [
            Granularity::Hour,
            Granularity::Day,
            Granularity::Month,
            Granularity::Year,
        ] {
            for (a, b) in ranges {
                let s = spec(g, a, b, Order::OldestFirst);
                let p = plan(&s);
                assert_eq!(p.len(), count(&s), "{g} {a}..{b}");
                assert!(p.windows(2).all(|w| w[0].end == w[1].start), "contiguous");
                assert!(p.iter().all(|x| x.start >= t(a) && x.start < t(b)));
            }
        }
    }

    #[test]
    fn list_plan_sorts() {
        let s = PartitionSpec {
            granularity: Granularity::Day,
            selection: Selection::List(vec![t("2024-03-01T00:00:00Z"), t("2024-01-01T00:00:00Z")]),
            order: Order::OldestFirst,
        };
        let ids: Vec<String> = plan(&s).into_iter().map(|p| p.id).collect();
        assert_eq!(ids, ["20240101", "20240301"]);
        assert_eq!(count(&s), 2);
    }

    #[test]
    fn boundaries() {
        assert_eq!(
            parse_boundary(Granularity::Hour, "2024-01-15T03"),
            Ok(t("2024-01-15T03:00:00Z"))
        );
        assert_eq!(
            parse_boundary(Granularity::Hour, "2024011503"),
            Ok(t("2024-01-15T03:00:00Z"))
        );
        assert_eq!(
            parse_boundary(Granularity::Hour, "2024-01-15T05:00:00+02:00"),
            Ok(t("2024-01-15T03:00:00Z"))
        );
        assert_eq!(
            parse_boundary(Granularity::Day, "20240115"),
            Ok(t("2024-01-15T00:00:00Z"))
        );
        assert_eq!(
            parse_boundary(Granularity::Month, "2024-01"),
            Ok(t("2024-01-01T00:00:00Z"))
        );
        assert_eq!(
            parse_boundary(Granularity::Year, "2024"),
            Ok(t("2024-01-01T00:00:00Z"))
        );
        assert!(
            parse_boundary(Granularity::Hour, "2024-01-15T03:30:00Z")
                .unwrap_err()
                .contains("not the start of an hour")
        );
        assert!(parse_boundary(Granularity::Month, "2024-01-15").is_err());
        assert!(
            parse_boundary(Granularity::Day, "2024-01-15T00:00:00")
                .unwrap_err()
                .contains("no UTC offset")
        );
        assert!(
            parse_boundary(Granularity::Day, "1900-01-01")
                .unwrap_err()
                .contains("partitionable")
        );
        for bad in [
            "",
            "2024-1-15",
            "２０２４",
            "-2024",
            "20241",
            "2024-01-15T24",
            "2024-00",
            "abcd",
        ] {
            assert!(parse_boundary(Granularity::Day, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn partition_ids_are_strict() {
        assert_eq!(
            parse_partition_id(Granularity::Hour, "2024011503"),
            Ok(t("2024-01-15T03:00:00Z"))
        );
        assert_eq!(
            parse_partition_id(Granularity::Year, "2024"),
            Ok(t("2024-01-01T00:00:00Z"))
        );
        for (g, bad) in [
            (Granularity::Day, "2024-01-15"),
            (Granularity::Day, "2024011503"),
            (Granularity::Month, "202413"),
            (Granularity::Hour, "2024011524"),
            (Granularity::Year, "2160"),
            (Granularity::Year, "+202"),
        ] {
            assert!(parse_partition_id(g, bad).is_err(), "{g} {bad}");
        }
        // Round trip.
        let p = partition_at(Granularity::Hour, t("2031-07-04T17:00:00Z"));
        assert_eq!(parse_partition_id(Granularity::Hour, &p.id), Ok(p.start));
    }
}
