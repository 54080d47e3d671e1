//! End-to-end scenarios: the real binary against the in-process emulator.
//! (Tests may report figures on stderr.)
//! Each test reads like something a user would do and asserts on the
//! table's contents, the audit log and the event stream.

#![allow(clippy::print_stderr)]

mod auth;
mod concurrency;
mod faults;
mod harness;
mod locations;
mod orchestrators;
mod rerun;
mod scenarios;
mod snapshots;
mod sources;
mod verify;
