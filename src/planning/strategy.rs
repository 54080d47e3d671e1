//! Write strategies: how one partition's BigQuery job is configured.
//!
//! Every strategy replaces exactly one partition (`WRITE_TRUNCATE` into
//! `table$ID`), so running a partition twice gives the same result as once.
//! The run loop only sees the [`WriteStrategy`] trait; write-audit-publish
//! (stage, verify, publish by copy) will be another implementation.
//!
//! Partition values reach BigQuery only as named query parameters or inside
//! the job configuration's structured fields (decorated table IDs, URIs) —
//! never spliced into SQL text.

use std::collections::BTreeMap;

use crate::bq::{Destination, JobSpec, LoadJob, QueryJob, QueryParam};
use crate::planning::partition::{Partition, Window};
use crate::task::settings::{JobOptions, LoadSource, Settings, Source, TableRef};

/// Builds the job that replaces one partition of the destination.
pub trait WriteStrategy: Send + Sync {
    /// The job writing `partition` (labels are added by the caller).
    fn job(&self, partition: &Partition) -> JobSpec;
}

/// The strategy the settings call for.
pub fn for_settings(settings: &Settings) -> Box<dyn WriteStrategy> {
    // Staged mode writes the staging table; `engine::stage` publishes.
    let target = Target {
        destination: settings.write_target().clone(),
        options: settings.job_options.clone(),
    };
    match &settings.source {
        Source::Query { sql } => Box::new(QueryStrategy {
            target,
            sql: sql.clone(),
        }),
        Source::Load(load) => Box::new(LoadStrategy {
            target,
            load: load.clone(),
        }),
        Source::Copy { table } => Box::new(CopyStrategy {
            target,
            source: table.clone(),
        }),
    }
}

/// The named parameters every query receives. Time partitions:
/// `@partition_id` STRING, `@partition_date` DATE, `@partition_start` and
/// `@partition_end` TIMESTAMP. Integer ranges: `@partition_id` STRING,
/// `@partition_start` and `@partition_end` INT64 (half-open).
pub fn partition_parameters(partition: &Partition) -> Vec<QueryParam> {
    let id = QueryParam::string("partition_id", partition.id.clone());
    match partition.window {
        Window::Time { start, end } => vec![
            id,
            QueryParam::date("partition_date", start.date_naive()),
            QueryParam::timestamp("partition_start", start),
            QueryParam::timestamp("partition_end", end),
        ],
        Window::Integer { start, end } => vec![
            id,
            QueryParam::int64("partition_start", start),
            QueryParam::int64("partition_end", end),
        ],
    }
}

struct Target {
    destination: TableRef,
    options: JobOptions,
}

impl Target {
    /// `destination$ID`, replaced whole.
    fn partition(&self, partition: &Partition) -> Destination {
        Destination(self.destination.partition(&partition.id))
    }
}

struct QueryStrategy {
    target: Target,
    sql: String,
}

impl WriteStrategy for QueryStrategy {
    fn job(&self, partition: &Partition) -> JobSpec {
        let opts = &self.target.options;
        JobSpec::Query(QueryJob {
            sql: self.sql.clone(),
            params: partition_parameters(partition),
            destination: Some(self.target.partition(partition)),
            priority: opts.priority,
            maximum_bytes_billed: opts.maximum_bytes_billed,
        })
    }
}

struct LoadStrategy {
    target: Target,
    load: LoadSource,
}

/// Expand the placeholders of a URI template (validated when the
/// descriptor was read): `{partition_id}`, `{partition_date}`, `{year}`,
/// `{month}`, `{day}`, `{hour}` for time partitions; `{partition_id}`,
/// `{partition_start}`, `{partition_end}` for integer ranges.
pub fn expand_uri(template: &str, partition: &Partition) -> String {
    let vars: Vec<(&str, String)> = match partition.window {
        Window::Time { start: s, .. } => vec![
            ("{partition_id}", partition.id.clone()),
            ("{partition_date}", s.format("%Y-%m-%d").to_string()),
            ("{year}", s.format("%Y").to_string()),
            ("{month}", s.format("%m").to_string()),
            ("{day}", s.format("%d").to_string()),
            ("{hour}", s.format("%H").to_string()),
        ],
        Window::Integer { start, end } => vec![
            ("{partition_id}", partition.id.clone()),
            ("{partition_start}", start.to_string()),
            ("{partition_end}", end.to_string()),
        ],
    };
    vars.iter()
        .fold(template.to_string(), |acc, (k, v)| acc.replace(k, v))
}

impl WriteStrategy for LoadStrategy {
    fn job(&self, partition: &Partition) -> JobSpec {
        JobSpec::Load(LoadJob {
            uris: self
                .load
                .uris
                .iter()
                .map(|u| expand_uri(u, partition))
                .collect(),
            destination: self.target.partition(partition),
            options: self.load.clone(),
        })
    }
}

struct CopyStrategy {
    target: Target,
    source: TableRef,
}

impl WriteStrategy for CopyStrategy {
    fn job(&self, partition: &Partition) -> JobSpec {
        JobSpec::Copy {
            source: self.source.partition(&partition.id),
            destination: self.target.partition(partition),
        }
    }
}

/// The labels on every job: the user's, plus the tool's own.
pub fn job_labels(
    user: &BTreeMap<String, String>,
    job: &str,
    run_id: &str,
    partition: Option<&Partition>,
) -> BTreeMap<String, String> {
    let mut labels = user.clone();
    labels.insert(LABEL_JOB.into(), job.into());
    labels.insert(LABEL_RUN.into(), run_id.into());
    if let Some(p) = partition {
        labels.insert(LABEL_PARTITION.into(), p.id.clone());
    }
    labels
}

/// Label naming the backfill job on every BigQuery job.
pub const LABEL_JOB: &str = "bq-backfill-job";
/// Label naming the run that submitted the job.
pub const LABEL_RUN: &str = "bq-backfill-run";
/// Label naming the partition the job writes.
pub const LABEL_PARTITION: &str = "bq-backfill-partition";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::settings::Priority;
    use chrono::{TimeZone, Utc};

    fn day() -> Partition {
        Partition {
            id: "20240115".into(),
            window: Window::Time {
                start: Utc.with_ymd_and_hms(2024, 1, 15, 0, 0, 0).unwrap(),
                end: Utc.with_ymd_and_hms(2024, 1, 16, 0, 0, 0).unwrap(),
            },
        }
    }

    fn values(params: &[QueryParam]) -> Vec<(String, String, String)> {
        params
            .iter()
            .map(|p| (p.name.clone(), p.type_.clone(), p.value.clone().unwrap()))
            .collect()
    }

    #[test]
    fn integer_ranges_get_int64_parameters_and_placeholders() {
        let p = crate::planning::partition::integer_partition(-10, 10);
        assert_eq!(
            values(&partition_parameters(&p)),
            vec![
                ("partition_id".into(), "STRING".into(), "-10".into()),
                ("partition_start".into(), "INT64".into(), "-10".into()),
                ("partition_end".into(), "INT64".into(), "0".into()),
            ]
        );
        assert_eq!(
            expand_uri(
                "gs://b/k={partition_start}-{partition_end}/{partition_id}/*.csv",
                &p
            ),
            "gs://b/k=-10-0/-10/*.csv"
        );
        let t = TableRef {
            project: "p".into(),
            dataset: "d".into(),
            table: "t".into(),
        };
        assert_eq!(t.partition(&p.id).to_string(), "p.d.t$-10");
        let copy = CopyStrategy {
            target: Target {
                destination: t.clone(),
                options: JobOptions {
                    priority: Priority::Interactive,
                    maximum_bytes_billed: None,
                    labels: BTreeMap::new(),
                },
            },
            source: TableRef {
                table: "src".into(),
                ..t
            },
        };
        let JobSpec::Copy {
            source,
            destination,
        } = copy.job(&p)
        else {
            panic!("a copy job");
        };
        assert_eq!(source.table, "src$-10");
        assert_eq!(destination.0.table, "t$-10");
    }

    #[test]
    fn uri_templates_expand_every_placeholder() {
        let p = day();
        assert_eq!(
            expand_uri(
                "gs://b/ev/dt={partition_date}/{year}/{month}/{day}/{hour}/{partition_id}-*.json",
                &p
            ),
            "gs://b/ev/dt=2024-01-15/2024/01/15/00/20240115-*.json"
        );
    }

    #[test]
    fn partition_values_are_parameters_not_sql() {
        let v = values(&partition_parameters(&day()));
        assert_eq!(
            v,
            vec![
                ("partition_id".into(), "STRING".into(), "20240115".into()),
                ("partition_date".into(), "DATE".into(), "2024-01-15".into()),
                (
                    "partition_start".into(),
                    "TIMESTAMP".into(),
                    "2024-01-15 00:00:00.000000+00:00".into()
                ),
                (
                    "partition_end".into(),
                    "TIMESTAMP".into(),
                    "2024-01-16 00:00:00.000000+00:00".into()
                ),
            ]
        );
    }

    #[test]
    fn decorated_destination_names_one_partition() {
        let t = TableRef {
            project: "p".into(),
            dataset: "d".into(),
            table: "t".into(),
        };
        let r = t.partition(&day().id);
        assert_eq!(
            (r.project.as_str(), r.dataset.as_str(), r.table.as_str()),
            ("p", "d", "t$20240115")
        );
        assert_eq!(r.to_string(), "p.d.t$20240115");
    }
}
