//! What the tool writes for others: typed events and their sinks (stdout),
//! human logs (stderr), and what people read: the partition calendar and
//! the `plan`/`status` tables.

pub mod calendar;
pub mod events;
pub mod logging;
pub mod progress;
pub mod report;
