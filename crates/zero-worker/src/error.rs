//! Why a zero worker could not start or keep going.
//!
//! The underlying error is part of each message and deliberately not a `#[source]`: the
//! server's errors repeat their own cause in their text, so `anyhow`'s `{:#}` chain would
//! print it two or three times.

use rask_comm::CommError;
use std::path::PathBuf;

/// Errors of `rask zero-worker`. Everything that comes from the network ends up here (or in a
/// log line) rather than in a panic.
#[derive(Debug, thiserror::Error)]
pub enum ZeroWorkerError {
    /// The scheduler could not be reached or the handshake failed.
    #[error("cannot connect to the scheduler at {address}: {error}")]
    Connect {
        /// the scheduler address as given
        address: String,
        /// what went wrong
        error: CommError,
    },
    /// The scheduler answered `register-worker` with something other than `status: OK`.
    #[error("the scheduler at {address} refused worker {name}: {message}")]
    Refused {
        /// the scheduler address
        address: String,
        /// the fake worker's name
        name: String,
        /// the scheduler's message (or the whole reply)
        message: String,
    },
    /// A fake worker's own listener could not be opened.
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        /// `ip:0`
        addr: String,
        /// the OS error
        error: std::io::Error,
    },
    /// A connection failed after it was set up.
    #[error(transparent)]
    Comm(#[from] CommError),
    /// The scheduler sent a message of a shape no stock scheduler sends.
    #[error("unexpected message from the scheduler: {0}")]
    BadMessage(String),
    /// The report file could not be written.
    #[error("cannot write the report {path}: {error}")]
    Report {
        /// the `--report` path
        path: PathBuf,
        /// the OS error
        error: std::io::Error,
    },
    /// A bad command-line value.
    #[error("{0}")]
    Config(String),
}
