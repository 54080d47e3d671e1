//! Pure planning, no I/O: which partitions, in which order, what determines
//! their contents (fingerprints, job IDs), and which job replaces each one.

pub mod decision;
pub mod fingerprint;
pub mod partition;
pub mod state;
pub mod strategy;
