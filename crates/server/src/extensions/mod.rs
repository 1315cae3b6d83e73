//! Scheduler extensions (Dask's `Scheduler.extensions` and the P2P shuffle plugin), behind
//! one interface.
//!
//! Each extension owns its state and implements [`Extension`]: its typed RPCs and stream
//! ops (which the op table routes to it) and [`Hooks`], the events every extension may want
//! to see (a watched task's transition, a worker or client leaving, a restart, the periodic
//! tick). A handler sees the scheduler through a [`Cx`]: the core and the client registry
//! to read, the outbox for messages, replies, jobs and timers, and [`Cx::stimulus`] and
//! friends for changes to the core, which the state task applies once the handler returns
//! (their own hooks included), so no extension ever holds the state while another runs.

pub mod coordination;
pub mod events;
pub mod shuffle;

use crate::dask_config::DaskConfig;
use crate::event::{Job, Replier, RpcResult, Timer};
use crate::messages::ToWorkerMsg;
use crate::outbox::Outbox;
use rask_core::{ClientId, SchedulerState, Stimulus, TaskStatus, WorkerId};
use rask_protocol::Key;
use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::time::Duration;

/// Every extension's state, a field of the state task's scheduler.
#[derive(Default)]
pub struct Extensions {
    /// published datasets, Variable, Queue, Event, Semaphore/Lock, MultiLock
    pub coordination: coordination::Coordination,
    /// `log_event` topics and subscriptions
    pub events: events::Events,
    /// P2P shuffle runs
    pub shuffle: shuffle::Shuffle,
}

impl Extensions {
    /// Every extension, for the hooks.
    pub fn all(&mut self) -> [&mut dyn Hooks; 3] {
        [&mut self.shuffle, &mut self.coordination, &mut self.events]
    }
}

/// Who sent a stream op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// a client's stream
    Client(ClientId),
    /// a worker's stream
    Worker(WorkerId),
}

/// What an extension serves: the typed requests the op table routes to it.
pub trait Extension: Hooks {
    /// Its RPCs.
    type Rpc;
    /// Its ops on client and worker streams.
    type StreamOp;
    /// Serves an RPC: answers through `reply` now, or keeps it to answer later.
    fn rpc(&mut self, cx: &mut Cx<'_>, rpc: Self::Rpc, reply: Replier);
    /// Handles a stream op, in stream order.
    fn stream_op(&mut self, cx: &mut Cx<'_>, from: Peer, op: Self::StreamOp);
}

/// The events every extension may react to; each does nothing by default.
pub trait Hooks {
    /// A watched task (`NewTask::watch`: a shuffle barrier) became released, erred or
    /// forgotten (Dask's `SchedulerPlugin.transition`).
    fn on_transition(
        &mut self,
        _cx: &mut Cx<'_>,
        _key: &Key,
        _finish: TaskStatus,
        _sid: &Arc<str>,
    ) {
    }
    /// A worker left (`remove_worker`).
    fn on_worker_removed(&mut self, _cx: &mut Cx<'_>, _address: &str, _sid: &Arc<str>) {}
    /// A client's stream ended (`remove_client`).
    fn on_client_removed(&mut self, _cx: &mut Cx<'_>, _client: ClientId) {}
    /// Every task was forgotten (`Client.restart`).
    fn on_restart(&mut self, _cx: &mut Cx<'_>) {}
    /// The state task's periodic tick.
    fn on_tick(&mut self, _cx: &mut Cx<'_>) {}
}

/// A change to the scheduler an extension asks for; applied after its handler returns.
#[derive(Debug)]
pub enum Change {
    /// a stimulus for the core
    Stimulus(Stimulus),
    /// `client_desires_keys(keys, pseudo)`: a pseudo-client (`published-<name>`, ...) keeps
    /// keys alive, registered on first use as in Dask
    Desire {
        /// the pseudo-client's name
        pseudo: String,
        /// the keys
        keys: Vec<Key>,
    },
    /// `client_releases_keys(keys, pseudo)`
    Release {
        /// the pseudo-client's name
        pseudo: String,
        /// the keys
        keys: Vec<Key>,
        /// the stimulus id's prefix
        why: &'static str,
    },
    /// `remove_client(pseudo)`: forgets a pseudo-client and everything it wanted
    RemovePseudo(String),
}

/// What an extension's handler sees of the scheduler.
pub struct Cx<'a> {
    /// the state task's clock (seconds since the epoch)
    pub now: f64,
    /// the core, to read
    pub core: &'a SchedulerState,
    /// client name -> id (pseudo-clients included)
    pub client_ids: &'a FxHashMap<Arc<str>, ClientId>,
    /// the user's Dask configuration
    pub config: &'a DaskConfig,
    out: &'a mut dyn Outbox,
    changes: &'a mut Vec<Change>,
    next_id: &'a mut u64,
}

impl<'a> Cx<'a> {
    /// A context; `changes` collects what the handler asks for.
    pub fn new(
        now: f64,
        core: &'a SchedulerState,
        client_ids: &'a FxHashMap<Arc<str>, ClientId>,
        config: &'a DaskConfig,
        out: &'a mut dyn Outbox,
        changes: &'a mut Vec<Change>,
        next_id: &'a mut u64,
    ) -> Cx<'a> {
        Cx {
            now,
            core,
            client_ids,
            config,
            out,
            changes,
            next_id,
        }
    }

    /// A stimulus for the core.
    pub fn stimulus(&mut self, s: Stimulus) {
        self.changes.push(Change::Stimulus(s));
    }

    /// Keys a pseudo-client keeps alive.
    pub fn desire(&mut self, pseudo: String, keys: Vec<Key>) {
        self.changes.push(Change::Desire { pseudo, keys });
    }

    /// Keys a pseudo-client no longer keeps alive.
    pub fn release(&mut self, pseudo: String, keys: Vec<Key>, why: &'static str) {
        self.changes.push(Change::Release { pseudo, keys, why });
    }

    /// Forgets a pseudo-client.
    pub fn remove_pseudo(&mut self, pseudo: String) {
        self.changes.push(Change::RemovePseudo(pseudo));
    }

    /// A message for the worker at `address`, if it is still connected.
    pub fn to_worker_at(&mut self, address: &str, msg: ToWorkerMsg) {
        if let Some(w) = self.core.worker_id(address) {
            self.out.to_worker(w, msg);
        }
    }

    /// A message for a client.
    pub fn to_client(&mut self, client: ClientId, msg: crate::messages::ToClientMsg) {
        self.out.to_client(client, msg);
    }

    /// An RPC's answer.
    pub fn reply(&mut self, to: Replier, result: RpcResult) {
        self.out.reply(to, result);
    }

    /// Starts a background job.
    pub fn start(&mut self, job: Job) {
        self.out.start(job);
    }

    /// Sets a timer.
    pub fn after(&mut self, delay: Duration, timer: Timer) {
        self.out.after(delay, timer);
    }

    /// A fresh id for a wait or a timer.
    pub fn new_id(&mut self) -> u64 {
        *self.next_id += 1;
        *self.next_id
    }

    /// Seconds from now until `deadline` (0 if passed).
    pub fn until(&self, deadline: f64) -> Duration {
        Duration::try_from_secs_f64((deadline - self.now).max(0.0)).unwrap_or(Duration::ZERO)
    }
}
