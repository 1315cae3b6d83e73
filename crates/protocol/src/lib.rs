//! The Dask `distributed` 2026.8.0 wire format, without sockets.
//!
//! # Layout
//! - [`value`]: [`Value`], the msgpack data model of frame 0, with [`Opaque`] payloads
//!   (`{"__Serialized__": i}` / `{"__Pickled__": i}`) kept as raw `Bytes`, and [`Key`],
//!   a Dask task key (str, bytes, int, float or nested tuple).
//! - [`msgpack`]: frames ⇄ [`Value`] (`decode_message` / `encode_message`).
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
pub use msgpack::{decode_message, encode_message};
pub use value::{Key, Opaque, OpaqueKind, Value};

/// The `distributed` release whose wire protocol this crate speaks and that rask is tested
/// with; the scheduler, `rask worker` and the CLI compare the user's `distributed` against it.
pub const TESTED_DISTRIBUTED: &str = "2026.8.0";
