//! bq-backfill: parse arguments, run, exit with the documented code.

use std::process::ExitCode;

use bq_backfill::exit;

fn main() -> ExitCode {
    // A panic is a bug, but it still ends with a documented code (70), never
    // Rust's 101: orchestrators branch on the code.
    let code = std::panic::catch_unwind(|| bq_backfill::app::main(std::env::args_os()))
        .unwrap_or(exit::INTERNAL);
    ExitCode::from(u8::try_from(code).unwrap_or(exit::INTERNAL as u8))
}
