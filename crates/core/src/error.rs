//! Bugs the core catches in itself. A peer can never cause one: peers name tasks by key and
//! every handler checks a task's state before it asks for a transition.

use crate::types::TaskStatus;
use rask_protocol::Key;
use std::sync::Arc;

/// A change the transition table does not allow. The change is not made, so the state stays
/// consistent; the server logs it (`Command::Error`), and with `CoreConfig::validate`
/// (tests) `SchedulerState::handle` panics on it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CoreError {
    /// No edge `start -> finish` in the table, directly or via `released`: Dask's
    /// `RuntimeError("Impossible transition from ...")` (`scheduler.py` `_transition`).
    #[error(
        "Impossible transition from {} to {} for {key}: stimulus_id={stimulus_id:?}",
        .start.as_str(),
        .finish.as_str()
    )]
    ImpossibleTransition {
        /// the task
        key: Key,
        /// its state
        start: TaskStatus,
        /// the state asked for
        finish: TaskStatus,
        /// the stimulus that asked
        stimulus_id: Arc<str>,
    },
    /// `released -> erred` for a task no failure is blamed on, so there is no exception to
    /// report (Dask's `_transition_released_erred` asserts `ts.exception_blame`).
    #[error("{key} cannot err without a failed task to blame: stimulus_id={stimulus_id:?}")]
    ErredWithoutBlame {
        /// the task
        key: Key,
        /// the stimulus that asked
        stimulus_id: Arc<str>,
    },
}
