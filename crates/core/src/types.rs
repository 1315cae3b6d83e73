//! The small value types every part of the core names: the ids of tasks, workers and
//! clients, Dask's task and worker states, and a task's exception. A leaf module: it
//! depends on nothing else in the core.

use rask_protocol::{Key, Value};
use std::sync::Arc;

/// Index of a task in the task arena. Reused after a task is forgotten.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(pub u32);

/// A worker, for the lifetime of its registration (never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(pub u64);

/// A client, for the lifetime of its connection (never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

/// Dask's task states (`TaskStateState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    /// known, not wanted or not yet scheduled
    Released,
    /// wanted, waiting for dependencies
    Waiting,
    /// ready, but no worker can run it (restrictions, or no workers)
    NoWorker,
    /// a ready root-ish task held back until a worker has a free slot (`worker-saturation`)
    Queued,
    /// sent to a worker
    Processing,
    /// result held by one or more workers
    Memory,
    /// failed (itself, or a dependency)
    Erred,
    /// removed; only seen transiently inside a transition
    Forgotten,
}

impl TaskStatus {
    /// Released or waiting: what a task group's `runnable` counts.
    pub fn is_runnable(self) -> bool {
        matches!(self, TaskStatus::Released | TaskStatus::Waiting)
    }

    /// Dask's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Released => "released",
            TaskStatus::Waiting => "waiting",
            TaskStatus::NoWorker => "no-worker",
            TaskStatus::Queued => "queued",
            TaskStatus::Processing => "processing",
            TaskStatus::Memory => "memory",
            TaskStatus::Erred => "erred",
            TaskStatus::Forgotten => "forgotten",
        }
    }
}

/// A task's exception as the scheduler passes it on to clients.
#[derive(Debug, Clone, PartialEq)]
pub enum Exception {
    /// Pickled by the worker that ran the task (or by a graph helper): forwarded untouched
    /// (may be Nil).
    Pickled(Value),
    /// `distributed.scheduler.KilledWorker`: too many workers died while running the task;
    /// the server pickles it.
    KilledWorker {
        /// the task
        key: Key,
        /// address of the last worker that died running it
        last_worker: Arc<str>,
        /// `distributed.scheduler.allowed-failures`
        allowed_failures: u32,
    },
    /// `RuntimeError("Worker holding Actor was lost")` (scheduler.py:2560): an actor's
    /// state lived on a worker that left; the server pickles it.
    ActorLost,
}

impl Exception {
    /// No exception reported (`None` in Dask): it does not replace one already recorded.
    pub(crate) fn is_nil(&self) -> bool {
        matches!(self, Exception::Pickled(Value::Nil))
    }
}

impl From<Value> for Exception {
    fn from(v: Value) -> Self {
        Exception::Pickled(v)
    }
}

/// A worker's `Status` (`distributed/core.py`), as the worker reports it
/// (`worker-status-change`) or the scheduler sets it (retiring). Only a `Running` worker
/// takes new tasks; the core owns this status, `identity` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerStatus {
    /// `undefined` (also any name Dask does not have)
    Undefined,
    /// `created`
    Created,
    /// `init`: a stock worker registers with it and reports `running` next
    Init,
    /// `starting`
    Starting,
    /// `running`: takes new tasks
    Running,
    /// `paused`: over its memory's pause fraction; keeps its data, takes no new tasks
    Paused,
    /// `stopping`
    Stopping,
    /// `stopped`
    Stopped,
    /// `closing`
    Closing,
    /// `closing_gracefully`: being retired; its data moves to other workers
    ClosingGracefully,
    /// `closed`
    Closed,
    /// `failed`
    Failed,
    /// `dont_reply`
    DontReply,
}

impl WorkerStatus {
    const NAMES: [(WorkerStatus, &'static str); 13] = [
        (WorkerStatus::Undefined, "undefined"),
        (WorkerStatus::Created, "created"),
        (WorkerStatus::Init, "init"),
        (WorkerStatus::Starting, "starting"),
        (WorkerStatus::Running, "running"),
        (WorkerStatus::Paused, "paused"),
        (WorkerStatus::Stopping, "stopping"),
        (WorkerStatus::Stopped, "stopped"),
        (WorkerStatus::Closing, "closing"),
        (WorkerStatus::ClosingGracefully, "closing_gracefully"),
        (WorkerStatus::Closed, "closed"),
        (WorkerStatus::Failed, "failed"),
        (WorkerStatus::DontReply, "dont_reply"),
    ];

    /// Dask's spelling.
    pub fn as_str(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(s, _)| *s == self)
            .map_or("undefined", |(_, n)| n)
    }

    /// The status of Dask's name; `None` for a name Dask does not have.
    pub fn from_name(name: &str) -> Option<WorkerStatus> {
        Self::NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(s, _)| *s)
    }
}

impl From<&str> for WorkerStatus {
    /// A name from the wire; one Dask does not have is `Undefined` (not running).
    fn from(name: &str) -> Self {
        WorkerStatus::from_name(name).unwrap_or(WorkerStatus::Undefined)
    }
}

/// An entry of the transition log (`Transition`, scheduler.py:1569): what `get_story`
/// answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// the task
    pub key: Key,
    /// its state before (`released` for the second of two hops via released)
    pub start: TaskStatus,
    /// its state after
    pub finish: TaskStatus,
    /// what the transition recommended, per task
    pub recommendations: Vec<(Key, TaskStatus)>,
    /// the stimulus it was part of
    pub stimulus_id: Arc<str>,
    /// when (the core's clock)
    pub timestamp: f64,
}
