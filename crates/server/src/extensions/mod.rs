//! Scheduler extensions (Dask's `Scheduler.extensions`): the coordination services and
//! the event log that clients and tasks reach through the scheduler.
//!
//! Each extension keeps its state in [`Extensions`] (owned by the state task, like everything
//! else) and sees three kinds of input: RPC ops, client stream ops and worker stream ops.
//! Dispatch asks each extension in turn; `None` means "not mine".

pub mod coordination;
pub mod events;
pub mod shuffle;

use crate::connection::Ctx;
use crate::error::ServerError;
use crate::runtime::Scheduler;
use rask_core::{ClientId, WorkerId};
use rask_protocol::Value;
use std::sync::Arc;

/// The extensions' state, a field of [`Scheduler`].
#[derive(Default)]
pub struct Extensions {
    /// published datasets, Variable, Queue, Event, Semaphore/Lock, MultiLock
    pub coordination: coordination::State,
    /// `log_event` topics and subscriptions
    pub events: events::State,
    /// P2P shuffle runs
    pub shuffle: shuffle::State,
}

/// An RPC op served by an extension, or `None` if no extension knows it.
pub async fn rpc(op: &str, msg: &Value, ctx: &Arc<Ctx>) -> Option<Result<Value, ServerError>> {
    if let Some(r) = shuffle::rpc(op, msg, ctx).await {
        return Some(r);
    }
    if let Some(r) = coordination::rpc(op, msg, ctx).await {
        return Some(r);
    }
    events::rpc(op, msg, ctx).await
}

/// A client stream op handled by an extension, or `None` if none of theirs. Runs in the
/// client's connection task, in stream order.
pub fn client_stream_op(
    op: &str,
    msg: &Value,
    client: ClientId,
    ctx: &Arc<Ctx>,
) -> Option<Result<(), ServerError>> {
    coordination::client_stream_op(op, msg, client, ctx)
        .or_else(|| events::client_stream_op(op, msg, client, ctx))
}

/// Worker stream ops that extensions handle (checked before dispatch, so the worker stream
/// can keep its messages in order around them).
pub const WORKER_STREAM_OPS: &[&str] = &["log-event"];

/// Handles a worker stream op listed in [`WORKER_STREAM_OPS`].
pub fn worker_stream_op(
    op: &str,
    msg: &Value,
    worker: WorkerId,
    ctx: &Arc<Ctx>,
) -> Result<(), ServerError> {
    coordination::worker_stream_op(op, msg, worker, ctx)
        .or_else(|| events::worker_stream_op(op, msg, worker, ctx))
        .unwrap_or(Ok(()))
}

/// A client (stream) went away; runs on the state task.
pub fn on_client_removed(s: &mut Scheduler, client: ClientId, name: &str) {
    coordination::on_client_removed(s, client, name);
    events::on_client_removed(s, client, name);
}
