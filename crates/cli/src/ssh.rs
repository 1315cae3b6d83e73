//! `rask ssh`: not written yet.

use anyhow::{bail, Result};
use clap::Args;

/// Flags of `rask ssh`.
#[derive(Args, Debug)]
pub struct SshArgs {}

/// Runs `rask ssh`.
pub fn main(_args: SshArgs) -> Result<()> {
    bail!("rask ssh is not written yet")
}
