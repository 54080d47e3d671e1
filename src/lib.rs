//! bq-backfill: backfill partitioned BigQuery tables safely, one partition
//! at a time. ARCHITECTURE.md has the map; the folders are its layers:
//!
//! - [`task`]: reading and resolving the task (command line, descriptor, settings)
//! - [`planning`]: pure planning (partitions, fingerprints, write strategies)
//! - [`engine`]: the run loop, one partition's attempt, audit log, lease, cancellation
//! - [`output`]: events and their sinks, human logs
//! - [`bq`]: the BigQuery boundary (client, auth, wire types, retry)
//! - [`app`]: the commands, wiring the layers together
//! - [`exit`]: the documented exit codes

pub mod app;
pub mod bq;
pub mod engine;
pub mod exit;
pub mod output;
pub mod planning;
pub mod task;
