//! Partition planning: time granularities and integer ranges, partition IDs,
//! decorators, and the ordered list of partitions a run covers. Pure: no I/O.

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

/// Which partitions a run covers; `T` is a partition start (an instant for
/// time partitioning, an integer for integer-range partitioning).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection<T> {
    /// Half-open: every partition whose start is in [start, end).
    Range { start: T, end: T },
    /// Explicit partitions, each given by its start.
    List(Vec<T>),
}

/// How the destination is partitioned, with the selected partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// Time-unit partitioning (`timePartitioning`).
    Time {
        granularity: Granularity,
        selection: Selection<DateTime<Utc>>,
    },
    /// Integer-range partitioning (`rangePartitioning`): partitions are
    /// `interval` wide; a partition is named by its (inclusive) start.
    IntegerRange {
        interval: i64,
        selection: Selection<i64>,
    },
}

/// The `partitions` block of the settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionSpec {
    pub scheme: Scheme,
    pub order: Order,
}

/// The descriptor spelling of integer-range partitioning.
pub const INTEGER_RANGE: &str = "integer_range";

impl PartitionSpec {
    /// The descriptor's `granularity`: `hour`, `day`, `month`, `year` or
    /// `integer_range`.
    pub fn granularity_name(&self) -> &'static str {
        match &self.scheme {
            Scheme::Time { granularity, .. } => granularity.as_str(),
            Scheme::IntegerRange { .. } => INTEGER_RANGE,
        }
    }

    /// The time granularity; `None` for integer-range partitioning.
    pub fn time_granularity(&self) -> Option<Granularity> {
        match &self.scheme {
            Scheme::Time { granularity, .. } => Some(*granularity),
            Scheme::IntegerRange { .. } => None,
        }
    }

    /// The integer-range interval; `None` for time partitioning.
    pub fn interval(&self) -> Option<i64> {
        match &self.scheme {
            Scheme::Time { .. } => None,
            Scheme::IntegerRange { interval, .. } => Some(*interval),
        }
    }
}

/// A partition's half-open window of partitioning-column values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// [start, end) in UTC.
    Time {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    /// [start, end) of the integer partitioning column.
    Integer { start: i64, end: i64 },
}

/// One partition: its decorator ID and its half-open window.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Partition {
    /// The decorator ID: `2024011503` (hour), `20240115` (day),
    /// `202401` (month), `2024` (year), or the decimal start of an integer
    /// range (`40`, `-10`).
    pub id: String,
    pub window: Window,
}

impl Partition {
    /// The time window's start and end; `None` for an integer range.
    pub fn time_window(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        match self.window {
            Window::Time { start, end } => Some((start, end)),
            Window::Integer { .. } => None,
        }
    }

    /// The date of a time window's start: the `@partition_date` parameter.
    pub fn date(&self) -> Option<NaiveDate> {
        self.time_window().map(|(start, _)| start.date_naive())
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
        window: Window::Time {
            start,
            end: next_start(g, start),
        },
    }
}

/// The integer-range partition starting at `start`, `interval` wide. Its
/// end saturates at `i64::MAX`, which no table's range can exceed (the
/// range's end is an exclusive INT64); [`clamp_to_table_end`] narrows it to
/// the table's range.
pub fn integer_partition(start: i64, interval: i64) -> Partition {
    Partition {
        id: start.to_string(),
        window: Window::Integer {
            start,
            end: start.saturating_add(interval),
        },
    }
}

/// BigQuery's last integer-range partition ends at the table's range end
/// even when the range is not a whole number of intervals: values from
/// there on go to `__UNPARTITIONED__`. Narrows each partition's end so that
/// `@partition_end` never selects rows the partition cannot hold.
pub fn clamp_to_table_end(plan: &[Partition], table_end: i64) -> Vec<Partition> {
    plan.iter()
        .map(|p| match p.window {
            Window::Integer { start, end } => Partition {
                id: p.id.clone(),
                window: Window::Integer {
                    start,
                    end: end.min(table_end),
                },
            },
            Window::Time { .. } => p.clone(),
        })
        .collect()
}

/// Number of integer-range partitions with start in `[start, end)`, i.e.
/// ceil((end - start) / interval), without overflow (0 for an empty range).
pub fn integer_count(start: i64, end: i64, interval: i64) -> u128 {
    if end <= start || interval <= 0 {
        return 0;
    }
    let span = (i128::from(end) - i128::from(start)) as u128;
    let step = interval as u128;
    span.div_ceil(step)
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
    let (g, selection) = match &spec.scheme {
        Scheme::Time {
            granularity,
            selection,
        } => (*granularity, selection),
        Scheme::IntegerRange {
            interval,
            selection,
        } => {
            return match selection {
                Selection::List(list) => list.len(),
                Selection::Range { start, end } => {
                    usize::try_from(integer_count(*start, *end, *interval)).unwrap_or(usize::MAX)
                }
            };
        }
    };
    match selection {
        Selection::List(list) => list.len(),
        Selection::Range { start, end } => {
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
    let mut out: Vec<Partition> = match &spec.scheme {
        Scheme::Time {
            granularity,
            selection,
        } => plan_time(*granularity, selection),
        Scheme::IntegerRange {
            interval,
            selection,
        } => plan_integer(*interval, selection),
    };
    if spec.order == Order::NewestFirst {
        out.reverse();
    }
    out
}

/// Integer-range partitions, ascending: start, start+interval, ... < end
/// (checked arithmetic: the walk stops instead of wrapping), or the sorted,
/// deduplicated list.
fn plan_integer(interval: i64, selection: &Selection<i64>) -> Vec<Partition> {
    match selection {
        Selection::List(list) => {
            let mut starts = list.clone();
            starts.sort_unstable();
            starts.dedup();
            starts
                .into_iter()
                .map(|s| integer_partition(s, interval))
                .collect()
        }
        Selection::Range { start, end } => {
            if interval <= 0 {
                return Vec::new();
            }
            let n = integer_count(*start, *end, interval).min(MAX_PARTITIONS as u128) as usize;
            let mut v = Vec::with_capacity(n);
            let mut s = Some(*start);
            while let Some(cur) = s.filter(|c| c < end) {
                v.push(integer_partition(cur, interval));
                s = cur.checked_add(interval);
            }
            v
        }
    }
}

fn plan_time(g: Granularity, selection: &Selection<DateTime<Utc>>) -> Vec<Partition> {
    match selection {
        Selection::List(list) => {
            let mut starts: Vec<DateTime<Utc>> = list.iter().map(|t| floor(g, *t)).collect();
            starts.sort_unstable();
            starts.dedup();
            starts.into_iter().map(|t| partition_at(g, t)).collect()
        }
        Selection::Range { start, end } => {
            let mut v = Vec::new();
            let mut t = ceil(g, *start);
            while t < *end {
                let p = partition_at(g, t);
                t = next_start(g, t);
                v.push(p);
            }
            v
        }
    }
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

/// Parses an integer-range bound given as text (`40`, `-10`): an optional
/// `-` and decimal digits, within INT64. Errors are lowercase message
/// fragments.
pub fn parse_integer(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{s}` is not an integer"));
    }
    s.parse()
        .map_err(|_| format!("`{s}` is out of range for INT64"))
}

/// The partition start at or below `v` on the grid `origin + k * interval`
/// (`None` on overflow or a non-positive interval).
pub fn align_down(v: i64, origin: i64, interval: i64) -> Option<i64> {
    if interval <= 0 {
        return None;
    }
    let off = (i128::from(v) - i128::from(origin)).div_euclid(i128::from(interval));
    i64::try_from(i128::from(origin) + off * i128::from(interval)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn spec(g: Granularity, start: &str, end: &str, order: Order) -> PartitionSpec {
        PartitionSpec {
            scheme: Scheme::Time {
                granularity: g,
                selection: Selection::Range {
                    start: t(start),
                    end: t(end),
                },
            },
            order,
        }
    }

    fn window(p: &Partition) -> (DateTime<Utc>, DateTime<Utc>) {
        p.time_window().expect("a time partition")
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
            window(&p),
            (t("2024-01-15T00:00:00Z"), t("2024-01-16T00:00:00Z"))
        );
        assert_eq!(p.date().unwrap().to_string(), "2024-01-15");
        assert_eq!(decorator("orders", &p), "orders$20240115");
    }

    #[test]
    fn calendar_edges() {
        let feb = partition_at(Granularity::Month, t("2024-02-10T00:00:00Z"));
        assert_eq!(window(&feb).1, t("2024-03-01T00:00:00Z"));
        let dec = partition_at(Granularity::Month, t("2023-12-31T23:00:00Z"));
        assert_eq!(
            (dec.id.as_str(), window(&dec).1),
            ("202312", t("2024-01-01T00:00:00Z"))
        );
        let leap = partition_at(Granularity::Day, t("2024-02-29T12:00:00Z"));
        assert_eq!(window(&leap).1, t("2024-03-01T00:00:00Z"));
        let year = partition_at(Granularity::Year, t("2023-07-01T00:00:00Z"));
        assert_eq!(window(&year).1, t("2024-01-01T00:00:00Z"));
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
                assert!(
                    p.windows(2).all(|w| window(&w[0]).1 == window(&w[1]).0),
                    "contiguous"
                );
                assert!(p.iter().all(|x| window(x).0 >= t(a) && window(x).0 < t(b)));
            }
        }
    }

    #[test]
    fn list_plan_sorts() {
        let s = PartitionSpec {
            scheme: Scheme::Time {
                granularity: Granularity::Day,
                selection: Selection::List(vec![
                    t("2024-03-01T00:00:00Z"),
                    t("2024-01-01T00:00:00Z"),
                ]),
            },
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
        assert_eq!(
            parse_partition_id(Granularity::Hour, &p.id),
            Ok(window(&p).0)
        );
    }

    fn int_spec(interval: i64, selection: Selection<i64>, order: Order) -> PartitionSpec {
        PartitionSpec {
            scheme: Scheme::IntegerRange {
                interval,
                selection,
            },
            order,
        }
    }

    fn ids(spec: &PartitionSpec) -> Vec<String> {
        plan(spec).into_iter().map(|p| p.id).collect()
    }

    fn int_window(p: &Partition) -> (i64, i64) {
        match p.window {
            Window::Integer { start, end } => (start, end),
            Window::Time { .. } => panic!("an integer partition"),
        }
    }

    #[test]
    fn integer_range_plans() {
        let s = int_spec(
            10,
            Selection::Range { start: 0, end: 100 },
            Order::OldestFirst,
        );
        assert_eq!(
            ids(&s),
            ["0", "10", "20", "30", "40", "50", "60", "70", "80", "90"]
        );
        assert_eq!(count(&s), 10);
        assert_eq!(s.granularity_name(), "integer_range");
        assert_eq!(s.interval(), Some(10));
        assert_eq!(s.time_granularity(), None);
        let p = plan(&s);
        assert_eq!(int_window(&p[4]), (40, 50));
        assert_eq!(decorator("t", &p[4]), "t$40");
        assert_eq!(p[4].time_window(), None);
        assert_eq!(p[4].date(), None);

        // An end off the grid: the last start is still below it.
        let s = int_spec(
            30,
            Selection::Range { start: 0, end: 100 },
            Order::NewestFirst,
        );
        assert_eq!(ids(&s), ["90", "60", "30", "0"]);
        assert_eq!(count(&s), 4);

        // Negative values; IDs are the decimal start.
        let s = int_spec(
            5,
            Selection::Range { start: -10, end: 3 },
            Order::OldestFirst,
        );
        assert_eq!(ids(&s), ["-10", "-5", "0"]);
        assert_eq!(count(&s), 3);

        // Empty and inverted ranges.
        for (a, b) in [(5, 5), (10, 0)] {
            let s = int_spec(1, Selection::Range { start: a, end: b }, Order::OldestFirst);
            assert!(plan(&s).is_empty());
            assert_eq!(count(&s), 0);
        }
    }

    #[test]
    fn integer_range_arithmetic_never_wraps() {
        let s = int_spec(
            i64::MAX,
            Selection::Range {
                start: i64::MIN,
                end: i64::MAX,
            },
            Order::OldestFirst,
        );
        let p = plan(&s);
        assert_eq!(p.len(), count(&s));
        assert_eq!(
            p.iter().map(int_window).collect::<Vec<_>>(),
            [(i64::MIN, -1), (-1, i64::MAX - 1), (i64::MAX - 1, i64::MAX)]
        );
        // The last start near i64::MAX: its end saturates, the walk stops.
        let s = int_spec(
            10,
            Selection::Range {
                start: i64::MAX - 15,
                end: i64::MAX,
            },
            Order::OldestFirst,
        );
        let p = plan(&s);
        assert_eq!(
            p.iter().map(int_window).collect::<Vec<_>>(),
            [(i64::MAX - 15, i64::MAX - 5), (i64::MAX - 5, i64::MAX)]
        );
        assert_eq!(count(&s), 2);
        assert_eq!(integer_count(i64::MIN, i64::MAX, 1), u128::from(u64::MAX));
    }

    #[test]
    fn integer_range_lists_sort_and_clamp() {
        let s = int_spec(10, Selection::List(vec![40, -10, 0]), Order::OldestFirst);
        assert_eq!(ids(&s), ["-10", "0", "40"]);
        assert_eq!(count(&s), 3);
        let clamped = clamp_to_table_end(&plan(&s), 45);
        assert_eq!(
            clamped.iter().map(int_window).collect::<Vec<_>>(),
            [(-10, 0), (0, 10), (40, 45)]
        );
        // Time partitions are left alone.
        let day = partition_at(Granularity::Day, t("2024-01-15T00:00:00Z"));
        assert_eq!(clamp_to_table_end(std::slice::from_ref(&day), 0), [day]);
    }

    #[test]
    fn integer_bounds_parse_strictly() {
        assert_eq!(parse_integer("40"), Ok(40));
        assert_eq!(parse_integer("-10"), Ok(-10));
        assert_eq!(parse_integer("0"), Ok(0));
        assert_eq!(parse_integer("-9223372036854775808"), Ok(i64::MIN));
        for bad in ["", "-", "+4", " 4", "4 ", "1e3", "4.0", "0x10", "--1", "４"] {
            assert!(
                parse_integer(bad).unwrap_err().contains("not an integer"),
                "{bad}"
            );
        }
        assert!(
            parse_integer("9223372036854775808")
                .unwrap_err()
                .contains("out of range")
        );
    }

    #[test]
    fn alignment() {
        assert_eq!(align_down(45, 0, 10), Some(40));
        assert_eq!(align_down(40, 0, 10), Some(40));
        assert_eq!(align_down(-5, 0, 10), Some(-10));
        assert_eq!(align_down(7, 3, 5), Some(3));
        assert_eq!(align_down(i64::MIN, i64::MAX, 10), None);
        assert_eq!(align_down(1, 0, 0), None);
    }
}
