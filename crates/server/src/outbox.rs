//! The one way effects leave the state task (HyperQueue's `Comm` trait over its reactor).
//!
//! The state task's handlers are synchronous: they change the state and tell an
//! [`Outbox`] what to send and what to start. In the server the outbox is
//! [`crate::channels::Channels`] (peers' batched writers, spawned jobs and timers); in tests
//! it is a recorder, so a handler's effects can be checked without tokio or sockets.

use crate::event::{ClientTx, Job, Replier, RpcResult, Timer, WorkerTx};
use crate::messages::cluster::{StatusTx, WorkerStatusMsg};
use crate::messages::{ToClientMsg, ToWorkerMsg};
use rask_core::{ClientId, WorkerId};
use std::time::Duration;

/// Where the state task's effects go.
pub trait Outbox {
    /// A message on a worker's stream (dropped if the worker's stream is closed).
    fn to_worker(&mut self, worker: WorkerId, msg: ToWorkerMsg);
    /// A message on a client's stream (dropped if the client's stream is closed).
    fn to_client(&mut self, client: ClientId, msg: ToClientMsg);
    /// An RPC's answer.
    fn reply(&mut self, to: Replier, result: RpcResult);
    /// Starts a background job; its result comes back as an event.
    fn start(&mut self, job: Job);
    /// Sets a timer; it comes back as an event after `delay`.
    fn after(&mut self, delay: Duration, timer: Timer);
    /// A worker's stream is open: messages for `worker` go to `stream`.
    fn open_worker(&mut self, worker: WorkerId, stream: WorkerTx);
    /// A worker's stream closes: its writer ends once what is queued is written.
    fn close_worker(&mut self, worker: WorkerId);
    /// A client's stream is open.
    fn open_client(&mut self, client: ClientId, stream: ClientTx);
    /// A client's stream closes.
    fn close_client(&mut self, client: ClientId);
    /// A `subscribe_worker_status` feed is open: it hears of workers arriving and leaving.
    fn open_watcher(&mut self, stream: StatusTx);
    /// A message for every open worker-status feed (a closed one is dropped).
    fn to_watchers(&mut self, msg: WorkerStatusMsg);
    /// A message for the plugin host (a request's reply fails if there is no host).
    fn to_host(&mut self, msg: crate::plugin_host::ToHost);
    /// The scheduler should stop (`idle-timeout`, `terminate`).
    fn stop(&mut self);
}
