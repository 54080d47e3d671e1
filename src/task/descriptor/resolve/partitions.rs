//! The partitioning and the selection: granularity or integer interval,
//! range bounds (with `--start`/`--end`) or an explicit list.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::axis::{Axis, IntegerAxis, TimeAxis, display_boundary, time_granularity};
use super::{Builder, Mode};
use crate::planning::partition::{self, PartitionSpec, Selection};
use crate::task::descriptor::raw::{Bound, Order, Partitions};

impl Builder<'_> {
    pub(super) fn boundary(
        &mut self,
        g: partition::Granularity,
        field: &str,
        b: &Bound,
    ) -> Option<DateTime<Utc>> {
        let s = match b {
            Bound::Text(s) => s.as_str(),
            Bound::Integer(n) => {
                self.issue(
                    field,
                    format!("invalid type: integer `{n}`, expected a string"),
                    format!(
                        "{g} boundaries are strings such as {}; only `integer_range` partitions take integers",
                        g.examples()
                    ),
                );
                return None;
            }
        };
        let t = match partition::parse_instant(s) {
            Ok(t) => t,
            Err(message) => {
                let hint = if message.contains("no UTC offset") {
                    format!(
                        "add `Z` for UTC, e.g. `{s}Z`, or write a {g} boundary as {}",
                        g.examples()
                    )
                } else {
                    format!("write a {g} boundary as {}", g.examples())
                };
                self.issue(field, message, hint);
                return None;
            }
        };
        if t < partition::earliest() || t > partition::latest() {
            self.issue(
                field,
                format!("`{s}` is outside BigQuery's partitionable dates (1960-01-01 to 2159-12-31)"),
                "time-unit partitioned tables keep rows outside that window in __UNPARTITIONED__; choose dates inside it",
            );
            return None;
        }
        if !partition::is_boundary(g, t) {
            let floor = partition::floor(g, t);
            let next = partition::next_start(g, t);
            self.issue(
                field,
                format!("`{s}` is not the start of {} {g} partition", g.article()),
                format!(
                    "partition boundaries are the first instant of each {g} (UTC): use `{}` (the partition containing it) or `{}` (the next one)",
                    display_boundary(g, floor),
                    display_boundary(g, next)
                ),
            );
            return None;
        }
        Some(t)
    }

    pub(super) fn partitions(&mut self, p: &Partitions) -> Option<PartitionSpec> {
        let order = match p.order {
            Order::OldestFirst => partition::Order::OldestFirst,
            Order::NewestFirst => partition::Order::NewestFirst,
        };
        match time_granularity(p.granularity) {
            Some(g) => {
                if let Some(i) = &p.interval {
                    self.issue(
                        "partitions.interval",
                        format!("`interval` ({i}) applies only to `integer_range` partitions, but the granularity is {g}"),
                        format!("remove `interval`: {g} partitions are one {g} wide; or set `granularity` to \"integer_range\" for an integer-range partitioned table"),
                    );
                }
                let selection = self.selection(p, &TimeAxis(g));
                if p.interval.is_some() {
                    return None;
                }
                Some(PartitionSpec {
                    scheme: partition::Scheme::Time {
                        granularity: g,
                        selection: selection?,
                    },
                    order,
                })
            }
            None => {
                let interval = self.interval(p.interval.as_ref());
                let selection = self.selection(p, &IntegerAxis(interval));
                Some(PartitionSpec {
                    scheme: partition::Scheme::IntegerRange {
                        interval: interval?,
                        selection: selection?,
                    },
                    order,
                })
            }
        }
    }

    /// `partitions.interval` of an `integer_range` descriptor: required, a
    /// positive INT64.
    pub(super) fn interval(&mut self, v: Option<&Bound>) -> Option<i64> {
        const FIELD: &str = "partitions.interval";
        const HINT: &str = "set `partitions.interval` to the table's rangePartitioning.range.interval, a positive integer such as 10 (`bq show --format=prettyjson dataset.table` shows it)";
        let Some(v) = v else {
            self.issue(FIELD, "`integer_range` partitions need an `interval`", HINT);
            return None;
        };
        let n = match v {
            Bound::Integer(n) => *n,
            Bound::Text(s) => match partition::parse_integer(s) {
                Ok(n) => n,
                Err(message) => {
                    self.issue(FIELD, message, HINT);
                    return None;
                }
            },
        };
        if n <= 0 {
            self.issue(
                FIELD,
                format!("the interval must be positive, found {n}"),
                HINT,
            );
            return None;
        }
        Some(n)
    }

    /// The range or list of `p`, on either axis (time or integers).
    pub(super) fn selection<A: Axis>(
        &mut self,
        p: &Partitions,
        axis: &A,
    ) -> Option<Selection<A::T>> {
        let (o_start, o_end) = if self.mode == Mode::Resolve {
            (
                self.overrides.start.as_deref().map(Bound::from),
                self.overrides.end.as_deref().map(Bound::from),
            )
        } else {
            (None, None)
        };

        if self.mode == Mode::Resolve && self.overrides.partitions.is_some() {
            return self.listed_on_command_line(axis, o_start.is_some() || o_end.is_some());
        }
        if let Some(list) = &p.list {
            let mut ok = true;
            if p.start.is_some() || p.end.is_some() {
                let field = if p.start.is_some() {
                    "partitions.start"
                } else {
                    "partitions.end"
                };
                self.issue(
                    field,
                    "both a range (`start`/`end`) and a `list` are given",
                    "give either `start` and `end`, or `list`, not both",
                );
                ok = false;
            }
            if o_start.is_some() || o_end.is_some() {
                let flag = if o_start.is_some() {
                    "--start"
                } else {
                    "--end"
                };
                self.issue(
                    flag,
                    format!("{flag} cannot override an explicit `partitions.list`"),
                    "remove `partitions.list` and give `start`/`end` (or only the flags), or drop the flags",
                );
                ok = false;
            }
            return self
                .partition_list(axis, list)
                .filter(|_| ok)
                .map(Selection::List);
        }

        let start = o_start
            .map(|s| ("--start", s))
            .or_else(|| p.start.clone().map(|s| ("partitions.start", s)));
        let end = o_end
            .map(|s| ("--end", s))
            .or_else(|| p.end.clone().map(|s| ("partitions.end", s)));
        let (start, end) = match (start, end) {
            (Some(s), Some(e)) => (s, e),
            (None, None) if self.mode == Mode::Static => {
                return Some(Selection::List(Vec::new()));
            }
            (None, None) => {
                self.issue(
                    "partitions",
                    "no partitions selected",
                    "set `partitions.start` and `partitions.end` (or `partitions.list`), or pass --start and --end",
                );
                return None;
            }
            (Some((field, s)), None) => {
                if self.mode == Mode::Static {
                    // `--end` may supply it; still check what is there.
                    axis.parse(self, field, &s);
                    return Some(Selection::List(Vec::new()));
                }
                self.issue(
                    "partitions.end",
                    "the range has a start but no end",
                    "set `partitions.end` (exclusive) or pass --end",
                );
                return None;
            }
            (None, Some((field, e))) => {
                if self.mode == Mode::Static {
                    axis.parse(self, field, &e);
                    return Some(Selection::List(Vec::new()));
                }
                self.issue(
                    "partitions.start",
                    "the range has an end but no start",
                    "set `partitions.start` (inclusive) or pass --start",
                );
                return None;
            }
        };
        self.checked_range(axis, start, end)
    }

    /// A range whose bounds both parsed: not empty, not reversed, and within
    /// BigQuery's partitions-per-table limit.
    fn checked_range<A: Axis>(
        &mut self,
        axis: &A,
        start: (&'static str, Bound),
        end: (&'static str, Bound),
    ) -> Option<Selection<A::T>> {
        let s = axis.parse(self, start.0, &start.1);
        let e = axis.parse(self, end.0, &end.1);
        let (s, e) = (s?, e?);
        if e <= s {
            let message = if e == s {
                format!(
                    "the range is empty: end `{}` equals start `{}`",
                    end.1, start.1
                )
            } else {
                format!("end `{}` is before start `{}`", end.1, start.1)
            };
            self.issue(
                end.0,
                message,
                format!(
                    "the range is half-open [start, end): end is the first partition NOT rebuilt; {}",
                    axis.only_hint(s)
                ),
            );
            return None;
        }
        if let Some(n) = axis.count(s, e)
            && n > partition::MAX_PARTITIONS as u128
        {
            self.issue(
                "partitions",
                format!(
                    "the range covers {n} {} partitions; a table has at most 10000",
                    axis.name()
                ),
                axis.split_hint(),
            );
            return None;
        }
        Some(Selection::Range { start: s, end: e })
    }

    /// `--partitions A,B,C`: replaces the descriptor's range or list; it
    /// cannot be combined with `--start`/`--end` (`ranged`).
    fn listed_on_command_line<A: Axis>(
        &mut self,
        axis: &A,
        ranged: bool,
    ) -> Option<Selection<A::T>> {
        if ranged {
            self.issue(
                "--partitions",
                "--partitions cannot be combined with --start/--end",
                "give either a range (--start/--end) or a list (--partitions A,B,C)",
            );
            return None;
        }
        let listed = self.overrides.partitions.clone().unwrap_or_default();
        let bounds: Vec<Bound> = listed.iter().map(|s| Bound::from(s.as_str())).collect();
        self.list_named(axis, &bounds, "--partitions")
            .map(Selection::List)
    }

    pub(super) fn partition_list<A: Axis>(
        &mut self,
        axis: &A,
        list: &[Bound],
    ) -> Option<Vec<A::T>> {
        self.list_named(axis, list, "partitions.list")
    }

    /// A list of partitions; `name` is where it came from (`partitions.list`
    /// or `--partitions`), for the messages.
    fn list_named<A: Axis>(&mut self, axis: &A, list: &[Bound], name: &str) -> Option<Vec<A::T>> {
        if list.is_empty() {
            self.issue(
                name,
                "the partition list is empty",
                "list at least one partition, or use `start`/`end`",
            );
            return None;
        }
        if list.len() > partition::MAX_PARTITIONS {
            self.issue(
                name,
                format!(
                    "the list has {} partitions; a table has at most 10000",
                    list.len()
                ),
                "split the list into several runs, each with its own `job` name",
            );
            return None;
        }
        let mut out = Vec::with_capacity(list.len());
        let mut seen: BTreeMap<A::T, usize> = BTreeMap::new();
        let mut ok = true;
        for (i, s) in list.iter().enumerate() {
            let field = format!("{name}[{i}]");
            let Some(t) = axis.parse_list_entry(self, &field, s) else {
                ok = false;
                continue;
            };
            if let Some(first) = seen.get(&t) {
                self.issue(
                    field,
                    format!(
                        "`{s}` repeats partition `{}` ({name}[{first}])",
                        list[*first]
                    ),
                    "list each partition once",
                );
                ok = false;
                continue;
            }
            seen.insert(t, i);
            out.push(t);
        }
        ok.then_some(out)
    }
}
