//! Clients and workers: joining (`register-client`, `register-worker`), their stream
//! messages in order, and leaving.

use super::{ClientInfo, Held, PendingGraph, Scheduler, WorkerInfo};
use crate::event::{ClientTx, Job, Joined, WorkerTx};
use crate::extensions::{Extension, Peer};
use crate::messages::{ClientMsg, Placement, Registration, ToClientMsg, WorkerMsg};
use crate::outbox::Outbox;
use crate::translate::versions::mismatch_warning;
use crate::translate::worker::{refused, registered};
use crate::translate::{events, host};
use rask_core::{ClientId, Stimulus, WorkerId, WorkerSpec};
use rask_protocol::Key;
use rask_protocol::Value;
use std::collections::VecDeque;
use std::sync::Arc;

/// The topic of every scheduler event (`log_event("all", ...)`).
const ALL: &str = "all";

impl Scheduler {
    // ---- clients -----------------------------------------------------------------------------

    /// The version-mismatch warning for a newcomer (`version_module.error_message`,
    /// scheduler.py:5929 and 4790): its packages against the scheduler's (the graph
    /// helper's environment) and every registered worker's.
    fn version_warning(&self, versions: &Value, source_name: &str) -> String {
        let workers: Vec<&Value> = self
            .workers
            .values()
            .map(|w| &w.registration.versions)
            .collect();
        mismatch_warning(&self.identity.versions, &workers, versions, source_name)
    }

    /// `register-client` (scheduler.py:5904-5952).
    pub(super) fn client_joined(
        &mut self,
        now: f64,
        name: Arc<str>,
        versions: &Value,
        stream: ClientTx,
        out: &mut dyn Outbox,
    ) -> ClientId {
        let id = self.core.new_client_id();
        out.open_client(id, stream);
        // `stream-start` must be the first message on the stream.
        let warning = self.version_warning(versions, "Client");
        out.to_client(id, ToClientMsg::StreamStart { warning });
        self.monitor.clients_added += 1;
        self.clients.insert(
            id,
            ClientInfo {
                name: name.clone(),
                held: None,
                graph: None,
            },
        );
        self.client_ids.insert(name.clone(), id);
        let all: Arc<str> = ALL.into();
        let event = events::client_event("add-client", &name);
        self.log_event(now, &[&all, &name], event, out);
        self.stimulus(
            now,
            Stimulus::AddClient {
                id,
                name: name.clone(),
            },
            out,
        );
        self.host_event(|_| host::client(true, &name));
        id
    }

    /// One input of a client's stream, in order: held back while one of its graphs is
    /// being materialized.
    pub(super) fn client_input(
        &mut self,
        now: f64,
        client: ClientId,
        input: Held,
        out: &mut dyn Outbox,
    ) {
        let Some(info) = self.clients.get_mut(&client) else {
            return;
        };
        if let Some(held) = &mut info.held {
            held.push_back(input);
            return;
        }
        match input {
            Held::Msg(msg) => self.client_msg(now, client, msg, out),
            Held::Leave => self.remove_client(now, client, out),
        }
    }

    fn client_msg(&mut self, now: f64, client: ClientId, msg: ClientMsg, out: &mut dyn Outbox) {
        match msg {
            ClientMsg::UpdateGraph(request) => {
                // this client's later messages wait for the graph; nobody else does
                if let Some(info) = self.clients.get_mut(&client) {
                    info.held = Some(VecDeque::new());
                }
                out.start(Job::Materialize { client, request });
            }
            ClientMsg::CloseClient => {}
            ClientMsg::HeartbeatClient => {
                // scheduler.py:5839: from the number of clients (the scheduler's own
                // pseudo-clients, such as fire-and-forget, count), not of workers
                let interval = super::heartbeat_interval(self.client_ids.len()) * 10.0;
                out.to_client(client, ToClientMsg::AdjustHeartbeat { interval });
            }
            ClientMsg::DesiresKeys { keys, client: who } => {
                let client = self.on_behalf_of(who, client);
                self.stimulus(now, Stimulus::ClientDesiresKeys { client, keys }, out);
            }
            ClientMsg::ReleasesKeys {
                keys,
                client: who,
                stimulus_id,
            } => {
                let client = self.on_behalf_of(who, client);
                let s = Stimulus::ClientReleasesKeys {
                    client,
                    keys,
                    stimulus_id,
                };
                self.stimulus(now, s, out);
            }
            ClientMsg::CancelKeys {
                keys,
                force,
                reason,
                msg,
            } => {
                let s = Stimulus::CancelKeys {
                    client,
                    keys,
                    force,
                    reason,
                    msg,
                };
                self.stimulus(now, s, out);
            }
            ClientMsg::ReportKey { key } => {
                self.stimulus(now, Stimulus::ReportKey { client, key }, out)
            }
            ClientMsg::UpdateData(placement) => self.update_data(now, Some(client), placement, out),
            ClientMsg::Events(op) => self.with_ext(now, out, |ext, cx| {
                ext.events.stream_op(cx, Peer::Client(client), op)
            }),
            ClientMsg::Coordination(op) => self.with_ext(now, out, |ext, cx| {
                ext.coordination.stream_op(cx, Peer::Client(client), op)
            }),
        }
    }

    /// A stream message naming another client (`client=...`), else the stream's own.
    fn on_behalf_of(&self, who: Option<Arc<str>>, own: ClientId) -> ClientId {
        who.and_then(|n| self.client_ids.get(&n).copied())
            .unwrap_or(own)
    }

    /// A graph is materialized (or failed): it reaches the core. Once it is in (at once, or
    /// a big one over several turns), the client's held messages go on ([`Self::graph_in`]).
    pub(super) fn graph_done(
        &mut self,
        now: f64,
        client: ClientId,
        stimulus: Stimulus,
        out: &mut dyn Outbox,
    ) {
        let graph = matches!(stimulus, Stimulus::UpdateGraph { .. });
        if let Stimulus::UpdateGraph {
            keys,
            tasks,
            stimulus_id,
            ..
        } = &stimulus
        {
            self.diag.graph_keys(keys);
            if self.host.active() {
                let tasks: Vec<Key> = tasks.iter().map(|t| t.key.clone()).collect();
                let pending = PendingGraph {
                    keys: keys.clone(),
                    tasks,
                    stimulus_id: stimulus_id.clone(),
                    mark: self.host_mark(),
                };
                if let Some(info) = self.clients.get_mut(&client) {
                    info.graph = Some(pending);
                }
            }
        }
        // Scheduler plugins hear `update_graph` before the graph's transitions, and its
        // event goes where it began: with the plugin host running, a graph goes in whole.
        let whole = self.host.active();
        if whole {
            self.core.set_ingest_batch(usize::MAX);
        }
        self.stimulus(now, stimulus, out);
        if whole {
            self.core.set_ingest_batch(self.ingest_batch);
        }
        if !graph {
            self.graph_in(now, client, out);
        }
    }

    /// The client's graph is in the core (or failed): the plugin host hears of it, then the
    /// client's held messages go on, up to its next graph.
    pub(super) fn graph_in(&mut self, now: f64, client: ClientId, out: &mut dyn Outbox) {
        let graph = self.clients.get_mut(&client).and_then(|c| c.graph.take());
        if let Some(g) = graph {
            self.host_graph(g.mark, client, &g.keys, &g.tasks, &g.stimulus_id);
        }
        let Some(held) = self.clients.get_mut(&client).and_then(|c| c.held.take()) else {
            return;
        };
        let mut held = held;
        while let Some(input) = held.pop_front() {
            match input {
                Held::Msg(msg) => self.client_msg(now, client, msg, out),
                Held::Leave => {
                    self.remove_client(now, client, out);
                    return;
                }
            }
            // another graph: the rest waits for it
            if let Some(info) = self.clients.get_mut(&client) {
                if let Some(next) = &mut info.held {
                    next.extend(held);
                    return;
                }
            }
        }
    }

    /// The client's stream ended: its keys are released.
    fn remove_client(&mut self, now: f64, client: ClientId, out: &mut dyn Outbox) {
        if let Some(name) = self.clients.get(&client).map(|i| i.name.clone()) {
            let all: Arc<str> = ALL.into();
            let event = events::client_event("remove-client", &name);
            self.log_event(now, &[&all, &name], event, out);
        }
        self.stimulus(now, Stimulus::RemoveClient { client }, out);
        if let Some(info) = self.clients.get(&client) {
            let name = info.name.clone();
            self.host_event(|_| host::client(false, &name));
        }
        out.close_client(client);
        if let Some(info) = self.clients.remove(&client) {
            self.monitor.clients_removed += 1;
            self.client_ids.remove(&info.name);
            tracing::info!(client = %info.name, "Remove client");
            self.with_ext(now, out, |ext, cx| {
                for e in ext.all() {
                    e.on_client_removed(cx, client);
                }
            });
        }
    }

    /// `update_data` / `update-data`: data put on workers by scatter or by another client.
    pub(super) fn update_data(
        &mut self,
        now: f64,
        client: Option<ClientId>,
        placement: Placement,
        out: &mut dyn Outbox,
    ) {
        let Placement { who_has, nbytes } = placement;
        let data = who_has
            .into_iter()
            .map(|(key, addrs)| {
                let workers: Vec<WorkerId> = addrs
                    .iter()
                    .filter_map(|a| self.core.worker_id(a))
                    .collect();
                let n = nbytes.get(&key).copied().unwrap_or(0);
                (key, workers, n)
            })
            .collect();
        let s = Stimulus::UpdateData {
            client,
            data,
            stimulus_id: format!("update-data-{now}").into(),
        };
        self.stimulus(now, s, out);
    }

    // ---- workers -----------------------------------------------------------------------------

    /// `register-worker` (scheduler.py:4663-4800): refused if its name or address is taken.
    pub(super) fn worker_joined(
        &mut self,
        now: f64,
        registration: Box<Registration>,
        stream: WorkerTx,
        out: &mut dyn Outbox,
    ) -> Joined {
        let taken = self
            .core
            .workers()
            .any(|(_, w)| w.name == registration.name || w.address == registration.address);
        if taken {
            tracing::warn!(address = %registration.address, "refusing worker: name taken");
            return Joined::Refused {
                reply: refused(&format!("name taken, {}", registration.name)),
            };
        }
        let id = self.core.new_worker_id();
        let spec = WorkerSpec {
            address: registration.address.clone(),
            name: registration.name.clone(),
            nthreads: registration.nthreads,
            memory_limit: registration.memory_limit,
            resources: registration.resources.clone(),
            status: registration.status,
        };
        tracing::info!(
            address = %registration.address,
            name = %registration.name,
            nthreads = registration.nthreads,
            "Register worker"
        );
        out.open_worker(id, stream);
        self.monitor.workers_added += 1;
        self.workers.insert(
            id,
            WorkerInfo {
                metrics: registration.metrics.clone(),
                registration,
                last_seen: now,
            },
        );
        // the new worker is among the workers it is compared with (scheduler.py:4790)
        let versions = &self.workers[&id].registration;
        let warning = self.version_warning(&versions.versions, &versions.server_id.clone());
        let reply = registered(
            self.heartbeat_interval(),
            self.plugins.worker_plugins(),
            warning,
        );
        let (address, all): (Arc<str>, Arc<str>) = (spec.address.clone(), ALL.into());
        self.log_event(now, &[&address], events::add_worker(None), out);
        self.log_event(now, &[&all], events::add_worker(Some(&address)), out);
        // the hooks run before the tasks waiting for a worker are scheduled on it
        let mark = self.host_mark();
        self.stimulus(now, Stimulus::AddWorker { id, spec }, out);
        if let Some(w) = self.core.worker(id) {
            let worker = host::worker(w, self.nanny_of(id));
            self.host_event_at(mark, |_| host::add_worker(worker));
        }
        self.tell_watchers_added(id, out);
        self.worker_arrived(now, out);
        Joined::Accepted { worker: id, reply }
    }

    pub(super) fn worker_msg(
        &mut self,
        now: f64,
        worker: WorkerId,
        msg: WorkerMsg,
        out: &mut dyn Outbox,
    ) {
        match msg {
            WorkerMsg::Core(s) => self.stimulus(now, s, out),
            WorkerMsg::TaskDone(d) => self.task_done(now, worker, *d, out),
            // liveness is the stream itself (and the heartbeats)
            WorkerMsg::KeepAlive => {}
            WorkerMsg::Events(op) => self.with_ext(now, out, |ext, cx| {
                ext.events.stream_op(cx, Peer::Worker(worker), op)
            }),
        }
    }

    /// `remove_worker`: its stream, its tasks (core), and the extensions' hooks (a P2P
    /// shuffle it took part in fails and restarts).
    pub(super) fn remove_worker(
        &mut self,
        now: f64,
        worker: WorkerId,
        expected: bool,
        stimulus_id: Arc<str>,
        out: &mut dyn Outbox,
    ) {
        let Some(address) = self.core.worker(worker).map(|w| w.address.clone()) else {
            return;
        };
        let removal = self.removal(worker, expected, &stimulus_id);
        let all: Arc<str> = ALL.into();
        self.log_event(now, &[&address], events::remove_worker(&removal, None), out);
        let event = events::remove_worker(&removal, Some(&address));
        self.log_event(now, &[&all], event, out);
        let s = Stimulus::RemoveWorker {
            worker,
            expected,
            stimulus_id: stimulus_id.clone(),
        };
        self.stimulus(now, s, out);
        self.host_event(|_| host::remove_worker(&address, &stimulus_id));
        self.workers.remove(&worker);
        self.monitor.workers_removed += 1;
        self.diag.worker_removed(worker);
        out.close_worker(worker);
        tracing::info!(%address, "Remove worker");
        self.tell_watchers_removed(address.clone(), out);
        self.with_ext(now, out, |ext, cx| {
            for e in ext.all() {
                e.on_worker_removed(cx, &address, &stimulus_id);
            }
        });
    }

    /// What removing `worker` costs, for its `remove-worker` event (scheduler.py:5631-5693):
    /// the keys it runs, and the keys only it holds, recomputable or scattered.
    fn removal(&self, worker: WorkerId, expected: bool, sid: &Arc<str>) -> events::WorkerRemoval {
        let mut r = events::WorkerRemoval {
            processing: Vec::new(),
            lost_computed: Vec::new(),
            lost_scattered: Vec::new(),
            stimulus_id: sid.clone(),
            expected,
        };
        let Some(ws) = self.core.worker(worker) else {
            return r;
        };
        for id in &ws.processing {
            if let Some(t) = self.core.task_by_id(*id) {
                r.processing.push(t.key.to_value());
            }
        }
        for id in &ws.has_what {
            let Some(t) = self.core.task_by_id(*id) else {
                continue;
            };
            // an actor errs with its worker; a key another worker holds is not lost
            if t.actor || t.who_has.iter().any(|w| *w != worker) {
                continue;
            }
            if t.run_spec.is_some() {
                r.lost_computed.push(t.key.to_value());
            } else {
                r.lost_scattered.push(t.key.to_value());
            }
        }
        r
    }

    /// `remove_worker(close=True)`: tells the worker to close, then forgets it.
    pub(super) fn close_and_remove(
        &mut self,
        now: f64,
        worker: WorkerId,
        stimulus_id: &Arc<str>,
        out: &mut dyn Outbox,
    ) {
        let reason = super::admin::REMOVE_WORKER.into();
        out.to_worker(worker, rask_core::ToWorker::Close { reason }.into());
        self.remove_worker(now, worker, false, stimulus_id.clone(), out);
    }
}
