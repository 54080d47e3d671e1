//! What the tool writes for others: typed events and their sinks (stdout),
//! human logs (stderr).

pub mod events;
pub mod logging;
