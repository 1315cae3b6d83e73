//! `rask run`: not written yet.

use clap::Args;
use std::process::ExitCode;

/// Flags of `rask run`.
#[derive(Args, Debug)]
pub struct RunArgs {}

/// Runs `rask run`; the exit code is the script's.
pub fn main(_args: RunArgs) -> ExitCode {
    eprintln!("rask: error: rask run is not written yet");
    ExitCode::FAILURE
}
