//! What reaches the state task ([`Event`]) and what it starts outside itself ([`Job`],
//! [`Timer`]). Every input is a typed value, so a sequence of events can be logged,
//! replayed and tested without tokio or sockets; long waits (workers, nannies, graph
//! helpers) run as jobs whose results come back as [`Event::Done`].

use crate::error::{HelperError, RequestError};
use crate::messages::{
    ClientMsg, GraphRequest, Placement, Registration, Rpc, ToClientMsg, ToWorkerMsg, WorkerMsg,
};
use rask_core::{ClientId, Stimulus, WorkerId};
use rask_protocol::{Key, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// An RPC's answer: the reply value, or the error the client re-raises.
pub type RpcResult = Result<Value, RequestError>;

/// A client's stream: messages for its batched writer.
pub type ClientTx = mpsc::UnboundedSender<ToClientMsg>;

/// A worker's stream: messages for its batched writer.
pub type WorkerTx = mpsc::UnboundedSender<ToWorkerMsg>;

/// `{key: serialized value}` entries for one worker, by its address.
pub type DataFor = (Arc<str>, Vec<(Value, Value)>);

/// One input of the state task.
#[derive(Debug)]
pub enum Event {
    /// A request on a connection.
    Rpc {
        /// what is asked
        request: Rpc,
        /// where the answer goes
        reply: Replier,
    },
    /// `register-client`: a client opens its stream.
    ClientJoined {
        /// `Client-<uuid>`
        name: Arc<str>,
        /// its `versions` (`get_versions()`), for the mismatch warning
        versions: Value,
        /// its batched writer
        stream: ClientTx,
        /// its id, for the stream's later events
        reply: oneshot::Sender<ClientId>,
    },
    /// Messages of one client's stream, in order.
    Client {
        /// from
        client: ClientId,
        /// the messages
        msgs: Vec<ClientMsg>,
    },
    /// A client's stream ended.
    ClientLeft {
        /// who
        client: ClientId,
    },
    /// `register-worker`: a worker opens its stream.
    WorkerJoined {
        /// what it says about itself
        registration: Box<Registration>,
        /// its batched writer
        stream: WorkerTx,
        /// accepted (with its id) or refused, with the reply to write
        reply: oneshot::Sender<Joined>,
    },
    /// Messages of one worker's stream, in order.
    Worker {
        /// from
        worker: WorkerId,
        /// the messages
        msgs: Vec<WorkerMsg>,
    },
    /// A worker's stream ended.
    WorkerLeft {
        /// who
        worker: WorkerId,
        /// it said it was closing: its running tasks are not suspicious
        expected: bool,
    },
    /// The periodic timer (work stealing, worker-ttl, lease expiry, idle timeout).
    Tick,
    /// A turn's share of a big graph being taken in ([`crate::reactor::Scheduler::ingesting`]).
    Ingest,
    /// A timer the state task set ([`crate::outbox::Outbox::after`]) went off.
    Timer(Timer),
    /// A background job finished.
    Done(Done),
    /// The plugin host's news (its plugin count, its death).
    Host(crate::plugin_host::HostNote),
    /// What `/metrics`, the JSON routes and the dashboard show.
    Watch(Watch),
    /// The scheduler is closing: workers are told to close, clients that the stream ends.
    Shutdown(oneshot::Sender<()>),
}

/// A question of the HTTP pages to the state task.
#[derive(Debug)]
pub enum Watch {
    /// `/metrics`: every family
    Metrics(oneshot::Sender<Vec<crate::monitor::Family>>),
    /// `/json/counts.json`
    Counts(oneshot::Sender<serde_json::Value>),
    /// the dashboard's picture, with the task stream's records from index `since` on (the
    /// recent ones if `since` is older than what is kept; starts the task stream), or
    /// without the task stream
    Dashboard {
        since: Option<i64>,
        reply: oneshot::Sender<serde_json::Value>,
    },
    /// `/info/task/<key>.html`: a task's record, `None` if unknown
    Task {
        key: String,
        reply: oneshot::Sender<Option<serde_json::Value>>,
    },
}

/// The answer to `register-worker`.
#[derive(Debug)]
pub enum Joined {
    /// registered; `reply` is written to the worker
    Accepted {
        /// its id
        worker: WorkerId,
        /// the registration reply
        reply: Value,
    },
    /// refused (a name or address already taken); `reply` says why
    Refused {
        /// the refusal
        reply: Value,
    },
}

/// Where an RPC's answer goes: the connection that asked waits on the other end.
#[derive(Debug)]
pub struct Replier(oneshot::Sender<RpcResult>);

impl Replier {
    /// A replier and the receiver the asking connection awaits.
    pub fn new() -> (Replier, oneshot::Receiver<RpcResult>) {
        let (tx, rx) = oneshot::channel();
        (Replier(tx), rx)
    }

    /// Answers; a connection that went away meanwhile is not an error.
    pub fn send(self, result: RpcResult) {
        let _ = self.0.send(result);
    }

    /// Whether the asking connection went away (a parked wait is then dropped rather than
    /// handed an item it cannot take).
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// A cloneable way to reach the state task.
#[derive(Clone, Debug)]
pub struct Handle {
    tx: mpsc::UnboundedSender<Event>,
}

impl Handle {
    /// A handle and the receiver the state task reads.
    pub fn channel() -> (Handle, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Handle { tx }, rx)
    }

    /// Sends an event; fails only once the state task is gone.
    pub fn send(&self, event: Event) -> Result<(), RequestError> {
        self.tx.send(event).map_err(|_| RequestError::ShuttingDown)
    }

    /// Sends an RPC and waits for its answer.
    pub async fn rpc(&self, request: Rpc) -> RpcResult {
        let (reply, rx) = Replier::new();
        self.send(Event::Rpc { request, reply })?;
        rx.await.unwrap_or(Err(RequestError::ShuttingDown))
    }

    /// Sends an event built around a oneshot and waits for its answer.
    pub async fn ask<T>(
        &self,
        event: impl FnOnce(oneshot::Sender<T>) -> Event,
    ) -> Result<T, RequestError> {
        let (tx, rx) = oneshot::channel();
        self.send(event(tx))?;
        rx.await.map_err(|_| RequestError::ShuttingDown)
    }
}

/// A timer set by the state task; it comes back as [`Event::Timer`].
#[derive(Debug)]
pub enum Timer {
    /// Handle this request again: a wait that polls, as Dask's does (scatter waiting for
    /// workers, a future whose key the scheduler does not know yet).
    Again {
        /// the request
        request: Rpc,
        /// its answer's destination
        reply: Replier,
    },
    /// A coordination wait (event, lock, queue, variable, publish) reached its deadline.
    Coordination(u64),
    /// The next step of a `retire_workers`.
    Retire(u64),
    /// Restarted workers had their time to come back.
    WorkersBack(u64),
    /// A memory sampler's next sample is due.
    MemorySample(Arc<str>),
}

/// Work that waits on other processes, run outside the state task.
#[derive(Debug)]
pub enum Job {
    /// `update-graph`: a graph helper materializes the graph, `rask-order` orders it.
    Materialize {
        /// who submitted
        client: ClientId,
        /// the request
        request: Box<GraphRequest>,
    },
    /// `gather`: one round of `get_data` to the holders.
    Gather(Box<Gathering>),
    /// `scatter`: `update_data` to the chosen workers.
    Scatter {
        /// per worker address, the `{key: value}` entries it gets
        per_worker: Vec<DataFor>,
        /// every key, in the client's order
        keys: Vec<Value>,
        /// the client that owns the data
        client: Option<Arc<str>>,
        /// the RPC
        reply: Replier,
    },
    /// `broadcast`: one request to many workers (or their nannies).
    Broadcast {
        /// (worker address, address to dial)
        targets: Vec<(Arc<str>, Arc<str>)>,
        /// the request
        msg: Value,
        /// what a failure becomes
        on_error: crate::messages::OnError,
        /// the RPC
        reply: Replier,
    },
    /// Kill workers through their nannies (which start new ones).
    KillNannies {
        /// (worker address, nanny address)
        nannies: Vec<(Arc<str>, Arc<str>)>,
        /// how long each nanny may take
        timeout: Duration,
        /// why
        stimulus_id: Arc<str>,
        /// what the restart is for
        then: AfterKill,
    },
    /// A request to a graph helper.
    Helper {
        /// the request
        request: Value,
        /// what the answer is for
        then: AfterHelper,
    },
    /// Waits for the plugin host's reply to a request the state task sent it (sent by the
    /// state task itself, so it arrives in order with the host's events).
    Host {
        /// the reply, when it comes
        reply: oneshot::Receiver<crate::plugin_host::HostReply>,
        /// what it is for
        then: AfterHost,
    },
    /// An inspection RPC's requests to workers (profile, call_stack, benchmarks, cluster
    /// state, proxy); answered as it is.
    Inspect {
        /// what to ask
        ask: crate::messages::inspect::Ask,
        /// the RPC
        reply: Replier,
    },
    /// `shuffle_barrier`: `shuffle_inputs_done` to every participant.
    InputsDone {
        /// the shuffle
        shuffle_id: Arc<str>,
        /// its run
        run_id: i64,
        /// the workers taking part
        participants: Vec<Arc<str>>,
        /// the RPC
        reply: Replier,
    },
}

/// What a finished job reports.
#[derive(Debug)]
pub enum Done {
    /// A graph was materialized (`UpdateGraph`) or could not be (`GraphFailed`).
    Graph {
        /// who submitted
        client: ClientId,
        /// the stimulus for the core
        stimulus: Box<Stimulus>,
    },
    /// A round of `gather` finished; keys still to find are in `retry`.
    Gathered(Box<Gathering>),
    /// `update_data` went to every chosen worker.
    Scattered {
        /// where the data now is, or why it could not be placed
        result: Result<Placement, RequestError>,
        /// every key, in the client's order (the reply)
        keys: Vec<Value>,
        /// the client that owns the data
        client: Option<Arc<str>>,
        /// the RPC
        reply: Replier,
    },
    /// Nannies were asked to kill their workers.
    Killed {
        /// (worker address, whether its nanny killed it in time)
        outcomes: Vec<(Arc<str>, bool)>,
        /// what the restart is for
        then: AfterKill,
    },
    /// A graph helper answered.
    Helper {
        /// its reply
        result: Result<Value, HelperError>,
        /// what it was for
        then: AfterHelper,
    },
    /// The plugin host answered.
    Host {
        /// its reply
        result: Result<Value, HelperError>,
        /// what it was for
        then: AfterHost,
    },
    /// A job whose answer needs nothing more from the state: reply as it is.
    Reply {
        /// the answer
        result: RpcResult,
        /// the RPC
        reply: Replier,
    },
}

/// `gather`, across its rounds (a key a worker did not deliver is tried at another
/// holder).
#[derive(Debug)]
pub struct Gathering {
    /// 0, 1, 2
    pub round: u32,
    /// the client's `serializers`, for the workers' `get_data` (scheduler.py:6404)
    pub serializers: Option<Value>,
    /// this round: worker address -> keys to fetch there
    pub plan: Vec<(Arc<str>, Vec<Key>)>,
    /// `{key: serialized value}` fetched so far
    pub data: Vec<(Value, Value)>,
    /// keys nobody holds
    pub missing: Vec<Key>,
    /// keys this round did not get (filled by the job)
    pub retry: Vec<Key>,
    /// the RPC
    pub reply: Replier,
}

/// What killing workers through their nannies is for.
#[derive(Debug)]
pub enum AfterKill {
    /// `restart`: then wait for as many workers as before.
    Restart {
        /// the RPC
        reply: Replier,
        /// workers before the restart
        n_workers: usize,
        /// `wait_for_workers`
        wait: bool,
        /// how long to wait
        timeout: Duration,
        /// workers without a nanny, removed instead
        removed: Vec<Arc<str>>,
    },
    /// `restart_workers`: then wait, and report each worker's outcome.
    RestartWorkers {
        /// the RPC
        reply: Replier,
        /// workers before the restart
        n_workers: usize,
        /// `on_error="raise"`
        raise: bool,
        /// how long to wait
        timeout: Duration,
        /// workers without a nanny, removed instead
        removed: Vec<Arc<str>>,
        /// (worker, nanny) of the workers killed through their nanny
        nannies: Vec<(Arc<str>, Arc<str>)>,
    },
    /// The worker-ttl check: nothing to answer.
    WorkerTtl,
}

/// What a graph helper request is for.
#[derive(Debug)]
pub enum AfterHelper {
    /// `shuffle_create_run`: a new run of a P2P shuffle.
    ShuffleRun {
        /// the shuffle
        id: Arc<str>,
        /// the run being created
        run_id: i64,
        /// the transfer task that asked
        key: Key,
        /// the worker that asked
        worker: Arc<str>,
        /// the RPC
        reply: Replier,
    },
    /// `run_function`: `Client.run_on_scheduler`.
    RunFunction {
        /// the request, for the plugin host if the function takes `dask_scheduler`
        request: Value,
        /// the RPC
        reply: Replier,
    },
}

/// What a plugin host's reply is for.
#[derive(Debug)]
pub enum AfterHost {
    /// `register_scheduler_plugin`
    Register {
        /// the pickled plugin, to register again in a new host
        plugin: Value,
        /// the RPC; `None` for a registration again in a new host
        reply: Option<Replier>,
    },
    /// `unregister_scheduler_plugin`
    Unregister {
        /// the plugin
        name: Arc<str>,
        /// the RPC
        reply: Replier,
    },
    /// a request whose reply goes to the client as it is (`run_function`,
    /// `performance_report`)
    Relay {
        /// `run_function`: the reply is the helper's `run_function` reply
        run_function: bool,
        /// the RPC
        reply: Replier,
    },
    /// `feed_start`
    Feed {
        /// the feed
        feed: i64,
        /// the connection waiting for it to start
        reply: Replier,
    },
    /// `feed_stop`
    FeedStopped,
}
