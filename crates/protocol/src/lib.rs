//! The Dask `distributed` 2026.8.0 wire format, without sockets.
//!
//! # Layout
//! - [`value`]: [`Value`], the msgpack data model of frame 0, with [`Opaque`] payloads
//!   (`{"__Serialized__": i}` / `{"__Pickled__": i}`) kept as raw `Bytes`, and [`Key`],
//!   a Dask task key (str, bytes, int, float or nested tuple).
//! - [`msgpack`]: frames ⇄ [`Value`] (`decode_message` / `encode_message`), and frames
//!   read or written piece by piece (`MessageReader` / `MessageEncoder`) for the messages
//!   sent once per task.
//! - [`frame`]: the TCP framing (`u64 nosplit, u64 nframes, u64 len × n, frames`) as a
//!   `tokio_util` codec with hard limits, so a hostile length cannot allocate memory.
//! - [`handshake`]: the first message both peers write.
//!
//! See `docs/PROTOCOL.md` §1 in the shared docs for every claim, with `file:line` into
//! `distributed`.
#![warn(missing_docs)]

pub mod error;
pub mod frame;
pub mod handshake;
pub mod msgpack;
pub mod pickle;
pub mod value;

pub use error::ProtocolError;
pub use frame::{FrameCodec, Frames};
pub use msgpack::{decode_message, encode_message, MessageEncoder, MessageReader};
pub use value::{Key, Opaque, OpaqueKind, Value};

/// The `distributed` release whose wire protocol this crate speaks and that rask is tested
/// with; the scheduler, `rask worker` and the CLI compare the user's `distributed` against it.
pub const TESTED_DISTRIBUTED: &str = "2026.8.0";

/// Older `distributed` releases rask also serves and tests (`scripts/test` runs an e2e
/// subset on each, from `.venv-<release>`): their clients, workers and graph helpers connect
/// without a warning. Their extra ops are in the scheduler's op table.
pub const TESTED_OLDER_DISTRIBUTED: &[&str] = &["2026.3.0", "2025.12.0"];

/// Whether rask is tested with this `distributed` release.
pub fn is_tested_distributed(version: &str) -> bool {
    version == TESTED_DISTRIBUTED || TESTED_OLDER_DISTRIBUTED.contains(&version)
}

/// The tested releases for messages, newest first: `2026.8.0, 2026.3.0, 2025.12.0`.
pub fn tested_distributed_releases() -> String {
    std::iter::once(TESTED_DISTRIBUTED)
        .chain(TESTED_OLDER_DISTRIBUTED.iter().copied())
        .collect::<Vec<_>>()
        .join(", ")
}
