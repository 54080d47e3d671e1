//! What the tool writes for others: typed events and their sinks (stdout;
//! Dagster Pipes messages; GitHub Actions annotations, summary and outputs),
//! human logs (stderr).

pub mod events;
pub mod github;
pub mod logging;
pub mod orchestrators;
pub mod pipes;
