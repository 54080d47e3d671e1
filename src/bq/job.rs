//! The jobs this tool submits, in its own words. Only this module turns them
//! into gcp-bigquery-client's model (the REST wire format), so the rest of
//! the crate never builds BigQuery's types.
//!
//! A job writes at most one table, and only one way: [`Destination`]
//! replaces what it names (`WRITE_TRUNCATE`) and never creates a table
//! (`CREATE_NEVER`, so a typo cannot create an unpartitioned one). Naming a
//! decorated partition (`table$ID`, see [`TableRef::partition`]) replaces
//! exactly that partition, atomically when the job succeeds.

use gcp_bigquery_client::model::job_configuration::JobConfiguration;
use gcp_bigquery_client::model::job_configuration_load::JobConfigurationLoad;
use gcp_bigquery_client::model::job_configuration_query::JobConfigurationQuery;
use gcp_bigquery_client::model::job_configuration_table_copy::JobConfigurationTableCopy;
use gcp_bigquery_client::model::table_reference::TableReference;

use super::QueryParam;
use crate::task::settings::{LoadSource, Priority, TableRef};

/// One job to insert.
#[derive(Debug, Clone, PartialEq)]
pub enum JobSpec {
    /// GoogleSQL with named parameters.
    Query(QueryJob),
    /// Files into a table.
    Load(LoadJob),
    /// A table (or partition) into another.
    Copy {
        source: TableRef,
        destination: Destination,
    },
}

/// The table a job replaces (`WRITE_TRUNCATE`, `CREATE_NEVER`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination(pub TableRef);

#[derive(Debug, Clone, PartialEq)]
pub struct QueryJob {
    pub sql: String,
    pub params: Vec<QueryParam>,
    /// `None`: results only (e.g. the lease's claim job).
    pub destination: Option<Destination>,
    pub priority: Priority,
    pub maximum_bytes_billed: Option<i64>,
}

impl QueryJob {
    /// A query with no destination, interactive, no parameters.
    pub fn plain(sql: &str) -> QueryJob {
        QueryJob {
            sql: sql.to_string(),
            params: Vec::new(),
            destination: None,
            priority: Priority::Interactive,
            maximum_bytes_billed: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoadJob {
    /// URIs with their placeholders already expanded.
    pub uris: Vec<String>,
    pub destination: Destination,
    /// Format and parsing options.
    pub options: LoadSource,
}

fn reference(t: &TableRef) -> TableReference {
    TableReference::new(&t.project, &t.dataset, &t.table)
}

const TRUNCATE: &str = "WRITE_TRUNCATE";
const NEVER_CREATE: &str = "CREATE_NEVER";

impl JobSpec {
    /// The REST model of this job (labels are added by the client).
    pub(super) fn to_model(&self) -> JobConfiguration {
        match self {
            JobSpec::Query(q) => JobConfiguration {
                job_type: Some("QUERY".into()),
                query: Some(query_model(q)),
                ..Default::default()
            },
            JobSpec::Load(l) => JobConfiguration {
                job_type: Some("LOAD".into()),
                load: Some(load_model(l)),
                ..Default::default()
            },
            JobSpec::Copy {
                source,
                destination,
            } => JobConfiguration {
                job_type: Some("COPY".into()),
                copy: Some(JobConfigurationTableCopy {
                    source_table: Some(reference(source)),
                    destination_table: Some(reference(&destination.0)),
                    write_disposition: Some(TRUNCATE.into()),
                    create_disposition: Some(NEVER_CREATE.into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        }
    }
}

fn query_model(q: &QueryJob) -> JobConfigurationQuery {
    let writes = q.destination.is_some();
    JobConfigurationQuery {
        query: q.sql.clone(),
        use_legacy_sql: Some(false),
        parameter_mode: (!q.params.is_empty()).then(|| "NAMED".into()),
        query_parameters: (!q.params.is_empty())
            .then(|| q.params.iter().map(QueryParam::to_model).collect()),
        destination_table: q.destination.as_ref().map(|d| reference(&d.0)),
        write_disposition: writes.then(|| TRUNCATE.into()),
        create_disposition: writes.then(|| NEVER_CREATE.into()),
        priority: Some(
            match q.priority {
                Priority::Interactive => "INTERACTIVE",
                Priority::Batch => "BATCH",
            }
            .into(),
        ),
        maximum_bytes_billed: q.maximum_bytes_billed.map(|b| b.to_string()),
        ..Default::default()
    }
}

fn load_model(l: &LoadJob) -> JobConfigurationLoad {
    let o = &l.options;
    JobConfigurationLoad {
        source_uris: Some(l.uris.clone()),
        source_format: Some(o.format.clone()),
        destination_table: Some(reference(&l.destination.0)),
        write_disposition: Some(TRUNCATE.into()),
        create_disposition: Some(NEVER_CREATE.into()),
        skip_leading_rows: o.skip_leading_rows.map(|n| n as i32),
        field_delimiter: o.field_delimiter.clone(),
        allow_jagged_rows: o.allow_jagged_rows,
        allow_quoted_newlines: o.allow_quoted_newlines,
        ignore_unknown_values: o.ignore_unknown_values,
        max_bad_records: o.max_bad_records.map(|n| n as i32),
        null_marker: o.null_marker.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(table: &str) -> TableRef {
        TableRef {
            project: "p".into(),
            dataset: "d".into(),
            table: table.into(),
        }
    }

    #[test]
    fn every_destination_is_truncated_and_never_created() {
        let dest = || Destination(t("t").partition("20240115"));
        let query = JobSpec::Query(QueryJob {
            destination: Some(dest()),
            params: vec![QueryParam::string("partition_id", "20240115")],
            ..QueryJob::plain("SELECT 1")
        });
        let copy = JobSpec::Copy {
            source: t("s").partition("20240115"),
            destination: dest(),
        };
        let q = query.to_model().query.unwrap();
        assert_eq!(q.destination_table.unwrap().table_id, "t$20240115");
        assert_eq!(q.write_disposition.as_deref(), Some("WRITE_TRUNCATE"));
        assert_eq!(q.create_disposition.as_deref(), Some("CREATE_NEVER"));
        assert_eq!(q.parameter_mode.as_deref(), Some("NAMED"));
        assert_eq!(q.use_legacy_sql, Some(false));
        let c = copy.to_model().copy.unwrap();
        assert_eq!(c.source_table.unwrap().table_id, "s$20240115");
        assert_eq!(c.write_disposition.as_deref(), Some("WRITE_TRUNCATE"));
        assert_eq!(c.create_disposition.as_deref(), Some("CREATE_NEVER"));
    }

    #[test]
    fn a_plain_query_writes_nothing() {
        let q = JobSpec::Query(QueryJob::plain("SELECT 1"))
            .to_model()
            .query
            .unwrap();
        assert!(q.destination_table.is_none());
        assert_eq!(q.write_disposition, None);
        assert_eq!(q.parameter_mode, None);
    }
}
