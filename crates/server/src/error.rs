//! The server's errors, one enum per boundary:
//! - [`RequestError`]: a peer's request or stream message that cannot be served; it
//!   becomes the Python exception the client raises ([`RequestError::python_type`]).
//! - [`HelperError`]: a graph helper that could not do its job.
//! - [`StartupError`]: `rask scheduler` cannot start (it prints this and exits).
//!
//! The transport's own failures are [`rask_comm::CommError`].

use rask_comm::{CommError, FieldError};
use std::path::PathBuf;
use std::time::Duration;

/// Why a request (an RPC, or a message on a client's or worker's stream) failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// A field is missing or of the wrong type.
    #[error("bad message: {0}")]
    Field(#[from] FieldError),
    /// The message is well-typed but not what Dask sends.
    #[error("bad message: {0}")]
    Invalid(#[from] Invalid),
    /// No scheduler has an op of this name.
    #[error("unknown {kind} op {op:?}")]
    UnknownOp {
        /// "RPC", "client stream" or "worker stream"
        kind: &'static str,
        /// the name the peer sent
        op: String,
    },
    /// An op of Dask's scheduler that rask does not serve (`ops.rs` says why).
    #[error("rask scheduler does not support the operation {op:?} yet: {reason}")]
    NotSupported {
        /// the op
        op: &'static str,
        /// what the user reads
        reason: &'static str,
    },
    /// A bounded wait ran out.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, &'static str),
    /// A worker or nanny the scheduler called did not do what was asked.
    #[error("worker {address} failed: {failure}")]
    Worker {
        /// the worker (or nanny) address, or a list of them
        address: String,
        /// what went wrong
        failure: WorkerFailure,
    },
    /// Dialing a worker failed.
    #[error(transparent)]
    Comm(#[from] CommError),
    /// The graph helper could not do its job.
    #[error(transparent)]
    Helper(#[from] HelperError),
    /// The state task is gone: the scheduler is shutting down.
    #[error("scheduler is shutting down")]
    ShuttingDown,
    /// `restart` / `restart_workers` ran out of time: a `TimeoutError` with the stock
    /// scheduler's text (scheduler.py:6603, 6629).
    #[error(transparent)]
    Restart(#[from] RestartTimeout),
    /// A worker named in a request is not in the cluster: the `KeyError` the stock
    /// handler's `self.workers[address]` raises (e.g. `processing`, scheduler.py:7849).
    #[error("{0}")]
    UnknownWorker(String),
    /// A worker (or any address) could not be dialled before `distributed.comm.timeouts.
    /// connect` ran out: the `OSError` of `distributed.comm.core.connect` (core.py:368).
    #[error("Timed out trying to connect to {address} after {} s", py_secs(*.timeout))]
    Unreachable {
        /// the address dialled
        address: String,
        /// the connect timeout
        timeout: Duration,
    },
}

/// Seconds as Python prints the stock scheduler's timeouts (`parse_timedelta` gives an
/// int for a whole number of seconds, a float otherwise): `30`, `0.2`.
pub fn py_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}", s as u64)
    } else {
        format!("{s}")
    }
}

/// A restart that ran out of time, worded as the stock scheduler words it.
#[derive(Debug, thiserror::Error)]
pub enum RestartTimeout {
    /// Nannies did not shut their workers down in time (scheduler.py:6603).
    #[error(
        "{}/{of} nanny worker(s) did not shut down within {}s: {{{}}}",
        bad.len(), py_secs(*.timeout), py_set(bad)
    )]
    NotShutDown {
        /// the workers whose nanny did not
        bad: Vec<std::sync::Arc<str>>,
        /// how many nannies were asked
        of: usize,
        /// the time they had
        timeout: Duration,
    },
    /// Restarted workers did not come back in time (scheduler.py:6615-6629).
    #[error(
        "Waited for {restarted} worker(s) to reconnect after restarting but, after {}s, \
         {missing} have not returned. Consider a longer timeout, or `wait_for_workers=False`.{}",
        py_secs(*.timeout), no_nanny_note(*.no_nanny)
    )]
    NotBack {
        /// how many were restarted
        restarted: usize,
        /// how many are still missing
        missing: usize,
        /// the time they had
        timeout: Duration,
        /// how many of them had no nanny and were only shut down
        no_nanny: usize,
    },
}

/// The elements of a Python set of strings, as `repr` shows them.
fn py_set(items: &[std::sync::Arc<str>]) -> String {
    items
        .iter()
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The note the stock scheduler adds when workers without a nanny were shut down.
fn no_nanny_note(n: usize) -> String {
    if n == 0 {
        return String::new();
    }
    format!(
        " The {n} worker(s) not using Nannies were just shut down instead of restarted \
         (restart is only possible with Nannies). If your deployment system does not \
         automatically re-launch terminated processes, then those workers will never come \
         back, and `Client.restart` will always time out. Do not use `Client.restart` in \
         that case."
    )
}

/// A well-typed message that is not what a Dask peer sends.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Invalid {
    /// A message that is not a dict.
    #[error("expected a dict with an 'op', got {0}")]
    NotADict(&'static str),
    /// A dict without an `op` string.
    #[error("message has no 'op' string")]
    NoOp,
    /// Parallel lists of different lengths.
    #[error("{0}: the lists differ in length")]
    Lengths(&'static str),
    /// A number outside what the op accepts.
    #[error("{field} must be in {range}, not {got}")]
    OutOfRange {
        /// the field
        field: &'static str,
        /// e.g. "1..=3"
        range: String,
        /// what came
        got: i64,
    },
    /// A time interval Dask's `parse_timedelta` would refuse.
    #[error("bad timeout {0}")]
    Timedelta(String),
    /// A `MultiLock` id that already acquires or holds its locks.
    #[error("MultiLock {0} is already acquiring or holding its locks")]
    MultiLockBusy(String),
}

/// What a worker or nanny did wrong.
#[derive(Debug, thiserror::Error)]
pub enum WorkerFailure {
    /// It answered with something other than what the op returns.
    #[error("{op} replied {reply}")]
    Reply {
        /// the op the scheduler sent
        op: &'static str,
        /// the reply, in Rust debug form
        reply: String,
    },
    /// It kept answering `busy`.
    #[error("stayed busy")]
    Busy,
    /// `shuffle_inputs_done` failed on a participant.
    #[error("Unexpected error encountered during P2P barrier: {0}")]
    Barrier(String),
    /// Participants of a shuffle could not be told its inputs are done.
    #[error("could not tell workers that the inputs of shuffle {0} are done")]
    BarrierUnreachable(String),
}

impl RequestError {
    /// The builtin exception the client raises for this error.
    pub fn python_type(&self) -> &'static str {
        match self {
            RequestError::Field(_) | RequestError::Invalid(_) => "TypeError",
            RequestError::UnknownOp { .. } | RequestError::NotSupported { .. } => "ValueError",
            RequestError::Timeout(..) => "TimeoutError",
            // `restart` and `restart_workers` raise TimeoutError (scheduler.py:6603, 6629)
            RequestError::Restart(_) => "TimeoutError",
            RequestError::UnknownWorker(_) => "KeyError",
            RequestError::Unreachable { .. } => "OSError",
            _ => "RuntimeError",
        }
    }

    /// Whether the peer sent something malformed or unknown: its connection is then
    /// closed after the error reply, as Dask closes a comm whose handler raised on bad
    /// input.
    pub fn is_peer_fault(&self) -> bool {
        matches!(
            self,
            RequestError::Field(_)
                | RequestError::Invalid(_)
                | RequestError::UnknownOp { .. }
                | RequestError::NotSupported { .. }
                | RequestError::Comm(CommError::Protocol(_) | CommError::Handshake(_))
        )
    }
}

/// Why a graph helper could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    /// The interpreter could not be started.
    #[error("cannot start {python}: {source}")]
    Spawn {
        /// the interpreter
        python: String,
        /// why
        source: std::io::Error,
    },
    /// The helper reported a fatal start-up error (e.g. a Dask config value it cannot
    /// parse); the text is the helper's, naming the key and the value.
    #[error("the graph helper ({python}) cannot start: {message}")]
    Fatal {
        /// the interpreter
        python: String,
        /// the helper's message
        message: String,
    },
    /// The helper did not become ready in time.
    #[error("timed out after {0:?} waiting for the graph helper to import dask")]
    StartTimeout(Duration),
    /// The helper's pipe failed or its reply could not be decoded.
    #[error("graph helper pipe: {0}")]
    Pipe(#[from] std::io::Error),
    /// The helper's reply is not valid msgpack.
    #[error("graph helper reply: {0}")]
    Decode(#[from] rask_protocol::ProtocolError),
    /// The helper's reply breaks the helper protocol.
    #[error("graph helper protocol: {0}")]
    Protocol(&'static str),
    /// A record of the helper's `update_graph` reply is malformed.
    #[error("graph helper record: {0}")]
    Record(#[from] FieldError),
    /// The helper died while it held this job.
    #[error(
        "rask's graph helper process died while materializing this graph ({status}); the \
         scheduler started a new one. See the scheduler log for its output."
    )]
    Died {
        /// its exit status
        status: String,
    },
    /// The plugin host could not start: a preload that failed, say (its text).
    #[error("rask's plugin host (scheduler plugins, --preload) cannot start: {0}")]
    HostFatal(String),
    /// The plugin host died while it held this request (a plugin or a function that
    /// crashed it); the scheduler starts a new one with the plugins registered again.
    #[error(
        "rask's plugin host (the Python process where scheduler plugins and \
         run_on_scheduler functions run) died while it held this request ({status}); the \
         scheduler starts a new one with the registered plugins. See the scheduler log."
    )]
    HostDied {
        /// its exit status
        status: String,
    },
    /// `rask-order` could not order the graph.
    #[error("ordering the graph failed: {0}")]
    Order(String),
    /// The pool is gone (the scheduler is shutting down).
    #[error("graph helpers are shutting down")]
    Gone,
}

/// Why `rask scheduler` could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The scheduler port cannot be bound.
    #[error("cannot listen on {addr}: {source} (is another scheduler running on that port?)")]
    Listen {
        /// `host:port`
        addr: String,
        /// why
        source: std::io::Error,
    },
    /// The dashboard port cannot be bound.
    #[error("cannot listen for HTTP on port {port}: {source}")]
    Http {
        /// the port
        port: u16,
        /// why
        source: std::io::Error,
    },
    /// The Python interpreter cannot be run at all.
    #[error(
        "cannot run the Python interpreter {python:?} for rask's graph helpers: {source}. \
         Activate an environment with dask[distributed]=={tested} or pass --python / set \
         RASK_PYTHON.",
        tested = rask_protocol::TESTED_DISTRIBUTED
    )]
    Python {
        /// the interpreter
        python: String,
        /// why
        source: std::io::Error,
    },
    /// The Python interpreter lacks `distributed`.
    #[error(
        "the Python interpreter {python:?} cannot import distributed ({found}). rask's graph \
         helpers need the same environment as your workers: dask[distributed]=={tested} is \
         the version rask is tested with. Activate that environment, or pass --python PATH / \
         set RASK_PYTHON.",
        tested = rask_protocol::TESTED_DISTRIBUTED
    )]
    NoDistributed {
        /// the interpreter
        python: String,
        /// what the check found
        found: String,
    },
    /// The first graph helper did not start.
    #[error(transparent)]
    Helper(#[from] HelperError),
    /// A Dask configuration value rask cannot use.
    #[error(transparent)]
    Config(#[from] crate::dask_config::ConfigError),
    /// TLS settings that do not fit together, or unreadable certificates.
    #[error(transparent)]
    Tls(#[from] rask_comm::tls::TlsError),
    /// A file rask was asked to write.
    #[error("cannot write {what} {path}: {source}")]
    Write {
        /// "scheduler file" or "pid file"
        what: &'static str,
        /// the path
        path: PathBuf,
        /// why
        source: std::io::Error,
    },
    /// The state task ended: a bug in rask. The scheduler exits rather than keep accepting
    /// connections nobody can serve.
    #[error("the scheduler state task stopped: {0}")]
    StateTask(String),
    /// `--ready-file` is not a helper's `ready` message in msgpack.
    #[error("cannot read the graph helpers' ready message given at start: {0}")]
    Ready(String),
    /// The listener's own address could not be read.
    #[error("cannot read the listening address: {0}")]
    LocalAddr(std::io::Error),
}
