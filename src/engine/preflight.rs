//! Preflight: the destination (and a copy source) must exist and be
//! partitioned the way the descriptor says, before anything is written.

use crate::bq::{BigQuery, RangePartitioningMeta};
use crate::engine::failure::RunFailure;
use crate::planning::partition::{self, PartitionSpec, Scheme, Selection};
use crate::task::settings::{Settings, Source, TableRef};

/// Check the destination (and a copy source) before anything is written.
/// Returns the destination's integer range (integer-range partitioning
/// only): the last partition's `@partition_end` stops at its end.
pub async fn preflight(
    bq: &BigQuery,
    settings: &Settings,
) -> Result<Option<RangePartitioningMeta>, RunFailure> {
    let range = check_partitioned(
        bq,
        &settings.destination,
        &settings.partitions,
        "destination",
    )
    .await?;
    if let Source::Copy { table } = &settings.source {
        check_partitioned(bq, table, &settings.partitions, "source.copy.table").await?;
    }
    Ok(range)
}

async fn check_partitioned(
    bq: &BigQuery,
    t: &TableRef,
    spec: &PartitionSpec,
    field: &str,
) -> Result<Option<RangePartitioningMeta>, RunFailure> {
    let want = match spec.time_granularity() {
        Some(g) => g.as_str(),
        None => "integer range",
    };
    let Some(meta) = bq.get_table(t).await? else {
        return Err(RunFailure::Config {
            message: format!("{field}: table {t} does not exist"),
            hint: Some(format!(
                "create it partitioned by {want} first (bq-backfill never creates the destination), or fix the name"
            )),
        });
    };
    let Some(g) = spec.time_granularity() else {
        return match (meta.time_partitioning, meta.range_partitioning) {
            (_, Some(r)) => {
                check_range(t, &r, spec, field).map_err(|r| RunFailure::Config {
                    message: r.message,
                    hint: Some(r.hint),
                })?;
                Ok(Some(r))
            }
            (Some(tp), None) => Err(RunFailure::Config {
                message: format!(
                    "{field}: table {t} is time-partitioned by {}, but partitions.granularity is integer_range",
                    tp.kind.to_lowercase()
                ),
                hint: Some(format!(
                    "set partitions.granularity to \"{}\" and remove partitions.interval, or name an integer-range partitioned table",
                    tp.kind.to_lowercase()
                )),
            }),
            (None, None) => Err(RunFailure::Config {
                message: format!("{field}: table {t} is not partitioned"),
                hint: Some(
                    "bq-backfill replaces one partition at a time; it needs a partitioned table (here: integer-range partitioned)"
                        .into(),
                ),
            }),
        };
    };
    match (meta.time_partitioning, meta.range_partitioning) {
        (Some(tp), _) if tp.kind.eq_ignore_ascii_case(g.bigquery_type()) => Ok(None),
        (Some(tp), _) => Err(RunFailure::Config {
            message: format!(
                "{field}: table {t} is partitioned by {}, but partitions.granularity is {g}",
                tp.kind.to_lowercase(),
            ),
            hint: Some(format!(
                "set partitions.granularity to \"{}\"",
                tp.kind.to_lowercase()
            )),
        }),
        (None, Some(r)) => Err(RunFailure::Config {
            message: format!(
                "{field}: table {t} is integer-range partitioned (on `{}`, range [{}, {}), interval {}), but partitions.granularity is {g}",
                r.field, r.start, r.end, r.interval
            ),
            hint: Some(format!(
                "set partitions.granularity to \"integer_range\" with \"interval\": {} and integer start/end",
                r.interval
            )),
        }),
        (None, None) => Err(RunFailure::Config {
            message: format!("{field}: table {t} is not partitioned"),
            hint: Some(
                "bq-backfill replaces one partition at a time; it needs a time-partitioned table"
                    .into(),
            ),
        }),
    }
}

/// Why a plan does not fit the table: becomes a [`RunFailure::Config`].
struct Refusal {
    message: String,
    hint: String,
}

/// An integer-range plan against the table's range: the same interval, and
/// every planned start on the table's grid inside [start, end).
fn check_range(
    t: &TableRef,
    r: &RangePartitioningMeta,
    spec: &PartitionSpec,
    field: &str,
) -> Result<(), Refusal> {
    let table_range = format!("range [{}, {}), interval {}", r.start, r.end, r.interval);
    let Scheme::IntegerRange {
        interval,
        selection,
    } = &spec.scheme
    else {
        return Ok(());
    };
    if *interval != r.interval {
        return Err(Refusal {
            message: format!(
                "partitions.interval: {interval} differs from the interval of {field} {t} ({table_range})"
            ),
            hint: format!(
                "set partitions.interval to {} (the table's rangePartitioning.range.interval)",
                r.interval
            ),
        });
    }
    let bound_field = match selection {
        Selection::Range { .. } => "partitions.start",
        Selection::List(_) => "partitions.list",
    };
    let mut starts: Vec<i64> = match selection {
        Selection::Range { start, .. } => vec![*start],
        Selection::List(list) => list.clone(),
    };
    starts.sort_unstable();
    for s in starts {
        if s < r.start {
            return Err(Refusal {
                message: format!(
                    "{bound_field}: {s} is below the first partition of {field} {t} ({table_range})"
                ),
                hint: format!(
                    "the table's first partition starts at {}; values below it are in __UNPARTITIONED__, which bq-backfill does not backfill",
                    r.start
                ),
            });
        }
        if s >= r.end {
            return Err(Refusal {
                message: format!(
                    "{bound_field}: {s} is beyond the last partition of {field} {t} ({table_range})"
                ),
                hint: format!(
                    "the table's partitions end before {}; values from there on are in __UNPARTITIONED__, which bq-backfill does not backfill",
                    r.end
                ),
            });
        }
        if (i128::from(s) - i128::from(r.start)) % i128::from(r.interval) != 0 {
            let below = partition::align_down(s, r.start, r.interval).unwrap_or(r.start);
            let hint = match below.checked_add(r.interval).filter(|n| *n < r.end) {
                Some(next) => format!(
                    "partitions start at {} + a multiple of {}: use {below} (the partition containing it) or {next} (the next one)",
                    r.start, r.interval
                ),
                None => format!(
                    "partitions start at {} + a multiple of {}: use {below} (the partition containing it)",
                    r.start, r.interval
                ),
            };
            return Err(Refusal {
                message: format!(
                    "{bound_field}: {s} is not the start of a partition of {field} {t} ({table_range})"
                ),
                hint,
            });
        }
    }
    // A range: every later start is on the same grid; only the end can
    // overshoot the table's range.
    if let Selection::Range { start, end } = selection
        && let Some(last) = partition::plan(spec)
            .iter()
            .filter_map(|p| match p.window {
                partition::Window::Integer { start, .. } => Some(start),
                partition::Window::Time { .. } => None,
            })
            .max()
        && last >= r.end
    {
        return Err(Refusal {
            message: format!(
                "partitions.end: the range {start}..{end} reaches partition {last}, beyond the last partition of {field} {t} ({table_range})"
            ),
            hint: format!(
                "set partitions.end to at most {}; values from there on are in __UNPARTITIONED__, which bq-backfill does not backfill",
                r.end
            ),
        });
    }
    Ok(())
}
