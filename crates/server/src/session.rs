//! What a connection's task holds (the state task's handle, the connection settings) and
//! why it can end early: shared by the request loop ([`crate::connection`]) and the
//! streams it turns into ([`crate::streams`]).

use crate::error::RequestError;
use crate::event::Handle;
use rask_comm::{CommConfig, CommError};
use std::sync::Arc;

/// What every connection task needs.
pub struct Ctx {
    /// the state task
    pub handle: Handle,
    /// caps, timeouts and TLS of accepted connections
    pub comm: Arc<CommConfig>,
}

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The transport failed.
    #[error(transparent)]
    Comm(#[from] CommError),
    /// The peer sent something it should not have (it got an error reply first).
    #[error(transparent)]
    Request(#[from] RequestError),
}
