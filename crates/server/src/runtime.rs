//! The one task that owns the scheduler state.
//!
//! Connections never touch [`Scheduler`] directly: they send it closures through a
//! [`Handle`] and, when they need an answer, await a oneshot. Closures run one at a time,
//! in the order each sender sent them, which keeps every stream's messages in order.

use crate::dask_config::DaskConfig;
use crate::translate;
use rask_core::{
    ClientId, Command, CoreConfig, SchedulerState, Stimulus, ToClient, ToWorker, WorkerId,
};
use rask_protocol::Value;
use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// Work for the state task.
pub type Event = Box<dyn FnOnce(&mut Scheduler) + Send>;

/// Sends messages to one peer's batched stream writer.
pub type StreamTx = mpsc::UnboundedSender<Outgoing>;

/// A message queued on a peer's stream. Core commands travel as they are and become wire
/// values in the stream's writer task, so the state task does not spend its time (and
/// hold everyone else up) building them.
#[derive(Debug)]
pub enum Outgoing {
    /// already a wire value
    Msg(Value),
    /// a scheduler -> worker command
    Worker(ToWorker),
    /// a scheduler -> client command
    Client(ToClient),
}

impl From<Value> for Outgoing {
    fn from(v: Value) -> Self {
        Outgoing::Msg(v)
    }
}

impl From<Outgoing> for Value {
    fn from(o: Outgoing) -> Self {
        match o {
            Outgoing::Msg(v) => v,
            Outgoing::Worker(m) => translate::to_worker(m),
            Outgoing::Client(m) => translate::to_client(m),
        }
    }
}

/// A cloneable way to reach the state task.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::UnboundedSender<Event>,
}

impl Handle {
    /// Runs `f` on the state task, without waiting.
    pub fn send(&self, f: impl FnOnce(&mut Scheduler) + Send + 'static) {
        let _ = self.tx.send(Box::new(f));
    }

    /// Runs `f` on the state task and returns its result.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Scheduler) -> R + Send + 'static,
    ) -> Result<R, crate::ServerError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Box::new(move |s: &mut Scheduler| {
                let _ = tx.send(f(s));
            }))
            .map_err(|_| crate::ServerError::ShuttingDown)?;
        rx.await.map_err(|_| crate::ServerError::ShuttingDown)
    }

    /// Applies stimuli on the state task.
    pub fn stimuli(&self, stimuli: Vec<Stimulus>) {
        if !stimuli.is_empty() {
            self.send(move |s| {
                for st in stimuli {
                    s.stimulus(st);
                }
            });
        }
    }
}

/// What the server keeps about a worker beyond what scheduling needs (for `identity`).
#[derive(Debug, Clone)]
pub struct WorkerInfo {
    /// the worker's `name`, as sent (str or int)
    pub name: Value,
    /// the whole registration message, minus bulky fields, echoed in `identity`
    pub nthreads: u32,
    /// bytes
    pub memory_limit: u64,
    /// `{name: amount}`
    pub resources: Value,
    /// `local_directory`
    pub local_directory: Value,
    /// `services`
    pub services: Value,
    /// nanny address or None
    pub nanny: Value,
    /// last heartbeat (epoch seconds)
    pub last_seen: f64,
    /// latest heartbeat metrics
    pub metrics: Value,
    /// `running`, `paused`, ...
    pub status: Arc<str>,
    /// its stream
    pub tx: StreamTx,
}

/// A connected client.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// `Client-<uuid>`
    pub name: Arc<str>,
    /// its stream
    pub tx: StreamTx,
}

/// The state task's data: the core plus everything needed to reach peers.
pub struct Scheduler {
    /// the pure state machine
    pub core: SchedulerState,
    /// worker streams and identity data
    pub workers: FxHashMap<WorkerId, WorkerInfo>,
    /// client streams
    pub clients: FxHashMap<ClientId, ClientInfo>,
    /// client name -> id (messages name clients by string)
    pub client_ids: FxHashMap<Arc<str>, ClientId>,
    /// `Scheduler-<uuid>`
    pub id: String,
    /// advertised `tcp://host:port`
    pub address: String,
    /// start time (epoch seconds)
    pub started: f64,
    /// advertised dashboard port
    pub dashboard_port: Option<u16>,
    /// the Python environment report from the graph helper (`versions` RPC)
    pub versions: Value,
    /// `{name: pickled WorkerPlugin}` for every `register-worker` reply (the P2P shuffle's)
    pub worker_plugins: Value,
    /// last time a client or task existed (for `--idle-timeout`)
    pub last_busy: f64,
    /// the user's Dask configuration (the keys rask honours)
    pub config: DaskConfig,
    /// caps, timeouts and TLS of the scheduler's own dials (to workers and nannies)
    pub comm: Arc<rask_comm::CommConfig>,
    /// a handle to this state task for work it starts itself (timers' follow-ups); set
    /// by [`run_state`]
    pub internal: Option<Handle>,
    /// when the next work-stealing balance and worker-ttl check are due (epoch seconds)
    next_balance: f64,
    next_ttl_check: f64,
    /// datasets, coordination primitives, events
    pub ext: crate::extensions::Extensions,
}

/// Wall-clock seconds since the epoch, as Dask's `time()`.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Scheduler {
    /// A scheduler with no peers yet. `helper_ready` is a graph helper's first message: the
    /// Python environment's `versions` and the user's Dask scheduler `config`.
    pub fn new(
        address: String,
        dashboard_port: Option<u16>,
        helper_ready: &Value,
        config: DaskConfig,
        comm: Arc<rask_comm::CommConfig>,
    ) -> Scheduler {
        let mut core = SchedulerState::new(CoreConfig {
            validate: false,
            allowed_failures: config.allowed_failures,
            worker_saturation: config.worker_saturation,
            work_stealing: config.work_stealing,
            ..CoreConfig::default()
        });
        core.ensure_fire_and_forget();
        let mut client_ids = FxHashMap::default();
        client_ids.insert(Arc::from("fire-and-forget"), rask_core::FIRE_AND_FORGET);
        let mut ext = crate::extensions::Extensions::default();
        ext.events.max_events = config.low_level_log_length.max(1);
        Scheduler {
            core,
            workers: FxHashMap::default(),
            clients: FxHashMap::default(),
            client_ids,
            id: format!("Scheduler-{}", uuid::Uuid::new_v4()),
            address,
            started: now(),
            dashboard_port,
            versions: helper_ready.get("versions").cloned().unwrap_or(Value::Nil),
            worker_plugins: helper_ready
                .get("worker_plugins")
                .cloned()
                .unwrap_or(Value::Map(Vec::new())),
            last_busy: now(),
            ext,
            config,
            comm,
            internal: None,
            next_balance: 0.0,
            next_ttl_check: 0.0,
        }
    }

    /// Applies one stimulus and sends the resulting commands.
    pub fn stimulus(&mut self, s: Stimulus) {
        let started = std::time::Instant::now();
        let commands = self.core.handle(now(), s);
        let handled = started.elapsed();
        let n = commands.len();
        self.dispatch(commands);
        // Everything else waits while this task works: say so when it is long.
        let busy = started.elapsed();
        if busy > std::time::Duration::from_millis(100) {
            tracing::info!(
                "state task busy {:.3}s: {:.3}s in the core, then {n} commands dispatched",
                busy.as_secs_f64(),
                handled.as_secs_f64()
            );
        }
    }

    /// Routes commands to the peers' stream writers.
    pub fn dispatch(&mut self, commands: Vec<Command>) {
        for c in commands {
            match c {
                Command::Worker(w, msg) => {
                    if let Some(info) = self.workers.get(&w) {
                        let _ = info.tx.send(Outgoing::Worker(msg));
                    }
                }
                Command::Client(c, msg) => {
                    if let Some(info) = self.clients.get(&c) {
                        let _ = info.tx.send(Outgoing::Client(msg));
                    }
                }
                Command::Transitioned {
                    key,
                    finish,
                    stimulus_id,
                } => crate::extensions::shuffle::on_transition(self, &key, finish, &stimulus_id),
                Command::AllClients(msg) => {
                    let v = translate::to_client(msg);
                    for info in self.clients.values() {
                        let _ = info.tx.send(v.clone().into());
                    }
                }
            }
        }
    }

    /// The id of a scheduler-side pseudo-client (`"published-<name>"`, `"variable-<name>"`,
    /// ...), registering it on first use. Keys it "wants" stay alive, as in Dask, where
    /// extensions call `client_desires_keys(keys, "<pseudo-client>")`.
    pub fn pseudo_client(&mut self, name: &str) -> ClientId {
        if let Some(id) = self.client_ids.get(name) {
            return *id;
        }
        let id = self.core.new_client_id();
        let name: Arc<str> = name.into();
        self.client_ids.insert(name.clone(), id);
        self.stimulus(Stimulus::AddClient { id, name });
        id
    }

    /// Removes a worker (`remove_worker`): its stream, its tasks (core), and the P2P
    /// shuffles it took part in.
    pub fn remove_worker(&mut self, worker: WorkerId, expected: bool, stimulus_id: Arc<str>) {
        let address = self.core.worker(worker).map(|w| w.address.clone());
        self.stimulus(Stimulus::RemoveWorker {
            worker,
            expected,
            stimulus_id: stimulus_id.clone(),
        });
        self.workers.remove(&worker);
        if let Some(address) = address {
            crate::extensions::shuffle::on_remove_worker(self, &address, &stimulus_id);
        }
    }

    /// Worker ids by address.
    pub fn worker_by_address(&self, addr: &str) -> Option<WorkerId> {
        self.core.worker_id(addr)
    }

    /// Heartbeat interval for the current cluster size (`heartbeat_interval`,
    /// `scheduler.py:9203-9213`).
    pub fn heartbeat_interval(&self) -> f64 {
        let n = self.workers.len();
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

    /// `identity` (`scheduler.py:4280-4298`); `n_workers = -1` lists every worker.
    pub fn identity(&self, n_workers: i64) -> Value {
        let mut workers: Vec<(&WorkerId, &WorkerInfo)> = self.workers.iter().collect();
        workers.sort_by_key(|(id, _)| **id);
        let limit = if n_workers < 0 {
            usize::MAX
        } else {
            n_workers as usize
        };
        let listed = workers
            .iter()
            .take(limit)
            .filter_map(|(id, info)| {
                let addr = self.core.worker(**id)?.address.clone();
                Some((Value::from(addr.clone()), self.worker_identity(&addr, info)))
            })
            .collect();
        Value::map([
            ("type", Value::from("Scheduler")),
            ("id", Value::from(self.id.as_str())),
            ("address", Value::from(self.address.as_str())),
            ("services", self.services()),
            ("started", Value::Float(self.started)),
            ("n_workers", Value::from(self.workers.len())),
            (
                "total_threads",
                Value::from(
                    self.workers
                        .values()
                        .map(|w| w.nthreads as u64)
                        .sum::<u64>(),
                ),
            ),
            (
                "total_memory",
                Value::from(self.workers.values().map(|w| w.memory_limit).sum::<u64>()),
            ),
            ("workers", Value::Map(listed)),
        ])
    }

    /// `{"dashboard": port}` or `{}`.
    pub fn services(&self) -> Value {
        match self.dashboard_port {
            Some(p) => Value::map([("dashboard", Value::from(p as u64))]),
            None => Value::Map(Vec::new()),
        }
    }

    /// One worker's entry of `identity().workers` (Nil if it is gone).
    pub fn worker_identity_of(&self, id: WorkerId) -> Value {
        match (self.core.worker(id), self.workers.get(&id)) {
            (Some(w), Some(info)) => self.worker_identity(&w.address, info),
            _ => Value::Nil,
        }
    }

    fn worker_identity(&self, addr: &str, w: &WorkerInfo) -> Value {
        let host = rask_core::handlers::host_of(addr);
        Value::map([
            ("type", Value::from("Worker")),
            ("id", w.name.clone()),
            ("host", Value::from(host)),
            ("resources", w.resources.clone()),
            ("local_directory", w.local_directory.clone()),
            ("name", w.name.clone()),
            ("nthreads", Value::from(w.nthreads as u64)),
            ("memory_limit", Value::from(w.memory_limit)),
            ("last_seen", Value::Float(w.last_seen)),
            ("services", w.services.clone()),
            ("metrics", w.metrics.clone()),
            ("status", Value::from(w.status.clone())),
            ("nanny", w.nanny.clone()),
        ])
    }

    /// Sends `close` on a worker's stream (`close_worker`).
    pub fn close_worker(&self, id: WorkerId, reason: Arc<str>) {
        if let Some(info) = self.workers.get(&id) {
            let _ = info.tx.send(Outgoing::Worker(ToWorker::Close { reason }));
        }
    }

    /// Sends `close` to every worker (scheduler shutdown).
    pub fn close_workers(&mut self, reason: &str) {
        let reason: Arc<str> = reason.into();
        for &id in self.workers.keys() {
            self.close_worker(id, reason.clone());
        }
    }
}

/// How often the state task looks at its timers (stealing, worker-ttl).
const TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// How often worker heartbeats are checked against `worker-ttl`.
const TTL_CHECK_EVERY: f64 = 1.0;

/// Runs the state task until every [`Handle`] is dropped. Periodic work (work stealing,
/// the worker-ttl check) runs on the same task, between events.
pub async fn run_state(mut scheduler: Scheduler, mut rx: mpsc::UnboundedReceiver<Event>) {
    // Work the state task starts itself reports back through its own channel, so that it
    // does not keep the main one (and the scheduler) alive.
    let (itx, mut irx) = mpsc::unbounded_channel();
    scheduler.internal = Some(Handle { tx: itx });
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            f = rx.recv() => match f {
                Some(f) => f(&mut scheduler),
                None => break,
            },
            Some(f) = irx.recv() => f(&mut scheduler),
            _ = tick.tick() => scheduler.tick(),
        }
    }
}

impl Scheduler {
    /// The timers: a work-stealing balance every `work-stealing-interval`, and the
    /// worker-ttl check.
    fn tick(&mut self) {
        let t = now();
        if self.config.work_stealing && t >= self.next_balance {
            self.next_balance = t + self.config.work_stealing_interval.as_secs_f64();
            self.stimulus(Stimulus::Balance);
        }
        if let Some(ttl) = self.config.worker_ttl {
            if t >= self.next_ttl_check {
                self.next_ttl_check = t + TTL_CHECK_EVERY;
                crate::admin::check_worker_ttl(self, ttl);
            }
        }
    }
}

/// Creates the channel for a state task.
pub fn channel() -> (Handle, mpsc::UnboundedReceiver<Event>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Handle { tx }, rx)
}
