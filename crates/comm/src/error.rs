//! Why a connection failed: the transport boundary.

use rask_protocol::ProtocolError;
use std::time::Duration;

/// A connection that could not be made, or broke.
#[derive(Debug, thiserror::Error)]
pub enum CommError {
    /// Undecodable bytes from the peer, or a message over the caps.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection before a reply.
    #[error("connection closed by peer")]
    Closed,
    /// A bounded wait ran out (the connect, the handshake).
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, &'static str),
    /// An address rask cannot dial.
    #[error("bad address {0:?}: {1}")]
    BadAddress(String, &'static str),
    /// The peer's handshake is unacceptable.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// TLS set-up or a TLS connection failed, or a plain peer where TLS is required.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The peer made no progress for `distributed.comm.timeouts.tcp`: it stopped reading
    /// what we write, or stopped sending in the middle of a message.
    #[error("no progress for {0:?} waiting for {1}: closing the connection")]
    Stalled(Duration, &'static str),
}

impl CommError {
    /// Whether the error only says the peer went away (Dask closes pooled connections
    /// with a reset when a process exits): not worth more than a debug line.
    pub fn is_disconnect(&self) -> bool {
        use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
        let io = match self {
            CommError::Closed => return true,
            CommError::Io(e) | CommError::Protocol(ProtocolError::Io(e)) => e,
            _ => return false,
        };
        matches!(
            io.kind(),
            ConnectionReset | BrokenPipe | ConnectionAborted | UnexpectedEof
        )
    }

    /// Whether the connection logged this itself, naming the limit it hit (a stall, a
    /// message over `--max-message-bytes` or `--max-frames`).
    pub fn is_logged_limit(&self) -> bool {
        matches!(
            self,
            CommError::Stalled(..)
                | CommError::Protocol(
                    ProtocolError::MessageTooLarge { .. } | ProtocolError::TooManyFrames { .. }
                )
        )
    }
}
