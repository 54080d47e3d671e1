//! bq-backfill: parse arguments, run, exit with the documented code.

use std::process::ExitCode;

fn main() -> ExitCode {
    let code = bq_backfill::app::main(std::env::args_os());
    ExitCode::from(u8::try_from(code).unwrap_or(70))
}
