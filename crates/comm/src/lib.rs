//! The transport every rask process shares: the scheduler, `rask worker`, the zero worker
//! and the CLI all speak to Dask peers through this crate, and none of them needs the
//! scheduler for it.
//!
//! # Layout
//! - [`comm`]: a framed TCP or TLS connection with Dask's handshake, caps and timeouts
//!   ([`Comm`], configured by a [`CommConfig`] each caller passes in: there is no
//!   process-wide setting).
//! - [`tls`]: certificates and rustls set up as Dask's `Security` does.
//! - [`net`]: which local address to listen on and advertise.
//! - [`fields`]: reading the fields of a Dask message, with typed errors.
//! - [`reply`]: Dask's error replies (`error_message`), so a caller re-raises the right
//!   Python exception.
//! - [`error`]: [`CommError`], the transport's failures.
#![warn(missing_docs)]

pub mod comm;
pub mod error;
pub mod fields;
pub mod net;
pub mod reply;
pub mod tls;

pub use comm::{Accepted, Comm, CommConfig, CommReader, CommWriter};
pub use error::CommError;
pub use fields::FieldError;
