//! Placeholder: filled in by the extension's implementation.

use crate::connection::Ctx;
use crate::error::ServerError;
use crate::runtime::Scheduler;
use rask_core::{ClientId, WorkerId};
use rask_protocol::Value;
use std::sync::Arc;

/// This extension's state.
#[derive(Default)]
pub struct State {}

/// RPC ops of this extension.
pub async fn rpc(_op: &str, _msg: &Value, _ctx: &Arc<Ctx>) -> Option<Result<Value, ServerError>> {
    None
}

/// Client stream ops of this extension.
pub fn client_stream_op(
    _op: &str,
    _msg: &Value,
    _client: ClientId,
    _ctx: &Arc<Ctx>,
) -> Option<Result<(), ServerError>> {
    None
}

/// Worker stream ops of this extension.
pub fn worker_stream_op(
    _op: &str,
    _msg: &Value,
    _worker: WorkerId,
    _ctx: &Arc<Ctx>,
) -> Option<Result<(), ServerError>> {
    None
}

/// A client went away.
pub fn on_client_removed(_s: &mut Scheduler, _client: ClientId, _name: &str) {}
