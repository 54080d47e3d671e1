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

use chrono::SecondsFormat;
use gcp_bigquery_client::model::job_configuration::JobConfiguration;
use gcp_bigquery_client::model::job_configuration_load::JobConfigurationLoad;
use gcp_bigquery_client::model::job_configuration_query::JobConfigurationQuery;
use gcp_bigquery_client::model::job_configuration_table_copy::JobConfigurationTableCopy;
use gcp_bigquery_client::model::query_parameter::QueryParameter;
use gcp_bigquery_client::model::query_parameter_type::QueryParameterType;
use gcp_bigquery_client::model::query_parameter_value::QueryParameterValue;
use gcp_bigquery_client::model::table_reference::TableReference;

use crate::planning::partition::{Partition, Window};
use crate::task::settings::{JobOptions, LoadSource, Priority, Settings, Source, TableRef};

/// Builds the job that replaces one partition of the destination.
pub trait WriteStrategy: Send + Sync {
    /// Short name for logs: `query`, `load`, `copy`.
    fn kind(&self) -> &'static str;
    /// The job configuration writing `partition` (labels are added by the caller).
    fn job_configuration(&self, partition: &Partition) -> JobConfiguration;
}

/// The strategy the settings call for.
pub fn for_settings(settings: &Settings) -> Box<dyn WriteStrategy> {
    let target = Target {
        destination: settings.destination.clone(),
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

/// The decorated table reference of one partition: `table$ID`.
pub fn decorated(table: &TableRef, partition: &Partition) -> TableReference {
    TableReference::new(
        &table.project,
        &table.dataset,
        &format!("{}${}", table.table, partition.id),
    )
}

/// Human form of the decorated destination: `project.dataset.table$ID`.
pub fn decorated_name(table: &TableRef, partition: &Partition) -> String {
    format!("{}${}", table, partition.id)
}

/// The named parameters every query receives. Time partitions:
/// `@partition_id` STRING, `@partition_date` DATE, `@partition_start` and
/// `@partition_end` TIMESTAMP. Integer ranges: `@partition_id` STRING,
/// `@partition_start` and `@partition_end` INT64 (half-open).
pub fn partition_parameters(partition: &Partition) -> Vec<QueryParameter> {
    let ts = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
    match partition.window {
        Window::Time { start, end } => vec![
            param("partition_id", "STRING", partition.id.clone()),
            param(
                "partition_date",
                "DATE",
                start.date_naive().format("%Y-%m-%d").to_string(),
            ),
            param("partition_start", "TIMESTAMP", ts(start)),
            param("partition_end", "TIMESTAMP", ts(end)),
        ],
        Window::Integer { start, end } => vec![
            param("partition_id", "STRING", partition.id.clone()),
            param("partition_start", "INT64", start.to_string()),
            param("partition_end", "INT64", end.to_string()),
        ],
    }
}

fn param(name: &str, ty: &str, value: String) -> QueryParameter {
    QueryParameter {
        name: Some(name.to_string()),
        parameter_type: Some(QueryParameterType {
            r#type: ty.to_string(),
            ..Default::default()
        }),
        parameter_value: Some(QueryParameterValue {
            value: Some(value),
            ..Default::default()
        }),
    }
}

struct Target {
    destination: TableRef,
    options: JobOptions,
}

struct QueryStrategy {
    target: Target,
    sql: String,
}

impl WriteStrategy for QueryStrategy {
    fn kind(&self) -> &'static str {
        "query"
    }

    fn job_configuration(&self, partition: &Partition) -> JobConfiguration {
        let opts = &self.target.options;
        JobConfiguration {
            job_type: Some("QUERY".into()),
            query: Some(JobConfigurationQuery {
                query: self.sql.clone(),
                use_legacy_sql: Some(false),
                parameter_mode: Some("NAMED".into()),
                query_parameters: Some(partition_parameters(partition)),
                destination_table: Some(decorated(&self.target.destination, partition)),
                write_disposition: Some("WRITE_TRUNCATE".into()),
                // The destination must exist (checked before the run); never
                // let a typo create a new unpartitioned table.
                create_disposition: Some("CREATE_NEVER".into()),
                priority: Some(
                    match opts.priority {
                        Priority::Interactive => "INTERACTIVE",
                        Priority::Batch => "BATCH",
                    }
                    .into(),
                ),
                maximum_bytes_billed: opts.maximum_bytes_billed.map(|b| b.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        }
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
    fn kind(&self) -> &'static str {
        "load"
    }

    fn job_configuration(&self, partition: &Partition) -> JobConfiguration {
        let l = &self.load;
        JobConfiguration {
            job_type: Some("LOAD".into()),
            load: Some(JobConfigurationLoad {
                source_uris: Some(l.uris.iter().map(|u| expand_uri(u, partition)).collect()),
                source_format: Some(l.format.clone()),
                destination_table: Some(decorated(&self.target.destination, partition)),
                write_disposition: Some("WRITE_TRUNCATE".into()),
                create_disposition: Some("CREATE_NEVER".into()),
                skip_leading_rows: l.skip_leading_rows.map(|n| n as i32),
                field_delimiter: l.field_delimiter.clone(),
                allow_jagged_rows: l.allow_jagged_rows,
                allow_quoted_newlines: l.allow_quoted_newlines,
                ignore_unknown_values: l.ignore_unknown_values,
                max_bad_records: l.max_bad_records.map(|n| n as i32),
                null_marker: l.null_marker.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

struct CopyStrategy {
    target: Target,
    source: TableRef,
}

impl WriteStrategy for CopyStrategy {
    fn kind(&self) -> &'static str {
        "copy"
    }

    fn job_configuration(&self, partition: &Partition) -> JobConfiguration {
        JobConfiguration {
            job_type: Some("COPY".into()),
            copy: Some(JobConfigurationTableCopy {
                source_table: Some(decorated(&self.source, partition)),
                destination_table: Some(decorated(&self.target.destination, partition)),
                write_disposition: Some("WRITE_TRUNCATE".into()),
                create_disposition: Some("CREATE_NEVER".into()),
                ..Default::default()
            }),
            ..Default::default()
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

    fn values(params: &[QueryParameter]) -> Vec<(String, String, String)> {
        params
            .iter()
            .map(|p| {
                (
                    p.name.clone().unwrap(),
                    p.parameter_type.as_ref().unwrap().r#type.clone(),
                    p.parameter_value.as_ref().unwrap().value.clone().unwrap(),
                )
            })
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
        assert_eq!(decorated(&t, &p).table_id, "t$-10");
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
        let c = copy.job_configuration(&p).copy.unwrap();
        assert_eq!(c.source_table.unwrap().table_id, "src$-10");
        assert_eq!(c.destination_table.unwrap().table_id, "t$-10");
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
                    "2024-01-15T00:00:00.000000Z".into()
                ),
                (
                    "partition_end".into(),
                    "TIMESTAMP".into(),
                    "2024-01-16T00:00:00.000000Z".into()
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
        let r = decorated(&t, &day());
        assert_eq!(
            (
                r.project_id.as_str(),
                r.dataset_id.as_str(),
                r.table_id.as_str()
            ),
            ("p", "d", "t$20240115")
        );
        assert_eq!(decorated_name(&t, &day()), "p.d.t$20240115");
    }
}
