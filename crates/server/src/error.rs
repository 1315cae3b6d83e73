//! Errors at the server's boundaries.

use rask_comm::{CommError, FieldError};
use rask_protocol::ProtocolError;

/// Why a connection, a request or the server itself failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The connection failed.
    #[error(transparent)]
    Comm(#[from] CommError),
    /// A field of a message is missing or of the wrong type.
    #[error("bad message: {0}")]
    Field(#[from] FieldError),
    /// Undecodable bytes from a graph helper.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// A pipe to a graph helper failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A bounded wait ran out.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(std::time::Duration, &'static str),
    /// A message that decodes but is not what Dask sends: wrong type, missing field.
    #[error("bad message: {0}")]
    BadMessage(String),
    /// An op name rask does not know (or does not support yet).
    #[error("{0}")]
    UnknownOp(String),
    /// The state task is gone (the scheduler is shutting down).
    #[error("scheduler is shutting down")]
    ShuttingDown,
    /// A worker answered an RPC with an error or nonsense.
    #[error("worker {0} failed: {1}")]
    Worker(String, String),
    /// The graph helper could not do its job.
    #[error("graph helper: {0}")]
    Helper(String),
    /// Start-up problem (Python without `distributed`, port taken, unwritable file).
    #[error("{0}")]
    Startup(String),
}

impl ServerError {
    /// Whether the peer sent something malformed (its connection is then closed).
    pub fn is_peer_fault(&self) -> bool {
        matches!(
            self,
            ServerError::Comm(CommError::Protocol(_) | CommError::Handshake(_))
                | ServerError::Field(_)
                | ServerError::BadMessage(_)
                | ServerError::UnknownOp(_)
        )
    }
}
