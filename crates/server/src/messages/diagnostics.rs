//! The diagnostics' messages: the task stream (`diagnostics/task_stream.py`), task prefix
//! states, stories (the transition log), task metadata collection, the memory sampler
//! (`diagnostics/memory_sampler.py`) and what `recreate_error_locally` asks
//! (`recreate_tasks.py`).

use rask_core::Stimulus;
use rask_protocol::{Key, Value};
use std::sync::Arc;

/// A time bound of `get_task_stream`: seconds since the epoch, or a duration before now
/// (`"10s"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// an absolute time
    At(f64),
    /// this many seconds before now
    Ago(f64),
}

/// The diagnostics' RPCs.
#[derive(Debug, Clone)]
pub enum Rpc {
    /// `get_task_stream {start, stop, count, start_index}` (scheduler.py:8089)
    GetTaskStream {
        /// records whose last stop is at or after this
        start: Option<Bound>,
        /// records whose last stop is before this
        stop: Option<Bound>,
        /// at most this many
        count: Option<i64>,
        /// records from this position of the append counter on (wins over the others)
        start_index: Option<i64>,
    },
    /// `get_task_stream_index` (scheduler.py:8101): the append counter
    GetTaskStreamIndex,
    /// `get_task_prefix_states` (scheduler.py:8053)
    GetTaskPrefixStates,
    /// `get_story {keys_or_stimuli}` (scheduler.py:8232)
    GetStory {
        /// keys (or stimulus ids, which Dask's scheduler story matches as keys)
        keys_or_stimuli: Vec<Key>,
    },
    /// `start_task_metadata {name}` (scheduler.py:8110)
    StartTaskMetadata {
        /// the collector's name
        name: Option<Arc<str>>,
    },
    /// `stop_task_metadata {name}` (scheduler.py:8114)
    StopTaskMetadata {
        /// the collector's name
        name: Option<Arc<str>>,
    },
    /// `get_error_cause {keys}` (`ReplayTaskScheduler.get_error_cause`)
    GetErrorCause {
        /// the keys to look at, in order
        keys: Vec<Key>,
    },
    /// `get_runspec {key}` (`ReplayTaskScheduler.get_runspec`)
    GetRunspec {
        /// the task
        key: Key,
    },
    /// `memory_sampler_start {client, measure, interval}` (`MemorySamplerExtension.start`)
    MemorySamplerStart {
        /// the client; sampling stops when it leaves
        client: Arc<str>,
        /// the `MemoryState` measure
        measure: Arc<str>,
        /// seconds between samples
        interval: f64,
    },
    /// `memory_sampler_stop {key}` (`MemorySamplerExtension.stop`)
    MemorySamplerStop {
        /// the sampler
        key: Arc<str>,
    },
}

/// A worker's `task-finished` or `task-erred`: the core's stimulus, and the message itself,
/// of which the record Dask's `TaskStreamPlugin` keeps is made only when something records
/// finished tasks (`translate::worker::done_record`).
#[derive(Debug, Clone)]
pub struct TaskDone {
    /// `Stimulus::TaskFinished` or `Stimulus::TaskErred`
    pub stimulus: Stimulus,
    /// the key
    pub key: Key,
    /// the message as it came
    pub msg: DoneMsg,
    /// a result's type, as a buffer of its own (`None` for an error)
    pub type_: Option<Value>,
}

/// A `task-finished`/`task-erred` as it came: decoded, or the bytes of a `task-finished`
/// read without decoding it (one frame, no payloads), decoded if a record is wanted.
#[derive(Debug, Clone)]
pub enum DoneMsg {
    /// the decoded message
    Value(Value),
    /// its msgpack
    Raw(bytes::Bytes),
}

/// What the task stream and the metadata collectors keep of a [`TaskDone`].
#[derive(Debug, Clone)]
pub struct DoneRecord {
    /// the message's fields but `op` and `run_id` (and, for an error, `cause`)
    pub record: Value,
    /// `max(startstop["stop"])`, by which `get_task_stream` bounds records in time
    pub last_stop: f64,
    /// the message's `metadata`, if not empty (a finished task's `TaskState.metadata`)
    pub metadata: Option<Value>,
}
