//! One error enum for everything that can be wrong with bytes from a peer.

/// Why a message from the network could not be understood. Every variant is the peer's
/// fault (or the socket's): the connection that produced it is closed, nobody else is
/// affected.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The socket failed underneath the codec.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A frame header announced more frames than any Dask message carries.
    #[error("message announces {announced} frames (limit {limit})")]
    TooManyFrames {
        /// frame count in the header
        announced: u64,
        /// the configured ceiling
        limit: u64,
    },
    /// A frame header announced more bytes than the configured ceiling.
    #[error("message announces {announced} bytes (limit {limit})")]
    MessageTooLarge {
        /// total payload bytes in the header
        announced: u64,
        /// the configured ceiling
        limit: u64,
    },
    /// A message with zero frames (Dask always sends frame 0).
    #[error("message has no frames")]
    NoFrames,
    /// Frame 0 (or a sub-header) ended in the middle of a msgpack value.
    #[error("truncated msgpack data")]
    Truncated,
    /// Msgpack bytes that are not a valid value (reserved marker, ext type, ...).
    #[error("invalid msgpack: {0}")]
    InvalidMsgpack(&'static str),
    /// A msgpack string that is not UTF-8.
    #[error("msgpack string is not valid UTF-8")]
    InvalidUtf8,
    /// Containers nested deeper than any real message.
    #[error("msgpack nesting deeper than {0}")]
    TooDeep(usize),
    /// Bytes left over after frame 0's value.
    #[error("{0} trailing bytes after msgpack value")]
    TrailingBytes(usize),
    /// `{"__Serialized__": i}` pointing outside the message or with a bad sub-header.
    #[error("bad payload reference: {0}")]
    BadPayloadRef(String),
}
