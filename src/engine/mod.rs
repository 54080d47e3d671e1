//! The engine: the run loop, one partition's attempt, the preflight checks,
//! the audit log, the run lease and cancellation.

pub mod append;
pub mod attempt;
pub mod cancel;
pub mod checkpoint;
pub mod failure;
pub mod lease;
pub mod preflight;
pub mod reconcile;
pub mod runner;
pub mod slots;
pub mod stage;
pub mod verify;
