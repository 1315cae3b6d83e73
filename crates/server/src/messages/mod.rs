//! The typed vocabulary between the wire and the state task: what peers ask of the
//! scheduler ([`Rpc`], [`ClientMsg`], [`WorkerMsg`], [`Registration`]) and what the scheduler
//! sends on their streams ([`ToWorkerMsg`], [`ToClientMsg`]). `translate` is the only module
//! that turns these into wire values or back; the op table (`ops.rs`) says which op becomes
//! which variant. Payloads only Python understands (pickles, user data) stay [`Value`]s.

pub mod cluster;
pub mod coordination;
pub mod diagnostics;
pub mod events;
pub mod inspect;
pub mod plugins;
pub mod shuffle;

use rask_core::{Stimulus, ToClient, ToWorker};
use rask_protocol::{Key, Value};
use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::time::Duration;

/// A request on a connection: Dask's `Scheduler.handlers` that rask serves.
#[derive(Debug, Clone)]
pub enum Rpc {
    /// `identity {n_workers}`: the scheduler and (some of) its workers.
    Identity {
        /// how many workers to list; negative: all
        n_workers: i64,
    },
    /// `heartbeat_worker {address, metrics}`
    HeartbeatWorker {
        /// the worker
        address: Arc<str>,
        /// its latest metrics, if sent
        metrics: Option<Value>,
    },
    /// `gather {keys}`: results fetched from their holders.
    Gather {
        /// the keys
        keys: Vec<Key>,
        /// the client's `serializers` (its deserializers, `core.py:976`), passed on to the
        /// workers' `get_data` so they serialize only with what the client can read
        serializers: Option<Value>,
    },
    /// `scatter {data, workers, client, broadcast, timeout}`: client data put on workers.
    Scatter(Box<Scatter>),
    /// `update_data {who_has, nbytes, client}`: data placed on workers by someone else.
    UpdateData {
        /// where the data is
        placement: Placement,
        /// the client that owns it, if any
        client: Option<Arc<str>>,
    },
    /// `ncores` / `ncores_running {workers}`: threads per worker.
    Ncores {
        /// only these worker addresses
        workers: Option<Vec<Arc<str>>>,
        /// only running workers (`ncores_running`)
        running_only: bool,
    },
    /// `who_has {keys}`: holders per key (all keys when None).
    WhoHas {
        /// the keys
        keys: Option<Vec<Key>>,
    },
    /// `has_what {workers}`: keys held per worker.
    HasWhat {
        /// only these worker addresses
        workers: Option<Vec<Arc<str>>>,
    },
    /// `processing {workers}`: keys running per worker.
    Processing {
        /// only these worker addresses
        workers: Option<Vec<Arc<str>>>,
    },
    /// `nbytes {keys, summary}`: bytes in memory per key or per key prefix.
    Nbytes {
        /// only these keys (all keys in memory if `None`)
        keys: Option<Vec<Key>>,
        /// per prefix (the default) rather than per key
        summary: bool,
    },
    /// `get_task_status {keys}`
    GetTaskStatus {
        /// the keys
        keys: Vec<Key>,
    },
    /// `versions`: the Python environment's versions, as the graph helper found them.
    Versions,
    /// `unregister {address, close, expected}`: remove a worker.
    Unregister {
        /// the worker
        address: Arc<str>,
        /// tell it to close too
        close: bool,
        /// a deliberate close: its running tasks are not suspicious
        expected: bool,
    },
    /// `retry {keys}`: which keys running erred keys again touches (the answer); the
    /// connection sends [`Rpc::RunRetry`] once the answer is written.
    Retry {
        /// the keys
        keys: Vec<Key>,
    },
    /// The second half of `retry`: run the erred keys again.
    RunRetry {
        /// the keys
        keys: Vec<Key>,
    },
    /// `broadcast {msg, workers, hosts, nanny, on_error}`: one message to many workers.
    Broadcast(Box<Broadcast>),
    /// `echo {data}`
    Echo {
        /// echoed back
        data: Value,
    },
    /// `restart {timeout, wait_for_workers}`: `Client.restart`.
    Restart {
        /// how long nannies and returning workers may take
        timeout: Duration,
        /// wait until as many workers are back
        wait_for_workers: bool,
        /// why
        stimulus_id: Arc<str>,
    },
    /// `restart_workers {workers, timeout, on_error}`
    RestartWorkers {
        /// only these (all when None)
        workers: Option<Vec<Arc<str>>>,
        /// how long nannies and returning workers may take
        timeout: Duration,
        /// `on_error="raise"` (the default) rather than `"return"`
        raise: bool,
        /// why
        stimulus_id: Arc<str>,
    },
    /// `retire_workers {workers | names | n, close_workers, remove}`
    RetireWorkers {
        /// by address
        workers: Option<Vec<Arc<str>>>,
        /// by name
        names: Option<Vec<Arc<str>>>,
        /// how many, when neither is given
        n: Option<i64>,
        /// tell them to close
        close_workers: bool,
        /// remove them from the scheduler (default)
        remove: bool,
        /// why
        stimulus_id: Arc<str>,
    },
    /// `run_function {function, args, kwargs, wait}`: `Client.run_on_scheduler`, run in a
    /// graph helper.
    RunFunction {
        /// the helper's request (function, args, kwargs, wait)
        request: Value,
        /// the pickled function, logged as an event as the stock scheduler does
        function: bytes::Bytes,
    },
    /// `register_scheduler_plugin {plugin, name, idempotent}`: started and kept in the
    /// plugin host.
    RegisterSchedulerPlugin {
        /// the pickled plugin
        plugin: Value,
        /// its name, if the client gave one
        name: Option<Arc<str>>,
        /// keep an already started plugin of that name
        idempotent: bool,
    },
    /// `feed {function, setup, teardown, interval}`: a feed in the plugin host, whose
    /// responses go to `responses`; answered with its number once its `setup` ran.
    FeedOpen {
        /// the plugin host's `feed_start` request, without its number
        request: Value,
        /// where the feed's responses go
        responses: tokio::sync::mpsc::UnboundedSender<Value>,
    },
    /// A feed's connection closed.
    FeedClose {
        /// its number
        feed: i64,
    },
    /// `performance_report {start, last_count, code, mode}`: the stock report, made in the
    /// plugin host.
    PerformanceReport {
        /// the plugin host's request
        request: Value,
    },
    /// `unregister_scheduler_plugin {name}`
    UnregisterSchedulerPlugin {
        /// the plugin's name
        name: Option<Arc<str>>,
    },
    /// The event log.
    Events(events::Rpc),
    /// Datasets and the coordination primitives.
    Coordination(coordination::Rpc),
    /// The P2P shuffle's scheduler side.
    Shuffle(shuffle::Rpc),
    /// Worker and nanny plugins.
    Plugins(plugins::Rpc),
    /// Logs, profiles, call stacks, benchmarks, state dumps, proxy.
    Inspect(inspect::Rpc),
    /// Task stream, stories, task metadata, memory sampler, recreate_error_locally.
    Diagnostics(diagnostics::Rpc),
    /// Cluster managers' requests and data placement.
    Cluster(cluster::Rpc),
}

impl Rpc {
    /// What the connection sends once this request's answer is written, if anything.
    /// `retry`'s answer names the futures the client then resets to pending, so it must be
    /// on the wire before the retry can finish one of them: a `key-in-memory` read first
    /// would be overwritten and its future would wait forever. Dask gets this order by
    /// answering in the same event-loop turn.
    pub fn after_answer(&self) -> Option<Rpc> {
        match self {
            Rpc::Retry { keys } => Some(Rpc::RunRetry { keys: keys.clone() }),
            _ => None,
        }
    }
}

/// `scatter`'s arguments.
#[derive(Debug, Clone)]
pub struct Scatter {
    /// `{key: serialized value}`, in the client's order
    pub data: Vec<(Value, Value)>,
    /// only these workers (addresses or names)
    pub workers: Option<Vec<Arc<str>>>,
    /// the client that owns the data
    pub client: Option<Arc<str>>,
    /// every worker gets every key
    pub broadcast: bool,
    /// how long to wait for a worker to scatter to
    pub timeout: f64,
    /// when to give up waiting for workers (set by the state task when it first sees the
    /// request, in its clock)
    pub deadline: Option<f64>,
}

/// `broadcast`'s arguments.
#[derive(Debug, Clone)]
pub struct Broadcast {
    /// the request each worker gets (`reply` and `close` set)
    pub msg: Value,
    /// only these worker addresses
    pub workers: Option<Vec<Arc<str>>>,
    /// only workers on these hosts
    pub hosts: Option<Vec<Arc<str>>>,
    /// send to the workers' nannies instead
    pub nanny: bool,
    /// what a failed worker becomes in the reply
    pub on_error: OnError,
}

/// `broadcast(on_error=...)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// the first failure fails the request
    Raise,
    /// a failed worker's entry is its pickled exception
    Return,
    /// failed workers are left out
    Ignore,
}

/// Where data lives, as `update_data` and `update-data` say it: `who_has` and `nbytes`.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// key -> worker addresses holding it
    pub who_has: Vec<(Key, Vec<Arc<str>>)>,
    /// key -> size in bytes
    pub nbytes: FxHashMap<Key, i64>,
}

/// A message on a client's stream (`Scheduler.stream_handlers`, client side).
#[derive(Debug, Clone)]
pub enum ClientMsg {
    /// `close-client`: nothing to do, the stream's end removes the client.
    CloseClient,
    /// `update-graph`: materialized by a graph helper before it reaches the core.
    UpdateGraph(Box<GraphRequest>),
    /// `heartbeat-client`
    HeartbeatClient,
    /// `client-desires-keys {keys, client}`
    DesiresKeys {
        /// the keys
        keys: Vec<Key>,
        /// on behalf of another client (by name); else the stream's own
        client: Option<Arc<str>>,
    },
    /// `client-releases-keys {keys, client}`
    ReleasesKeys {
        /// the keys
        keys: Vec<Key>,
        /// on behalf of another client (by name); else the stream's own
        client: Option<Arc<str>>,
        /// why
        stimulus_id: Arc<str>,
    },
    /// `cancel-keys {keys, force, reason, msg}`
    CancelKeys {
        /// the keys
        keys: Vec<Key>,
        /// cancel even if other clients want them
        force: bool,
        /// passed on to clients
        reason: Option<Arc<str>>,
        /// passed on to clients
        msg: Option<Arc<str>>,
    },
    /// `report-key {key}`
    ReportKey {
        /// the key
        key: Key,
    },
    /// `update-data {who_has, nbytes}`
    UpdateData(Placement),
    /// The event log's stream ops.
    Events(events::StreamOp),
    /// The coordination primitives' stream ops.
    Coordination(coordination::ClientOp),
}

/// `update-graph`, as the graph helper will get it.
#[derive(Debug, Clone)]
pub struct GraphRequest {
    /// the keys the client wants
    pub keys: Vec<Key>,
    /// seconds; a new priority generation starts after this long
    pub fifo_timeout: f64,
    /// the keys that become actors
    pub actors: Vec<Key>,
    /// the graph helper's `update_graph` request (expression, annotations, priorities)
    pub helper_request: Value,
    /// the pickled expression is at least [`crate::helper::BIG_GRAPH_BYTES`]
    pub big: bool,
}

/// A message on a worker's stream (`Scheduler.stream_handlers`, worker side).
#[derive(Debug, Clone)]
pub enum WorkerMsg {
    /// One of the core's stimuli (add-keys, release-worker-data, ...).
    Core(Stimulus),
    /// `task-finished` / `task-erred`: a stimulus the diagnostics record.
    TaskDone(Box<diagnostics::TaskDone>),
    /// `keep-alive`: liveness is the stream itself.
    KeepAlive,
    /// The event log's stream ops (`log-event`).
    Events(events::StreamOp),
}

/// `register-worker`: what a worker says about itself.
#[derive(Debug, Clone)]
pub struct Registration {
    /// contact address
    pub address: Arc<str>,
    /// `name`, as sent (str or int)
    pub name_value: Value,
    /// `name` as a string, for restrictions and uniqueness
    pub name: Arc<str>,
    /// threads
    pub nthreads: u32,
    /// bytes (0: no limit)
    pub memory_limit: u64,
    /// `{name: amount}`, as sent
    pub resources_value: Value,
    /// resources, parsed
    pub resources: Vec<(Arc<str>, f64)>,
    /// its status: `init` (a stock worker), `running`, ...
    pub status: rask_core::WorkerStatus,
    /// echoed in `identity`
    pub local_directory: Value,
    /// `{name: port}`, echoed in `identity`
    pub services: Value,
    /// its nanny's address, or None
    pub nanny: Value,
    /// its metrics at registration
    pub metrics: Value,
    /// `versions` (`get_versions()`: `{"host", "packages"}`), for the mismatch warning
    pub versions: Value,
    /// `server_id`, the column the mismatch warning names it by
    pub server_id: Arc<str>,
}

/// A message on a worker's stream, from the scheduler.
#[derive(Debug, Clone, PartialEq)]
pub enum ToWorkerMsg {
    /// One of the core's commands (compute-task, free-keys, ...).
    Core(ToWorker),
    /// `acquire-replicas`: fetch copies of these keys (retiring a worker moves its data).
    AcquireReplicas {
        /// key -> workers to fetch from
        who_has: Vec<(Key, Vec<Arc<str>>)>,
        /// key -> size
        nbytes: Vec<(Key, i64)>,
        /// why
        stimulus_id: Arc<str>,
    },
    /// `worker-status-change`: a status the scheduler decided (`closing_gracefully`, ...).
    StatusChange {
        /// the status
        status: rask_core::WorkerStatus,
        /// why
        stimulus_id: Arc<str>,
    },
    /// `shuffle-fail`: a P2P shuffle run failed.
    ShuffleFail {
        /// the shuffle
        shuffle_id: Arc<str>,
        /// its run
        run_id: i64,
        /// why, shown in the error the tasks raise
        message: String,
    },
}

impl From<ToWorker> for ToWorkerMsg {
    fn from(m: ToWorker) -> Self {
        ToWorkerMsg::Core(m)
    }
}

/// A message on a client's stream, from the scheduler.
#[derive(Debug, Clone, PartialEq)]
pub enum ToClientMsg {
    /// One of the core's reports (key-in-memory, task-erred, ...).
    Core(ToClient),
    /// `stream-start`: the first message of every client stream, with the version-mismatch
    /// warning (empty if none).
    StreamStart {
        /// the mismatch table, or ""
        warning: String,
    },
    /// `adjust-heartbeat-interval`
    AdjustHeartbeat {
        /// seconds
        interval: f64,
    },
    /// `restart`: every key was forgotten (`Client.restart`).
    Restart,
    /// `stream-closed`: the scheduler is shutting down.
    StreamClosed,
    /// `event {topic, event}`: a logged event on a subscribed topic.
    Event {
        /// the topic
        topic: Arc<str>,
        /// `(timestamp, msg)`
        event: Value,
    },
}

impl From<ToClient> for ToClientMsg {
    fn from(m: ToClient) -> Self {
        ToClientMsg::Core(m)
    }
}
