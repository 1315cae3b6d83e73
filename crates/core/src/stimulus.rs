//! What happens to the scheduler: one variant per Dask handler that changes state.

use crate::types::{ClientId, WorkerId};
use bytes::Bytes;
use rask_protocol::{Key, Value};
use std::sync::Arc;

/// A worker as it registers (`register-worker`), reduced to what scheduling needs.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSpec {
    /// contact address, `tcp://ip:port`
    pub address: Arc<str>,
    /// `name` (an alias usable in `workers=` restrictions)
    pub name: Arc<str>,
    /// threads, i.e. task slots
    pub nthreads: u32,
    /// bytes, 0 if unlimited
    pub memory_limit: u64,
    /// abstract resources (`--resources GPU=1`)
    pub resources: Vec<(Arc<str>, f64)>,
    /// its status at registration (a stock worker says `init`, then reports `running`)
    pub status: crate::types::WorkerStatus,
}

/// One task of a submitted graph, as the graph helper describes it (PROTOCOL.md §4.3).
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    /// the key
    pub key: Key,
    /// keys of the tasks whose results it takes
    pub deps: Vec<Key>,
    /// pickled `GraphNode`, forwarded verbatim in `compute-task`
    pub run_spec: Bytes,
    /// `dask.order` position (or the client's `internal_priority`)
    pub order: i64,
    /// `key_split(key)`: groups tasks for duration estimates
    pub prefix: Arc<str>,
    /// merged annotations, forwarded to the worker (a map, or an opaque pickle)
    pub annotations: Value,
    /// `workers=` restriction entries: addresses, host names or worker names
    pub workers: Vec<Arc<str>>,
    /// `allow_other_workers=`
    pub allow_other_workers: bool,
    /// `resources=`
    pub resources: Vec<(Arc<str>, f64)>,
    /// `retries=`
    pub retries: u32,
    /// `priority=` (user priority; higher runs first)
    pub user_priority: i64,
    /// report this task's transitions to released/erred/forgotten (`Command::Transitioned`)
    pub watch: bool,
    /// `run_spec.data_producer`: a `DataNode`, or a task that reads or makes data
    /// (`read_csv`, `from_array`, ...)
    pub data_producer: bool,
}

/// A stimulus: one event from a peer or a timer. Each carries the `stimulus_id` Dask uses to
/// tie transitions to their cause.
#[derive(Debug, Clone, PartialEq)]
pub enum Stimulus {
    /// `register-worker` accepted; the server has already allocated the id.
    AddWorker {
        /// id chosen by [`crate::SchedulerState::new_worker_id`]
        id: WorkerId,
        /// what the worker said
        spec: WorkerSpec,
    },
    /// worker stream closed, `unregister`, or heartbeat timeout (`remove_worker`)
    RemoveWorker {
        /// who
        worker: WorkerId,
        /// `True` for a deliberate close: processing tasks are not counted as suspicious
        expected: bool,
        /// why
        stimulus_id: Arc<str>,
    },
    /// `worker-status-change`
    WorkerStatusChange {
        /// who
        worker: WorkerId,
        /// `running`, `paused`, `closing_gracefully`, ...
        status: crate::types::WorkerStatus,
    },
    /// `register-client`
    AddClient {
        /// id chosen by [`crate::SchedulerState::new_client_id`]
        id: ClientId,
        /// `Client-<uuid>`
        name: Arc<str>,
    },
    /// `close-client` or the client stream closed
    RemoveClient {
        /// who
        client: ClientId,
    },
    /// `update-graph`, after the graph helper materialized it
    UpdateGraph {
        /// who submitted
        client: ClientId,
        /// the graph's tasks
        tasks: Vec<NewTask>,
        /// the keys the client wants
        keys: Vec<Key>,
        /// seconds; a new priority generation starts if this long passed since the last one
        fifo_timeout: f64,
        /// the keys that are actors (`actors=`; `True` means all of `keys`)
        actors: Vec<Key>,
        /// `Some`: `tasks` are already only those `keys` reach ([`crate::handlers::reachable`],
        /// which the server runs off the state task), and these are their dependencies
        /// outside the graph; `None`: the core prunes the graph itself
        outside: Option<Vec<Key>>,
        /// why
        stimulus_id: Arc<str>,
    },
    /// `client-desires-keys`
    ClientDesiresKeys {
        /// who
        client: ClientId,
        /// what
        keys: Vec<Key>,
    },
    /// `client-releases-keys`
    ClientReleasesKeys {
        /// who
        client: ClientId,
        /// what
        keys: Vec<Key>,
        /// why
        stimulus_id: Arc<str>,
    },
    /// `cancel-keys`
    CancelKeys {
        /// who
        client: ClientId,
        /// what
        keys: Vec<Key>,
        /// cancel even if other clients want the keys
        force: bool,
        /// forwarded to clients
        reason: Option<Arc<str>>,
        /// forwarded to clients
        msg: Option<Arc<str>>,
    },
    /// `retry` RPC
    Retry {
        /// the erred keys to retry
        keys: Vec<Key>,
        /// why
        stimulus_id: Arc<str>,
    },
    /// `report-key`: tell the client the key's current outcome again
    ReportKey {
        /// who asks
        client: ClientId,
        /// which key
        key: Key,
    },
    /// `task-finished`
    TaskFinished {
        /// from
        worker: WorkerId,
        /// which
        key: Key,
        /// which dispatch
        run_id: u64,
        /// result size
        nbytes: i64,
        /// pickled result type, forwarded to clients
        type_: Value,
        /// seconds spent computing (from `startstops`), for duration estimates
        compute_duration: Option<f64>,
        /// seconds spent fetching its dependencies (`startstops`' transfers)
        transfer_duration: f64,
        /// why
        stimulus_id: Arc<str>,
    },
    /// `task-erred`
    TaskErred {
        /// from
        worker: WorkerId,
        /// which
        key: Key,
        /// which dispatch
        run_id: u64,
        /// opaque exception, passed on as [`crate::Exception::Pickled`]
        exception: Value,
        /// opaque traceback
        traceback: Value,
        /// why
        stimulus_id: Arc<str>,
    },
    /// `release-worker-data`
    ReleaseWorkerData {
        /// from
        worker: WorkerId,
        /// which
        key: Key,
        /// why
        stimulus_id: Arc<str>,
    },
    /// `add-keys`: the worker holds copies (fetched from peers)
    AddKeys {
        /// from
        worker: WorkerId,
        /// which
        keys: Vec<Key>,
        /// why
        stimulus_id: Arc<str>,
    },
    /// `reschedule`: the worker gives a task back
    Reschedule {
        /// from
        worker: WorkerId,
        /// which
        key: Key,
        /// why
        stimulus_id: Arc<str>,
    },
    /// `long-running`: the task seceded from the worker's thread pool
    LongRunning {
        /// from
        worker: WorkerId,
        /// which
        key: Key,
    },
    /// `request-refresh-who-has`
    RequestRefreshWhoHas {
        /// from
        worker: WorkerId,
        /// which
        keys: Vec<Key>,
        /// why
        stimulus_id: Arc<str>,
    },
    /// Data placed on workers by `scatter` or the `update_data` RPC.
    UpdateData {
        /// the client that owns the data (wants the keys), if any
        client: Option<ClientId>,
        /// key → workers holding it, with its size
        data: Vec<(Key, Vec<WorkerId>, i64)>,
        /// why
        stimulus_id: Arc<str>,
    },
    /// `set_restrictions`: a task may only run on these worker addresses (`None`: no
    /// worker restriction). P2P pins output tasks this way; a running task keeps running.
    SetRestrictions {
        /// the task
        key: Key,
        /// allowed worker addresses
        workers: Option<Vec<Arc<str>>>,
    },
    /// `set_resources` (`add_resources`, scheduler.py:8270): the worker's resources are
    /// updated with these amounts (others it had stay).
    SetResources {
        /// the worker
        worker: WorkerId,
        /// resource -> amount
        resources: Vec<(Arc<str>, f64)>,
    },
    /// Recommends `released` for these keys (tasks still wanted go back to `waiting` and
    /// run again): how a P2P shuffle restarts.
    Release {
        /// the tasks
        keys: Vec<Key>,
        /// why
        stimulus_id: Arc<str>,
    },
    /// `Client.restart` (`_clear_task_state`): every task is forgotten at once; the
    /// workers are about to be restarted, so they are told nothing.
    ClearTasks,
    /// Periodic work stealing (`WorkStealing.balance`, every `work-stealing-interval`).
    Balance,
    /// A worker's `steal-response`: the task's state on the victim when it was asked.
    StealResponse {
        /// the victim
        worker: WorkerId,
        /// the task
        key: Key,
        /// the worker's task state (`None`: it did not know the task)
        state: Option<Arc<str>>,
        /// the request's id
        stimulus_id: Arc<str>,
    },
    /// A graph the helper could not materialize: its keys err for this client.
    GraphFailed {
        /// who submitted
        client: ClientId,
        /// requested keys
        keys: Vec<Key>,
        /// pickled exception, passed on as [`crate::Exception::Pickled`]
        exception: Value,
        /// pickled traceback or Nil
        traceback: Value,
    },
}
