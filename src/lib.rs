//! bq-backfill: backfill partitioned BigQuery tables safely, one partition
//! at a time. See ARCHITECTURE.md for the map of these modules.

pub mod app;
pub mod bq;
pub mod cancel;
pub mod checkpoint;
pub mod cli;
pub mod descriptor;
pub mod events;
pub mod exit;
pub mod fingerprint;
pub mod input;
pub mod lease;
pub mod load;
pub mod logging;
pub mod partition;
pub mod retry;
pub mod runner;
pub mod schema;
pub mod settings;
pub mod strategy;
