//! What cluster managers ask of the scheduler (`distributed.deploy`: `Cluster`,
//! `SpecCluster`, `Adaptive`) and the data-placement requests that go with them: the
//! scheduler's metadata store, the worker-status feed, adaptive scaling's questions,
//! `terminate`, worker resources, task restrictions, `add_keys`, `replicate`.

use rask_protocol::{Key, Value};
use std::sync::Arc;
use tokio::sync::mpsc;

/// A `subscribe_worker_status` connection: worker arrivals and departures for its writer.
pub type StatusTx = mpsc::UnboundedSender<WorkerStatusMsg>;

/// One message of the worker-status feed (`WorkerStatusPlugin`, scheduler.py:9318).
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerStatusMsg {
    /// `["add", {"workers": {address: identity}}]`: a worker registered.
    Add {
        /// its address
        address: Arc<str>,
        /// its `identity()` without `metrics` and `last_seen`
        identity: Value,
    },
    /// `["remove", address]`: a worker left.
    Remove {
        /// its address
        address: Arc<str>,
    },
}

/// The RPCs of this family.
#[derive(Debug, Clone)]
pub enum Rpc {
    /// `set_metadata {keys, value}` (scheduler.py:8025)
    SetMetadata {
        /// the path into the nested dict
        keys: Vec<Value>,
        /// what to store there
        value: Value,
    },
    /// `get_metadata {keys, default}` (scheduler.py:8033)
    GetMetadata {
        /// the path into the nested dict
        keys: Vec<Value>,
        /// answered when the path is missing; `None`: `KeyError`
        default: Option<Value>,
    },
    /// `subscribe_worker_status` (scheduler.py:7836): the connection becomes a feed.
    SubscribeWorkerStatus {
        /// the connection's writer
        stream: StatusTx,
    },
    /// `adaptive_target {target_duration}` (scheduler.py:8838)
    AdaptiveTarget {
        /// seconds; `None`: the configuration's default
        target_duration: Option<f64>,
    },
    /// `workers_to_close {memory_ratio, n, key, minimum, target, attribute}`
    /// (scheduler.py:7305)
    WorkersToClose(WorkersToClose),
    /// `check_idle` (scheduler.py:8663)
    CheckIdle,
    /// `terminate` (`Scheduler.close`, scheduler.py:4479)
    Terminate,
    /// `set_resources {worker, resources}` (`add_resources`, scheduler.py:8270)
    SetResources {
        /// the worker's address
        worker: Arc<str>,
        /// resource -> amount
        resources: Vec<(Arc<str>, f64)>,
    },
    /// `set_restrictions {worker: {key: addresses | address | None}}` (scheduler.py:8045)
    SetRestrictions {
        /// per key, the worker addresses it may run on (`None`: anywhere)
        restrictions: Vec<(Key, Option<Vec<Arc<str>>>)>,
    },
    /// `add_keys {worker, keys, stimulus_id}` (scheduler.py:7694)
    AddKeys {
        /// the worker's address
        worker: Arc<str>,
        /// keys it holds
        keys: Vec<Key>,
        /// why
        stimulus_id: Arc<str>,
    },
    /// `replicate {keys, n, workers, branching_factor, delete}` (scheduler.py:7185)
    Replicate(Box<Replicate>),
    /// `rebalance {keys, workers}` (scheduler.py:6832)
    Rebalance(Box<Rebalance>),
}

/// `workers_to_close`'s arguments.
#[derive(Debug, Clone, Default)]
pub struct WorkersToClose {
    /// room wanted for the data held, as a multiple of it
    pub memory_ratio: Option<f64>,
    /// how many workers to close
    pub n: Option<i64>,
    /// keep at least this many
    pub minimum: Option<i64>,
    /// workers wanted afterwards
    pub target: Option<i64>,
    /// what to list of each worker: `address`, `name` or `host`
    pub attribute: Arc<str>,
}

/// `replicate`'s arguments, and its progress across passes.
#[derive(Debug, Clone)]
pub struct Replicate {
    /// the keys
    pub keys: Vec<Key>,
    /// copies wanted (`None`: one on every chosen worker)
    pub n: Option<i64>,
    /// only these workers (addresses or names)
    pub workers: Option<Vec<Arc<str>>>,
    /// at most this many new copies per existing copy and pass
    pub branching_factor: i64,
    /// drop copies beyond `n`
    pub delete: bool,
    /// why
    pub stimulus_id: Arc<str>,
    /// set by the state task once it started: copies are being fetched
    pub started: bool,
}

/// `rebalance`'s arguments, and its moves once planned.
#[derive(Debug, Clone)]
pub struct Rebalance {
    /// only these keys may move
    pub keys: Option<Vec<Key>>,
    /// only between these workers (addresses)
    pub workers: Option<Vec<Arc<str>>>,
    /// why
    pub stimulus_id: Arc<str>,
    /// set by the state task: the moves asked for, and when it stops waiting for them
    pub moving: Option<Moving>,
}

/// The moves of a `rebalance` in progress.
#[derive(Debug, Clone)]
pub struct Moving {
    /// (sender, recipient, key) still waiting for the recipient's copy
    pub pending: Vec<(Arc<str>, Arc<str>, Key)>,
    /// keys moved: the recipient has its copy and the sender's was dropped
    pub moved: usize,
    /// keys that could not move (a worker left, the key was forgotten, time ran out)
    pub failed: Vec<Key>,
    /// when to stop waiting (state-task clock)
    pub deadline: f64,
}
