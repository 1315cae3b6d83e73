//! The state task: [`Scheduler`] owns the core and everything around it (who is connected,
//! the extensions, administration in progress) and handles one [`Event`] at a time,
//! synchronously, with the time passed in. Effects leave through an [`Outbox`]; waits on
//! other processes are [`crate::event::Job`]s that come back as events. Nothing here reads a
//! clock, touches a socket or awaits, so every handler can be driven by a test.
//!
//! - [`requests`]: the RPCs the scheduler serves itself (queries, `scatter`, `gather`, ...).
//! - [`peers`]: clients and workers joining, their stream messages, leaving.
//! - [`admin`]: restarting and retiring workers, the worker-ttl check.
//! - [`cluster`]: cluster managers' requests (metadata, worker-status feeds, adaptive
//!   scaling, `terminate`) and data placement (`replicate`, `rebalance`).
//! - [`run`]: the tokio task around it.

mod admin;
mod cluster;
mod diagnostics;
mod host;
mod inspect;
mod monitor;
mod peers;
mod plugins;
mod requests;
mod run;

pub use run::{run, Clock};

use crate::dask_config::DaskConfig;
use crate::event::{Done, Event, Timer};
use crate::extensions::{Change, Cx, Extensions};
use crate::messages::{ClientMsg, Registration, ToClientMsg};
use crate::outbox::Outbox;
use rask_core::{ClientId, Command, CoreConfig, SchedulerState, Stimulus, ToWorker, WorkerId};
use rask_protocol::Value;
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// What the server keeps about a worker beyond what scheduling needs (for `identity`).
struct WorkerInfo {
    /// what it said when it registered
    registration: Box<Registration>,
    /// last heartbeat (state-task clock)
    last_seen: f64,
    /// latest heartbeat metrics
    metrics: Value,
}

/// A connected client (or a pseudo-client of an extension).
struct ClientInfo {
    /// `Client-<uuid>`
    name: Arc<str>,
    /// While one of its graphs is being materialized, its later stream messages (and its
    /// leaving) wait here, so they reach the core in stream order; `None` otherwise.
    held: Option<VecDeque<Held>>,
    /// its graph on its way into the core, for the plugin host once it is in
    graph: Option<PendingGraph>,
}

/// A client's graph on its way into the core (a big one takes several turns): what the
/// plugin host's `update_graph` hears once it is in.
struct PendingGraph {
    /// the requested keys
    keys: Vec<rask_protocol::Key>,
    /// the graph's keys
    tasks: Vec<rask_protocol::Key>,
    stimulus_id: Arc<str>,
    /// where its event goes among the plugin host's ([`Scheduler::host_mark`])
    mark: usize,
}

/// A client stream input held back behind a graph.
enum Held {
    Msg(ClientMsg),
    Leave,
}

/// Who the scheduler is, as it tells peers.
#[derive(Debug, Clone)]
pub struct Identity {
    /// advertised `tcp://host:port` (or `tls://`)
    pub address: String,
    /// advertised dashboard port
    pub dashboard_port: Option<u16>,
    /// the Python environment report from the graph helper (`versions` RPC)
    pub versions: Value,
    /// `{name: pickled WorkerPlugin}` registered at start (the P2P shuffle's); users add
    /// theirs with `register_worker_plugin`
    pub worker_plugins: Value,
}

/// The state task's data.
pub struct Scheduler {
    /// the pure state machine
    core: SchedulerState,
    workers: FxHashMap<WorkerId, WorkerInfo>,
    clients: FxHashMap<ClientId, ClientInfo>,
    /// client name -> id (messages name clients by string; pseudo-clients included)
    client_ids: FxHashMap<Arc<str>, ClientId>,
    /// `Scheduler-<uuid>`
    id: String,
    identity: Identity,
    /// start time (state-task clock)
    started: f64,
    /// the user's Dask configuration (the keys rask honours)
    config: DaskConfig,
    /// `--idle-timeout` or `distributed.scheduler.idle-timeout`
    idle_timeout: Option<Duration>,
    /// last time a client or task existed
    last_busy: f64,
    /// when the next work-stealing balance and worker-ttl check are due
    next_balance: f64,
    next_ttl_check: f64,
    /// datasets, coordination primitives, events, P2P shuffle
    ext: Extensions,
    /// restarts and retirements in progress
    admin: admin::Admin,
    /// task stream, task metadata collectors, memory samplers
    diag: diagnostics::Diagnostics,
    /// ids for waits and timers
    next_id: u64,
    /// worker and nanny plugins
    plugins: plugins::Plugins,
    /// metadata, `check_idle`'s memory
    cluster: cluster::ClusterState,
    /// scheduler plugins, feeds and functions in the plugin host
    host: host::HostState,
    /// what `/metrics` and the dashboard read that the core does not keep
    monitor: monitor::Monitor,
    /// tasks of a big graph the core takes in per turn
    ingest_batch: usize,
    /// when the state task started taking in the big graph it is taking in, and in how
    /// many turns so far: logged when the graph is in
    ingest_clock: Option<(std::time::Instant, u32)>,
}

/// How often worker heartbeats are checked against `worker-ttl`.
const TTL_CHECK_EVERY: f64 = 1.0;

impl Scheduler {
    /// A scheduler with no peers yet, started at `now`.
    pub fn new(
        identity: Identity,
        config: DaskConfig,
        idle_timeout: Option<Duration>,
        now: f64,
    ) -> Scheduler {
        let mut core = SchedulerState::new(CoreConfig {
            validate: false,
            allowed_failures: config.allowed_failures,
            worker_saturation: config.worker_saturation,
            work_stealing: config.work_stealing,
            transition_log_length: config.low_level_log_length,
            ..CoreConfig::default()
        });
        core.ensure_fire_and_forget();
        let mut client_ids = FxHashMap::default();
        client_ids.insert(Arc::from("fire-and-forget"), rask_core::FIRE_AND_FORGET);
        let mut ext = Extensions::default();
        ext.events.max_events = config.low_level_log_length.map(|n| n.max(1));
        let diag =
            diagnostics::Diagnostics::new(config.task_stream_length, config.recent_to_old_time);
        let plugins = plugins::Plugins::new(&identity.worker_plugins);
        Scheduler {
            core,
            workers: FxHashMap::default(),
            clients: FxHashMap::default(),
            client_ids,
            id: format!("Scheduler-{}", uuid::Uuid::new_v4()),
            identity,
            started: now,
            idle_timeout,
            last_busy: now,
            next_balance: 0.0,
            next_ttl_check: 0.0,
            ext,
            admin: admin::Admin::default(),
            diag,
            next_id: 0,
            plugins,
            cluster: cluster::ClusterState::default(),
            host: host::HostState::default(),
            monitor: monitor::Monitor::default(),
            ingest_batch: rask_core::state::INGEST_BATCH,
            ingest_clock: None,
            config,
        }
    }

    /// Checks invariants after every event (tests and debug builds).
    pub fn set_validate(&mut self, on: bool) {
        self.core.set_validate(on);
    }

    /// `Scheduler-<uuid>`: `Scheduler.id`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The core, to read (tests).
    pub fn core(&self) -> &SchedulerState {
        &self.core
    }

    /// Handles one event at time `now` (seconds since the epoch, the state task's clock).
    pub fn handle(&mut self, now: f64, event: Event, out: &mut dyn Outbox) {
        let started = std::time::Instant::now();
        self.monitor.turns.messages += match &event {
            Event::Client { msgs, .. } => msgs.len() as u64,
            Event::Worker { msgs, .. } => msgs.len() as u64,
            Event::Rpc { .. } => 1,
            _ => 0,
        };
        match event {
            Event::Rpc { request, reply } => self.rpc(now, request, reply, out),
            Event::ClientJoined {
                name,
                versions,
                stream,
                reply,
            } => {
                let id = self.client_joined(now, name, &versions, stream, out);
                let _ = reply.send(id);
            }
            Event::Client { client, msgs } => {
                for msg in msgs {
                    self.client_input(now, client, Held::Msg(msg), out);
                }
            }
            Event::ClientLeft { client } => self.client_input(now, client, Held::Leave, out),
            Event::WorkerJoined {
                registration,
                stream,
                reply,
            } => {
                let joined = self.worker_joined(now, registration, stream, out);
                let _ = reply.send(joined);
            }
            Event::Worker { worker, msgs } => {
                for msg in msgs {
                    self.worker_msg(now, worker, msg, out);
                }
            }
            Event::WorkerLeft { worker, expected } => {
                let sid: Arc<str> = format!("handle-worker-cleanup-{now}").into();
                self.remove_worker(now, worker, expected, sid, out);
            }
            Event::Tick => self.tick(now, out),
            Event::Ingest => {
                let started = std::time::Instant::now();
                if let Some((_, turns)) = &mut self.ingest_clock {
                    *turns += 1;
                }
                let commands = self.core.ingest_step(now);
                self.commands(now, started, commands, out);
            }
            Event::Timer(t) => self.timer(now, t, out),
            Event::Done(d) => self.done(now, d, out),
            Event::Host(note) => self.host_note(note, out),
            Event::Watch(w) => self.watch(now, w),
            Event::Shutdown(tx) => {
                self.close_workers("scheduler-close", out);
                for c in self.clients.keys() {
                    out.to_client(*c, ToClientMsg::StreamClosed);
                }
                let _ = tx.send(());
            }
        }
        self.host_flush(out);
        self.monitor.turns.record(started.elapsed());
    }

    /// Applies one stimulus and sends the resulting commands; a watched task's transition
    /// reaches the extensions' hooks first, as Dask's plugin hooks send their messages
    /// before a stimulus' own.
    fn stimulus(&mut self, now: f64, s: Stimulus, out: &mut dyn Outbox) {
        let started = std::time::Instant::now();
        let commands = self.core.handle(now, s);
        self.commands(now, started, commands, out);
    }

    /// How many tasks of a big graph the state task takes in per turn.
    pub fn set_ingest_batch(&mut self, tasks: usize) {
        self.ingest_batch = tasks;
        self.core.set_ingest_batch(tasks);
    }

    /// Whether a big graph is being taken in: [`Event::Ingest`] takes the next share.
    pub fn ingesting(&self) -> bool {
        self.core.ingesting()
    }

    /// Sends what the core said to do (it started working at `started`); clients whose
    /// graphs are now in go on.
    fn commands(
        &mut self,
        now: f64,
        started: std::time::Instant,
        commands: Vec<Command>,
        out: &mut dyn Outbox,
    ) {
        let handled = started.elapsed();
        if self.ingest_clock.is_none() && self.core.ingesting() {
            self.ingest_clock = Some((started, 1));
        }
        self.host_transitions(&commands);
        let n = commands.len();
        for c in &commands {
            match c {
                Command::Transitioned {
                    key,
                    finish,
                    stimulus_id,
                } => {
                    self.with_ext(now, out, |ext, cx| {
                        for e in ext.all() {
                            e.on_transition(cx, key, *finish, stimulus_id);
                        }
                    });
                }
                Command::Done {
                    key, start, finish, ..
                } => self.diag.on_done(key, *start, *finish),
                _ => {}
            }
        }
        for c in commands {
            match c {
                Command::Worker(w, msg) => out.to_worker(w, msg.into()),
                Command::Client(c, msg) => out.to_client(c, msg.into()),
                Command::AllClients(msg) => {
                    for c in self.clients.keys() {
                        out.to_client(*c, msg.clone().into());
                    }
                }
                Command::Transitioned { .. } | Command::Done { .. } | Command::Transition(_) => {}
                Command::Error(e) => tracing::error!("{e}"),
            }
        }
        // Everything else waits while this task works: say so when it is long.
        let busy = started.elapsed();
        if busy > Duration::from_millis(100) {
            tracing::info!(
                "state task busy {:.3}s: {:.3}s in the core, then {n} commands dispatched",
                busy.as_secs_f64(),
                handled.as_secs_f64()
            );
        }
        if let (false, Some((since, turns))) = (self.core.ingesting(), self.ingest_clock) {
            // the last stage of a big graph's way in (after the helper and the ordering,
            // logged by `graph`), ending with its first tasks sent
            self.ingest_clock = None;
            tracing::info!(
                "graph taken in over {turns} turns in {:.3}s",
                since.elapsed().as_secs_f64()
            );
        }
        for client in self.core.take_graphs_taken() {
            self.graph_in(now, client, out);
        }
    }

    /// `Scheduler.log_event` of the scheduler's own events (worker and client arrivals and
    /// departures, scatter, gather): published on each topic like a client's.
    fn log_event(&mut self, now: f64, topics: &[&Arc<str>], msg: Value, out: &mut dyn Outbox) {
        let topics: Vec<Arc<str>> = topics.iter().map(|t| (*t).clone()).collect();
        self.with_ext(now, out, |ext, cx| ext.events.publish(cx, &topics, msg));
    }

    /// Runs an extension handler with a [`Cx`], then applies the changes it asked for.
    fn with_ext<R>(
        &mut self,
        now: f64,
        out: &mut dyn Outbox,
        f: impl FnOnce(&mut Extensions, &mut Cx<'_>) -> R,
    ) -> R {
        let mut changes = Vec::new();
        let r = {
            let mut cx = Cx::new(
                now,
                &self.core,
                &self.client_ids,
                &self.config,
                &mut *out,
                &mut changes,
                &mut self.next_id,
            );
            f(&mut self.ext, &mut cx)
        };
        if self.host.active() {
            for (topic, msg) in std::mem::take(&mut self.ext.events.published) {
                self.host_event(|_| crate::translate::host::log_event(&topic, &msg));
            }
        }
        for change in changes {
            self.apply(now, change, out);
        }
        r
    }

    fn apply(&mut self, now: f64, change: Change, out: &mut dyn Outbox) {
        match change {
            Change::Stimulus(s) => self.stimulus(now, s, out),
            Change::Desire { pseudo, keys } => {
                let client = self.pseudo_client(now, &pseudo, out);
                self.stimulus(now, Stimulus::ClientDesiresKeys { client, keys }, out);
            }
            Change::Release { pseudo, keys, why } => {
                if let Some(client) = self.client_ids.get(pseudo.as_str()).copied() {
                    let stimulus_id = format!("{why}-{now}").into();
                    self.stimulus(
                        now,
                        Stimulus::ClientReleasesKeys {
                            client,
                            keys,
                            stimulus_id,
                        },
                        out,
                    );
                }
            }
            Change::RemovePseudo(pseudo) => {
                if let Some(client) = self.client_ids.remove(pseudo.as_str()) {
                    self.stimulus(now, Stimulus::RemoveClient { client }, out);
                }
            }
        }
    }

    /// The id of a scheduler-side pseudo-client (`"published-<name>"`, `"variable-<name>"`,
    /// ...), registering it on first use. Keys it "wants" stay alive, as in Dask, where
    /// extensions call `client_desires_keys(keys, "<pseudo-client>")`.
    fn pseudo_client(&mut self, now: f64, name: &str, out: &mut dyn Outbox) -> ClientId {
        if let Some(id) = self.client_ids.get(name) {
            return *id;
        }
        let id = self.core.new_client_id();
        let name: Arc<str> = name.into();
        self.client_ids.insert(name.clone(), id);
        self.stimulus(now, Stimulus::AddClient { id, name }, out);
        id
    }

    /// Heartbeat interval of workers for the current cluster size.
    fn heartbeat_interval(&self) -> f64 {
        heartbeat_interval(self.workers.len())
    }

    /// Sends `close` to every worker (scheduler shutdown).
    fn close_workers(&mut self, reason: &str, out: &mut dyn Outbox) {
        let reason: Arc<str> = reason.into();
        for &id in self.workers.keys() {
            out.to_worker(
                id,
                ToWorker::Close {
                    reason: reason.clone(),
                }
                .into(),
            );
        }
    }

    /// The periodic timer: a work-stealing balance every `work-stealing-interval`, the
    /// worker-ttl check, the extensions' ticks, the idle timeout.
    fn tick(&mut self, now: f64, out: &mut dyn Outbox) {
        if self.config.work_stealing && now >= self.next_balance {
            self.next_balance = now + self.config.work_stealing_interval.as_secs_f64();
            self.stimulus(now, Stimulus::Balance, out);
        }
        if let Some(ttl) = self.config.worker_ttl {
            if now >= self.next_ttl_check {
                self.next_ttl_check = now + TTL_CHECK_EVERY;
                self.check_worker_ttl(now, ttl, out);
            }
        }
        self.with_ext(now, out, |ext, cx| {
            for e in ext.all() {
                e.on_tick(cx);
            }
        });
        if let Some(timeout) = self.idle_timeout {
            // `check_idle`: no clients and no tasks
            let user_clients = self.clients.len();
            if user_clients > 0 || self.core.n_tasks() > 0 {
                self.last_busy = now;
            } else if now - self.last_busy >= timeout.as_secs_f64() {
                tracing::info!("Scheduler closing due to idle timeout");
                out.stop();
            }
        }
    }

    fn timer(&mut self, now: f64, t: Timer, out: &mut dyn Outbox) {
        match t {
            Timer::Again { request, reply } => self.rpc(now, request, reply, out),
            Timer::Coordination(wait) => {
                self.with_ext(now, out, |ext, cx| ext.coordination.on_timer(cx, wait))
            }
            Timer::Retire(id) => self.retire_step(now, id, out),
            Timer::WorkersBack(id) => self.workers_back_deadline(now, id, out),
            Timer::MemorySample(key) => self.memory_sample(now, key, out),
        }
    }

    fn done(&mut self, now: f64, d: Done, out: &mut dyn Outbox) {
        match d {
            Done::Graph { client, stimulus } => self.graph_done(now, client, *stimulus, out),
            Done::Gathered(g) => self.gathered(now, *g, out),
            Done::Scattered {
                result,
                keys,
                client,
                reply,
            } => self.scattered(now, result, keys, client, reply, out),
            Done::Killed { outcomes, then } => self.killed(now, outcomes, then, out),
            Done::Helper { result, then } => self.helper_done(now, result, then, out),
            Done::Host { result, then } => self.host_done(result, then, out),
            Done::Reply { result, reply } => out.reply(reply, result),
        }
    }
}

/// `heartbeat_interval(n)` (`scheduler.py:9203-9213`): seconds between heartbeats of `n`
/// peers (workers, or clients for theirs).
fn heartbeat_interval(n: usize) -> f64 {
    if n <= 10 {
        0.5
    } else if n < 50 {
        1.0
    } else if n < 200 {
        2.0
    } else {
        n as f64 / 200.0 + 1.0
    }
}
