//! The server's [`Outbox`]: peers' batched writers, spawned jobs and timers. The state task
//! owns it; nothing else sends on a peer's stream.

use crate::event::{ClientTx, Event, Job, Replier, RpcResult, Timer, WorkerTx};
use crate::jobs::{self, JobContext};
use crate::messages::cluster::{StatusTx, WorkerStatusMsg};
use crate::messages::{ToClientMsg, ToWorkerMsg};
use crate::outbox::Outbox;
use crate::plugin_host::{HostHandle, ToHost};
use rask_core::{ClientId, WorkerId};
use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Where the state task's effects go in the running server.
pub struct Channels {
    workers: FxHashMap<WorkerId, WorkerTx>,
    clients: FxHashMap<ClientId, ClientTx>,
    /// `subscribe_worker_status` feeds
    watchers: Vec<StatusTx>,
    /// back to the state task: job results and timers
    internal: mpsc::UnboundedSender<Event>,
    jobs: Arc<JobContext>,
    /// the plugin host
    host: HostHandle,
    /// set when the scheduler should stop (idle timeout)
    stop: watch::Sender<bool>,
}

impl Channels {
    /// Channels whose jobs and timers report on `internal`; `stop` is set on an idle
    /// timeout.
    pub fn new(
        internal: mpsc::UnboundedSender<Event>,
        jobs: Arc<JobContext>,
        host: HostHandle,
        stop: watch::Sender<bool>,
    ) -> Channels {
        Channels {
            workers: FxHashMap::default(),
            clients: FxHashMap::default(),
            watchers: Vec::new(),
            internal,
            jobs,
            host,
            stop,
        }
    }
}

impl Outbox for Channels {
    fn to_worker(&mut self, worker: WorkerId, msg: ToWorkerMsg) {
        if let Some(tx) = self.workers.get(&worker) {
            let _ = tx.send(msg);
        }
    }

    fn to_client(&mut self, client: ClientId, msg: ToClientMsg) {
        if let Some(tx) = self.clients.get(&client) {
            let _ = tx.send(msg);
        }
    }

    fn reply(&mut self, to: Replier, result: RpcResult) {
        to.send(result);
    }

    fn start(&mut self, job: Job) {
        let cx = self.jobs.clone();
        let back = self.internal.clone();
        tokio::spawn(async move {
            let done = jobs::run(job, &cx).await;
            let _ = back.send(Event::Done(done));
        });
    }

    fn after(&mut self, delay: Duration, timer: Timer) {
        let back = self.internal.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = back.send(Event::Timer(timer));
        });
    }

    fn open_worker(&mut self, worker: WorkerId, stream: WorkerTx) {
        self.workers.insert(worker, stream);
    }

    fn close_worker(&mut self, worker: WorkerId) {
        self.workers.remove(&worker);
    }

    fn open_client(&mut self, client: ClientId, stream: ClientTx) {
        self.clients.insert(client, stream);
    }

    fn close_client(&mut self, client: ClientId) {
        self.clients.remove(&client);
    }

    fn open_watcher(&mut self, stream: StatusTx) {
        self.watchers.push(stream);
    }

    fn to_watchers(&mut self, msg: WorkerStatusMsg) {
        // a feed whose connection closed is forgotten (`remove_plugin` on CommClosedError)
        self.watchers.retain(|w| w.send(msg.clone()).is_ok());
    }

    fn to_host(&mut self, msg: ToHost) {
        self.host.send(msg);
    }

    fn stop(&mut self) {
        let _ = self.stop.send(true);
    }
}
