//! The partition calendar: one cell per partition, like a contribution
//! graph — days as rows and weeks as columns for daily tables, hours by day
//! for hourly ones, months by year for monthly ones, years in a row, and
//! rows of 50 for integer ranges. Coloured by state where colour is
//! allowed, lettered otherwise (the step summary uses the letters). Pure.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Timelike, Utc};

use crate::output::events::Event;
use crate::planning::partition::{self, Granularity, Partition, Scheme, Window};
use crate::task::settings::Settings;

/// What a cell shows: a partition's state as `status` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Shade {
    Succeeded,
    /// Succeeded with another fingerprint: the next run rebuilds it.
    Stale,
    Running,
    Failed,
    /// A verification check failed (staged: the partition was not published).
    VerifyFailed,
    Cancelled,
    Pending,
}

impl Shade {
    pub const ALL: [Shade; 7] = [
        Shade::Succeeded,
        Shade::Stale,
        Shade::Running,
        Shade::Failed,
        Shade::VerifyFailed,
        Shade::Cancelled,
        Shade::Pending,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Shade::Succeeded => "succeeded",
            Shade::Stale => "stale",
            Shade::Running => "running",
            Shade::Failed => "failed",
            Shade::VerifyFailed => "verify failed",
            Shade::Cancelled => "cancelled",
            Shade::Pending => "pending",
        }
    }

    fn letter(self) -> char {
        match self {
            Shade::Succeeded => 'S',
            Shade::Stale => 'T',
            Shade::Running => 'R',
            Shade::Failed => 'F',
            Shade::VerifyFailed => 'V',
            Shade::Cancelled => 'C',
            Shade::Pending => '.',
        }
    }

    /// ANSI SGR colour.
    fn colour(self) -> &'static str {
        match self {
            Shade::Succeeded => "32",
            Shade::Stale => "34",
            Shade::Running => "33",
            Shade::Failed => "31",
            Shade::VerifyFailed => "91",
            Shade::Cancelled => "35",
            Shade::Pending => "90",
        }
    }

    /// The cell as printed.
    pub fn cell(self, colour: bool) -> String {
        if !colour {
            return self.letter().to_string();
        }
        let glyph = if self == Shade::Pending { '·' } else { '■' };
        format!("\x1b[{}m{glyph}\x1b[0m", self.colour())
    }
}

/// How the calendar lays out partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Time(Granularity),
    IntegerRange,
}

impl Layout {
    pub fn for_settings(settings: &Settings) -> Layout {
        match &settings.partitions.scheme {
            Scheme::Time { granularity, .. } => Layout::Time(*granularity),
            Scheme::IntegerRange { .. } => Layout::IntegerRange,
        }
    }
}

/// A run's calendar, kept up to date from its events (for the GitHub step
/// summary): pending until started, then what became of each partition.
pub struct RunCalendar {
    partitions: Vec<Partition>,
    layout: Layout,
    shades: BTreeMap<String, Shade>,
}

impl RunCalendar {
    pub fn for_settings(settings: &Settings) -> RunCalendar {
        RunCalendar {
            partitions: partition::plan(&settings.partitions),
            layout: Layout::for_settings(settings),
            shades: BTreeMap::new(),
        }
    }

    pub fn observe(&mut self, event: &Event) {
        let (id, shade) = match event {
            Event::PartitionSkipped { partition, .. }
            | Event::PartitionSucceeded { partition, .. } => (partition, Shade::Succeeded),
            Event::PartitionStarted { partition, .. } => (partition, Shade::Running),
            Event::PartitionFailed {
                partition,
                will_retry: false,
                reason,
                ..
            } if reason == "verify_failed" => (partition, Shade::VerifyFailed),
            Event::PartitionFailed {
                partition,
                will_retry: false,
                ..
            } => (partition, Shade::Failed),
            Event::PartitionCancelled { partition, .. } => (partition, Shade::Cancelled),
            _ => return,
        };
        self.shades.insert(id.clone(), shade);
    }

    /// The calendar as a Markdown section (letters in a code block).
    pub fn markdown(&self) -> String {
        let cells: Vec<(Partition, Shade)> = self
            .partitions
            .iter()
            .map(|p| {
                (
                    p.clone(),
                    self.shades.get(&p.id).copied().unwrap_or(Shade::Pending),
                )
            })
            .collect();
        format!(
            "### Partitions\n\n```text\n{}```\n",
            render(&cells, self.layout, false)
        )
    }
}

/// The calendar of `cells` (in any order), ending with a legend line.
pub fn render(cells: &[(Partition, Shade)], layout: Layout, colour: bool) -> String {
    if cells.is_empty() {
        return "(no partitions selected)\n".to_string();
    }
    let mut out = match layout {
        Layout::Time(Granularity::Day) => days(cells, colour),
        Layout::Time(Granularity::Hour) => hours(cells, colour),
        Layout::Time(Granularity::Month) => months(cells, colour),
        Layout::Time(Granularity::Year) => years(cells, colour),
        Layout::IntegerRange => integers(cells, colour),
    };
    out.push_str(&legend(colour));
    out
}

fn legend(colour: bool) -> String {
    let items: Vec<String> = Shade::ALL
        .iter()
        .map(|s| format!("{} {}", s.cell(colour), s.name()))
        .collect();
    format!("{}\n", items.join("  "))
}

fn start_of(p: &Partition) -> Option<DateTime<Utc>> {
    match p.window {
        Window::Time { start, .. } => Some(start),
        Window::Integer { .. } => None,
    }
}

fn by_start(cells: &[(Partition, Shade)]) -> BTreeMap<DateTime<Utc>, Shade> {
    cells
        .iter()
        .filter_map(|(p, s)| start_of(p).map(|t| (t, *s)))
        .collect()
}

/// One block per year: a month header, then Mon..Sun rows of week columns.
fn days(cells: &[(Partition, Shade)], colour: bool) -> String {
    let map: BTreeMap<NaiveDate, Shade> = by_start(cells)
        .into_iter()
        .map(|(t, s)| (t.date_naive(), s))
        .collect();
    let (first, last) = (
        *map.keys().next().unwrap(),
        *map.keys().next_back().unwrap(),
    );
    let mut out = String::new();
    for year in first.year()..=last.year() {
        let from = first.max(NaiveDate::from_ymd_opt(year, 1, 1).unwrap());
        let to = last.min(NaiveDate::from_ymd_opt(year, 12, 31).unwrap());
        let monday = from - Duration::days(from.weekday().num_days_from_monday() as i64);
        let weeks = ((to - monday).num_days() / 7 + 1) as usize;
        let header = month_header(from, to, monday, weeks);
        let _ = writeln!(out, "{}", format!("{year} {header}").trim_end());
        for (row, name) in ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
            .iter()
            .enumerate()
        {
            let mut line = format!("{name}  ");
            for w in 0..weeks {
                let day = monday + Duration::days((w * 7 + row) as i64);
                match map.get(&day) {
                    Some(s) if day.year() == year => line.push_str(&s.cell(colour)),
                    _ => line.push(' '),
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        out.push('\n');
    }
    out
}

/// One row per day, one column per hour.
fn hours(cells: &[(Partition, Shade)], colour: bool) -> String {
    let mut rows: BTreeMap<NaiveDate, [Option<Shade>; 24]> = BTreeMap::new();
    for (t, s) in by_start(cells) {
        rows.entry(t.date_naive()).or_insert([None; 24])[t.hour() as usize] = Some(s);
    }
    let mut out = String::from("           0     6     12    18   23\n");
    for (day, row) in rows {
        let line: String = row
            .iter()
            .map(|c| c.map_or(" ".to_string(), |s| s.cell(colour)))
            .collect();
        let _ = writeln!(out, "{day} {}", line.trim_end());
    }
    out.push('\n');
    out
}

/// The month names above the week columns of one year, each over the
/// week its first day falls in. A range starting mid-month names that month
/// over its first column too, when the next name leaves room for it.
fn month_header(from: NaiveDate, to: NaiveDate, monday: NaiveDate, weeks: usize) -> String {
    let mut header = vec![' '; weeks];
    let mut put = |w: usize, name: String| {
        // A label may run past the last week: the header is not a cell row.
        for (i, ch) in name.chars().enumerate() {
            if w + i >= header.len() {
                header.resize(w + i + 1, ' ');
            }
            header[w + i] = ch;
        }
    };
    let mut first_label = None;
    for w in 0..weeks {
        let day = monday + Duration::weeks(w as i64);
        let month_start = (0..7)
            .map(|d| day + Duration::days(d))
            .find(|d| d.day() == 1);
        if let Some(d) = month_start.filter(|d| *d >= from && *d <= to && d.year() == from.year()) {
            first_label.get_or_insert(w);
            put(w, d.format("%b").to_string());
        }
    }
    if from.day() != 1 && first_label.is_none_or(|w| w >= 4) {
        put(0, from.format("%b").to_string());
    }
    header.iter().collect()
}

/// One row per year, one column per month.
fn months(cells: &[(Partition, Shade)], colour: bool) -> String {
    let mut rows: BTreeMap<i32, [Option<Shade>; 12]> = BTreeMap::new();
    for (t, s) in by_start(cells) {
        rows.entry(t.year()).or_insert([None; 12])[t.month0() as usize] = Some(s);
    }
    let mut out = String::from("     JFMAMJJASOND\n");
    for (year, row) in rows {
        let line: String = row
            .iter()
            .map(|c| c.map_or(" ".to_string(), |s| s.cell(colour)))
            .collect();
        let _ = writeln!(out, "{year} {}", line.trim_end());
    }
    out.push('\n');
    out
}

/// One row per decade, one column per year.
fn years(cells: &[(Partition, Shade)], colour: bool) -> String {
    let mut rows: BTreeMap<i32, [Option<Shade>; 10]> = BTreeMap::new();
    for (t, s) in by_start(cells) {
        let decade = t.year().div_euclid(10) * 10;
        rows.entry(decade).or_insert([None; 10])[(t.year() - decade) as usize] = Some(s);
    }
    let mut out = String::from("      0123456789\n");
    for (decade, row) in rows {
        let line: String = row
            .iter()
            .map(|c| c.map_or(" ".to_string(), |s| s.cell(colour)))
            .collect();
        let _ = writeln!(out, "{decade}s {}", line.trim_end());
    }
    out.push('\n');
    out
}

/// Rows of 50 partitions in order, each labelled by its first start.
fn integers(cells: &[(Partition, Shade)], colour: bool) -> String {
    let mut sorted: Vec<(i64, Shade)> = cells
        .iter()
        .filter_map(|(p, s)| match p.window {
            Window::Integer { start, .. } => Some((start, *s)),
            Window::Time { .. } => None,
        })
        .collect();
    sorted.sort();
    let width = sorted
        .iter()
        .map(|(v, _)| v.to_string().len())
        .max()
        .unwrap_or(1);
    let mut out = String::new();
    for chunk in sorted.chunks(50) {
        let line: String = chunk.iter().map(|(_, s)| s.cell(colour)).collect();
        let _ = writeln!(out, "{:>width$} {line}", chunk[0].0);
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planning::partition::{Order, PartitionSpec, Scheme, Selection, plan};
    use chrono::TimeZone;

    fn time_plan(
        g: Granularity,
        start: (i32, u32, u32, u32),
        end: (i32, u32, u32, u32),
    ) -> Vec<Partition> {
        let at =
            |(y, m, d, h): (i32, u32, u32, u32)| Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap();
        plan(&PartitionSpec {
            scheme: Scheme::Time {
                granularity: g,
                selection: Selection::Range {
                    start: at(start),
                    end: at(end),
                },
            },
            order: Order::OldestFirst,
        })
    }

    /// A deterministic mix of states: mostly succeeded, some of each other.
    fn shade(i: usize) -> Shade {
        match i % 17 {
            3 => Shade::Failed,
            5 => Shade::Stale,
            8 => Shade::Cancelled,
            11 => Shade::Running,
            13..=16 => Shade::Pending,
            _ => Shade::Succeeded,
        }
    }

    fn shaded(ps: Vec<Partition>) -> Vec<(Partition, Shade)> {
        ps.into_iter()
            .enumerate()
            .map(|(i, p)| (p, shade(i)))
            .collect()
    }

    #[test]
    fn a_year_of_days_is_a_contribution_graph() {
        let cells = shaded(time_plan(
            Granularity::Day,
            (2024, 1, 1, 0),
            (2025, 1, 1, 0),
        ));
        insta::assert_snapshot!(render(&cells, Layout::Time(Granularity::Day), false));
    }

    #[test]
    fn days_across_a_year_boundary_get_one_block_per_year() {
        let cells = shaded(time_plan(
            Granularity::Day,
            (2023, 12, 20, 0),
            (2024, 1, 10, 0),
        ));
        insta::assert_snapshot!(render(&cells, Layout::Time(Granularity::Day), false));
    }

    #[test]
    fn a_range_starting_mid_month_names_that_month_first() {
        let header = |from: (i32, u32, u32), to: (i32, u32, u32)| {
            let cells = shaded(time_plan(
                Granularity::Day,
                (from.0, from.1, from.2, 0),
                (to.0, to.1, to.2, 0),
            ));
            let text = render(&cells, Layout::Time(Granularity::Day), false);
            text.lines().next().unwrap().to_string()
        };
        assert_eq!(header((2024, 3, 10), (2024, 3, 30)), "2024 Mar");
        assert_eq!(header((2024, 3, 10), (2024, 5, 5)), "2024 Mar Apr May");
        // Too close to the next month's name: that one alone.
        assert_eq!(header((2024, 3, 25), (2024, 4, 20)), "2024  Apr");
    }

    #[test]
    fn hours_are_rows_of_days() {
        let cells = shaded(time_plan(
            Granularity::Hour,
            (2024, 3, 1, 5),
            (2024, 3, 4, 2),
        ));
        insta::assert_snapshot!(render(&cells, Layout::Time(Granularity::Hour), false));
    }

    #[test]
    fn months_are_rows_of_years() {
        let cells = shaded(time_plan(
            Granularity::Month,
            (2022, 4, 1, 0),
            (2024, 11, 1, 0),
        ));
        insta::assert_snapshot!(render(&cells, Layout::Time(Granularity::Month), false));
    }

    #[test]
    fn integer_ranges_are_rows_of_fifty() {
        let cells = shaded(plan(&PartitionSpec {
            scheme: Scheme::IntegerRange {
                interval: 10,
                selection: Selection::Range {
                    start: -100,
                    end: 1100,
                },
            },
            order: Order::OldestFirst,
        }));
        insta::assert_snapshot!(render(&cells, Layout::IntegerRange, false));
    }

    #[test]
    fn colour_uses_ansi_cells_and_letters_do_not() {
        let cells = shaded(time_plan(
            Granularity::Month,
            (2024, 1, 1, 0),
            (2024, 3, 1, 0),
        ));
        let coloured = render(&cells, Layout::Time(Granularity::Month), true);
        assert!(coloured.contains("\x1b[32m■\x1b[0m"), "{coloured:?}");
        let plain = render(&cells, Layout::Time(Granularity::Month), false);
        assert!(!plain.contains('\x1b'), "{plain:?}");
        assert!(plain.contains("2024 SS"), "{plain}");
    }
}
