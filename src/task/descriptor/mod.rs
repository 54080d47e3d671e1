//! The task descriptor, format version 1: the raw serde types (which the
//! JSON Schema in `schemas/` is generated from), parsing with errors that
//! name the JSON path, semantic validation, and resolution into
//! [`Settings`](crate::task::settings::Settings) (defaults applied,
//! environment and command-line overrides merged). Pure: no I/O; the
//! environment is passed in.
//!
//! By job: `raw` holds the serde types, `error` the located, hinted issues
//! (with `hints` for what each field expects), `parse` turns bytes into a
//! checked raw [`Descriptor`], and `resolve/` turns that into settings;
//! `ident` and `sql` are the BigQuery naming rules and the lexical query
//! scan that validation uses.

mod error;
mod hints;
pub(crate) mod ident;
mod parse;
mod raw;
mod resolve;
mod sql;

pub use error::{DescriptorError, Issue};
pub use parse::parse;
pub use raw::{
    Bound, ByteCount, Check, Checkpoint, CopyJob, Descriptor, Expect, Granularity, JobConfig,
    Labels, Lease, LoadJob, OnFailure, Order, Partitions, Priority, Retry, RowCount, Source,
    SourceFormat, Throttle, Write, WriteMode,
};
pub use resolve::{Overrides, STAGING_SUFFIX, TARGET, resolve, staging_table};
/// The named parameters a query receives for each partition.
pub use sql::PARAMETERS as QUERY_PARAMETERS;

/// Largest descriptor accepted, checked before parsing (1 MiB).
pub const MAX_DESCRIPTOR_BYTES: usize = 1024 * 1024;
/// BigQuery's limit on the length of a query's text (1 MiB).
pub const MAX_QUERY_BYTES: usize = 1024 * 1024;
/// Table name of the default audit log, created in the destination's dataset.
pub const DEFAULT_CHECKPOINT_TABLE: &str = "_bq_backfill_audit";
/// Label keys starting with this are set by bq-backfill itself.
pub const RESERVED_LABEL_PREFIX: &str = "bq-backfill";
/// BigQuery allows 64 labels per job; bq-backfill keeps 4 for its own.
pub const MAX_USER_LABELS: usize = 60;
/// Where the project comes from when neither `--project` nor the descriptor
/// names one, in this order (the Google Cloud client libraries' order).
pub const PROJECT_ENV_VARS: [&str; 3] = [
    "GOOGLE_CLOUD_PROJECT",
    "GCLOUD_PROJECT",
    "CLOUDSDK_CORE_PROJECT",
];
/// The only descriptor format version this build reads.
pub const DESCRIPTOR_VERSION: u32 = 1;

#[cfg(test)]
mod tests;
