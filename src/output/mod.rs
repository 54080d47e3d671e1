//! What the tool writes for others: typed events and their sinks (stdout;
//! Dagster Pipes messages; GitHub Actions annotations, summary and outputs;
//! the progress bar), human logs (stderr), and what people read: the
//! partition calendar and the `plan`/`status` tables.

pub mod calendar;
pub mod events;
pub mod github;
pub mod logging;
pub mod orchestrators;
pub mod pipes;
pub mod progress;
pub mod report;
