//! End-to-end tests of the emulator over real HTTP (one test binary to keep link time down).

mod common;
mod faults;
mod load_copy;
mod locations;
mod persistence;
mod query_jobs;
mod tabledata;
mod tables;
mod views;
