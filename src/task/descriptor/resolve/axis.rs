//! The two axes partitions start on, time instants and integers, behind
//! one trait so that range and list validation is written once.

use chrono::{DateTime, Utc};

use super::Builder;
use crate::planning::partition::{self, PartitionSpec, Selection};
use crate::task::descriptor::raw::{Bound, Granularity};

/// What range and list validation needs to know about the values
/// partitions start at: instants (time granularities) or integers.
pub(super) trait Axis {
    type T: Ord + Copy;
    /// Parses a bound; records an issue naming `field` when it is invalid.
    fn parse(&self, b: &mut Builder<'_>, field: &str, v: &Bound) -> Option<Self::T>;
    /// Parses a list entry (a partition's start).
    fn parse_list_entry(&self, b: &mut Builder<'_>, field: &str, v: &Bound) -> Option<Self::T> {
        self.parse(b, field, v)
    }
    /// How many partitions start in [s, e); `None` when unknown.
    fn count(&self, s: Self::T, e: Self::T) -> Option<u128>;
    /// The end that rebuilds only the partition starting at `s`, for hints.
    fn only_hint(&self, s: Self::T) -> String;
    /// The granularity, for messages.
    fn name(&self) -> String;
    /// How to split an oversized range.
    fn split_hint(&self) -> &'static str;
}

pub(super) struct TimeAxis(pub(super) partition::Granularity);

impl Axis for TimeAxis {
    type T = DateTime<Utc>;

    fn parse(&self, b: &mut Builder<'_>, field: &str, v: &Bound) -> Option<DateTime<Utc>> {
        b.boundary(self.0, field, v)
    }

    fn parse_list_entry(
        &self,
        b: &mut Builder<'_>,
        field: &str,
        v: &Bound,
    ) -> Option<DateTime<Utc>> {
        let t = b.boundary(self.0, field, v)?;
        if t >= partition::latest() {
            b.issue(
                field,
                format!(
                    "`{v}` is outside BigQuery's partitionable dates (1960-01-01 to 2159-12-31)"
                ),
                "choose dates inside that window",
            );
            return None;
        }
        Some(t)
    }

    fn count(&self, s: DateTime<Utc>, e: DateTime<Utc>) -> Option<u128> {
        let spec = PartitionSpec {
            scheme: partition::Scheme::Time {
                granularity: self.0,
                selection: Selection::Range { start: s, end: e },
            },
            order: partition::Order::OldestFirst,
        };
        Some(partition::count(&spec) as u128)
    }

    fn only_hint(&self, s: DateTime<Utc>) -> String {
        let g = self.0;
        format!(
            "to rebuild only `{}` set end to `{}`",
            display_boundary(g, s),
            display_boundary(g, partition::next_start(g, s))
        )
    }

    fn name(&self) -> String {
        self.0.to_string()
    }

    fn split_hint(&self) -> &'static str {
        "split the range into several runs (each with its own `job` name), e.g. one per year"
    }
}

/// Integer-range bounds; the interval is `None` when it is itself invalid.
pub(super) struct IntegerAxis(pub(super) Option<i64>);

impl Axis for IntegerAxis {
    type T = i64;

    fn parse(&self, b: &mut Builder<'_>, field: &str, v: &Bound) -> Option<i64> {
        match v {
            Bound::Integer(n) => Some(*n),
            Bound::Text(s) => match partition::parse_integer(s) {
                Ok(n) => Some(n),
                Err(message) => {
                    b.issue(
                        field,
                        message,
                        "integer_range bounds and list entries are integers (INT64), e.g. 0, 40 or -10, as JSON numbers or strings of digits",
                    );
                    None
                }
            },
        }
    }

    fn count(&self, s: i64, e: i64) -> Option<u128> {
        self.0.map(|i| partition::integer_count(s, e, i))
    }

    fn only_hint(&self, s: i64) -> String {
        match self.0.and_then(|i| s.checked_add(i)) {
            Some(next) => format!("to rebuild only `{s}` set end to `{next}`"),
            None => format!("to rebuild only `{s}` set end to `{s}` + interval"),
        }
    }

    fn name(&self) -> String {
        partition::INTEGER_RANGE.to_string()
    }

    fn split_hint(&self) -> &'static str {
        "split the range into several runs (each with its own `job` name), or check `partitions.interval`"
    }
}

/// The time granularity; `None` for `integer_range`.
pub(super) fn time_granularity(g: Granularity) -> Option<partition::Granularity> {
    match g {
        Granularity::Hour => Some(partition::Granularity::Hour),
        Granularity::Day => Some(partition::Granularity::Day),
        Granularity::Month => Some(partition::Granularity::Month),
        Granularity::Year => Some(partition::Granularity::Year),
        Granularity::IntegerRange => None,
    }
}

/// The readable spelling of a boundary at granularity `g`.
pub(super) fn display_boundary(g: partition::Granularity, t: DateTime<Utc>) -> String {
    let f = match g {
        partition::Granularity::Hour => "%Y-%m-%dT%H",
        partition::Granularity::Day => "%Y-%m-%d",
        partition::Granularity::Month => "%Y-%m",
        partition::Granularity::Year => "%Y",
    };
    t.format(f).to_string()
}
