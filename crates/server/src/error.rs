//! Errors at the server's boundaries.

use rask_protocol::ProtocolError;

/// Why a connection, a request or the server itself failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Undecodable bytes from a peer.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection before a reply.
    #[error("connection closed by peer")]
    Closed,
    /// A bounded wait ran out.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(std::time::Duration, &'static str),
    /// An address rask cannot dial or bind.
    #[error("bad address {0:?}: {1}")]
    BadAddress(String, &'static str),
    /// A message that decodes but is not what Dask sends: wrong type, missing field.
    #[error("bad message: {0}")]
    BadMessage(String),
    /// An op name rask does not know (or does not support yet).
    #[error("{0}")]
    UnknownOp(String),
    /// The peer's handshake is unacceptable.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The state task is gone (the scheduler is shutting down).
    #[error("scheduler is shutting down")]
    ShuttingDown,
    /// A worker answered an RPC with an error or nonsense.
    #[error("worker {0} failed: {1}")]
    Worker(String, String),
    /// The graph helper could not do its job.
    #[error("graph helper: {0}")]
    Helper(String),
    /// TLS set-up or a TLS connection failed, or a plain peer where TLS is required.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A peer made no progress for `distributed.comm.timeouts.tcp`: it stopped reading
    /// what we write, or stopped sending in the middle of a message.
    #[error("no progress for {0:?} waiting for {1}: closing the connection")]
    Stalled(std::time::Duration, &'static str),
    /// Start-up problem (Python without `distributed`, port taken, unwritable file).
    #[error("{0}")]
    Startup(String),
}

impl ServerError {
    /// Whether the peer sent something malformed (its connection is then closed).
    pub fn is_peer_fault(&self) -> bool {
        matches!(
            self,
            ServerError::Protocol(_)
                | ServerError::BadMessage(_)
                | ServerError::UnknownOp(_)
                | ServerError::Handshake(_)
        )
    }
}
