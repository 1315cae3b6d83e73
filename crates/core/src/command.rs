//! What the core asks the server to send. Names follow the Dask ops they become.

use crate::types::{ClientId, Exception, WorkerId};
use bytes::Bytes;
use rask_protocol::{Key, Value};
use std::sync::Arc;

/// One message for one peer (or for every client).
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// A message on a worker's batched stream.
    Worker(WorkerId, ToWorker),
    /// A message on a client's batched stream.
    Client(ClientId, ToClient),
    /// A message for every connected client (`Scheduler.report` without a client).
    AllClients(ToClient),
    /// A watched task (`NewTask::watch`) became released, erred or forgotten: what Dask's
    /// `SchedulerPlugin.transition` hook sees (the P2P shuffle plugin watches its barriers).
    /// Placed before the messages of the transition itself, as the hook's messages are.
    Transitioned {
        /// the task
        key: Key,
        /// its new state
        finish: crate::types::TaskStatus,
        /// the stimulus that caused it
        stimulus_id: Arc<str>,
    },
    /// A task reached `memory` or `erred` (only while
    /// [`crate::SchedulerState::set_report_done`] is on): what Dask's `TaskStreamPlugin` and
    /// `CollectTaskMetaDataPlugin` see of `SchedulerPlugin.transition`.
    Done {
        /// the task
        key: Key,
        /// its state before, as the transition log has it (`processing` for a task a
        /// worker finished or failed)
        start: crate::types::TaskStatus,
        /// `memory` or `erred`
        finish: crate::types::TaskStatus,
        /// the stimulus that caused it
        stimulus_id: Arc<str>,
    },
    /// Any transition, as Dask's transition log records it (only while
    /// [`crate::SchedulerState::set_report_transitions`] is on): what Dask's
    /// `SchedulerPlugin.transition` hooks see, for the plugin host.
    Transition(Box<TransitionNote>),
    /// A bug in the core: a change its transition table does not allow was refused and not
    /// made. Nothing to send; for the server to log (Dask raises it in the handler).
    Error(crate::error::CoreError),
}

/// One transition for scheduler plugins, with what the plugin host's mirror of the task
/// needs that the transition set: where it runs or is held, and its size.
#[derive(Debug, Clone, PartialEq)]
pub struct TransitionNote {
    /// the task
    pub key: Key,
    /// its state before (`released` for the second of two hops via released)
    pub start: crate::types::TaskStatus,
    /// its state after
    pub finish: crate::types::TaskStatus,
    /// the stimulus it was part of
    pub stimulus_id: Arc<str>,
    /// the worker it now runs on (`processing`) or one that holds it (`memory`)
    pub worker: Option<Arc<str>>,
    /// its result's size (`memory`)
    pub nbytes: i64,
}

/// `compute-task` (`scheduler.py:3576-3600`): every field the worker requires.
#[derive(Debug, Clone, PartialEq)]
pub struct ComputeTask {
    /// the task
    pub key: Key,
    /// unique per dispatch; echoed back in task-finished/erred so stale replies are spotted
    pub run_id: u64,
    /// `(-user_priority, generation, order)`
    pub priority: [i64; 3],
    /// where each dependency lives (never empty per dependency)
    pub who_has: Vec<(Key, Vec<Arc<str>>)>,
    /// size of each dependency, same keys as `who_has`
    pub nbytes: Vec<(Key, i64)>,
    /// the pickled `GraphNode`, sent as `{"__Pickled__"}`
    pub run_spec: Bytes,
    /// an actor: the worker keeps the object and serves calls on it
    pub actor: bool,
    /// `resources=` restriction, if any
    pub resource_restrictions: Option<Vec<(Arc<str>, f64)>>,
    /// the task's annotations dict, forwarded to the worker
    pub annotations: Value,
    /// a stimulus id for the worker's story
    pub stimulus_id: Arc<str>,
}

/// Scheduler → worker stream messages.
#[derive(Debug, Clone, PartialEq)]
pub enum ToWorker {
    /// run a task
    ComputeTask(Box<ComputeTask>),
    /// forget keys (cancel if queued or running)
    FreeKeys {
        /// keys to drop
        keys: Vec<Key>,
        /// why
        stimulus_id: Arc<str>,
    },
    /// drop redundant copies the scheduler did not ask for
    RemoveReplicas {
        /// keys to drop
        keys: Vec<Key>,
        /// why
        stimulus_id: Arc<str>,
    },
    /// answer to `request-refresh-who-has`
    RefreshWhoHas {
        /// current holders of each known key
        who_has: Vec<(Key, Vec<Arc<str>>)>,
        /// why
        stimulus_id: Arc<str>,
    },
    /// a peer worker left
    RemoveWorker {
        /// its address
        worker: Arc<str>,
        /// why
        stimulus_id: Arc<str>,
    },
    /// give back a task it has not started (`steal-request`; it answers `steal-response`)
    StealRequest {
        /// the task
        key: Key,
        /// ties the answer to this request
        stimulus_id: Arc<str>,
    },
    /// shut down
    Close {
        /// shown in the worker's log
        reason: Arc<str>,
    },
}

/// Scheduler → client stream messages.
#[derive(Debug, Clone, PartialEq)]
pub enum ToClient {
    /// a wanted key finished; `type_` is the worker's pickled `type` bytes
    KeyInMemory {
        /// the key
        key: Key,
        /// opaque pickled type, or Nil
        type_: Value,
    },
    /// a wanted key failed, with the blamed task's exception and traceback
    TaskErred {
        /// the key
        key: Key,
        /// the blamed task's exception
        exception: Exception,
        /// opaque traceback (or Nil)
        traceback: Value,
    },
    /// a finished key was lost with its worker and will be recomputed
    LostData {
        /// the key
        key: Key,
    },
    /// keys cancelled (or forgotten while wanted)
    CancelledKeys {
        /// the keys
        keys: Vec<Key>,
        /// `reason` field (None for plain forgetting)
        reason: Option<Arc<str>>,
        /// `msg` field
        msg: Option<Arc<str>>,
    },
    /// an erred key is being retried
    TaskRetried {
        /// the key
        key: Key,
    },
}
