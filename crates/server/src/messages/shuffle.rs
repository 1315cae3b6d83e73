//! The P2P shuffle's messages (`ShuffleSchedulerPlugin`, `shuffle/_scheduler_plugin.py`).

use rask_protocol::Key;
use std::sync::Arc;

/// The shuffle plugin's RPCs, all sent by workers.
#[derive(Debug, Clone)]
pub enum Rpc {
    /// `shuffle_get_or_create {shuffle_id, key, worker}`
    GetOrCreate {
        /// the shuffle
        id: Arc<str>,
        /// the transfer task asking
        key: Key,
        /// the worker asking
        worker: Arc<str>,
    },
    /// `shuffle_get {id, worker}`
    Get {
        /// the shuffle
        id: Arc<str>,
        /// the worker asking
        worker: Arc<str>,
    },
    /// `shuffle_barrier {id, run_id, consistent}`: every input was sent
    Barrier {
        /// the shuffle
        id: Arc<str>,
        /// its run
        run_id: i64,
        /// whether the workers agree on the run
        consistent: bool,
    },
    /// `shuffle_restrict_task {id, run_id, key, worker}`: pin an output task
    RestrictTask {
        /// the shuffle
        id: Arc<str>,
        /// its run
        run_id: i64,
        /// the output task
        key: Key,
        /// the worker that owns its partition
        worker: Arc<str>,
    },
}
