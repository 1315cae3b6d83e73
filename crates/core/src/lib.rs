//! The scheduler, as a pure state machine.
//!
//! # Layout
//! - [`SchedulerState`] owns every task, worker and client. [`SchedulerState::handle`] takes
//!   the current time and one [`Stimulus`] and returns the [`Command`]s to send. Nothing here
//!   reads a clock, touches a socket or spawns anything, so every decision is testable in
//!   microseconds and replayable.
//! - Task states, transitions and recommendations mirror `distributed/scheduler.py`
//!   (`_transition_<start>_<finish>`), so a reader can check one against the other.
//! - [`types`] has the ids and states every module names; [`state`] holds the records,
//!   [`transitions`] the state changes, [`handlers`] one function per stimulus, [`ingest`] a big graph taken in over several turns,
//!   [`decide`] the choice of worker, [`counters`] what Dask's metrics read (per task prefix, steals), [`queue`] root-task queuing over [`group`]s, [`steal`]
//!   work stealing, [`stimulus`] and [`command`] the vocabulary in and out, [`error`] the
//!   core's own bugs, [`validate`] the invariants checked after every stimulus in tests.
//! - A transition the table does not have is a bug in the core, never a peer's fault: it is
//!   not made, and is reported as [`Command::Error`] ([`CoreError`]) for the server to log;
//!   with `CoreConfig::validate` (tests) `handle` panics instead.
//!
//! Payloads that only Python understands (results' types, exceptions, `run_spec` pickles) are
//! carried as `rask_protocol::Value` / `Bytes` and never interpreted. The one exception the
//! scheduler raises itself, `KilledWorker`, is described by [`Exception::KilledWorker`] and
//! pickled by the server: the core builds no pickles.
#![warn(missing_docs)]

pub mod command;
pub mod counters;
pub mod decide;
pub mod error;
pub mod group;
pub mod handlers;
pub mod ingest;
pub mod queue;
pub mod state;
pub mod steal;
pub mod stimulus;
mod table;
pub mod transitions;
pub mod types;
pub mod validate;

pub use command::{Command, ComputeTask, ToClient, ToWorker, TransitionNote};
pub use counters::{Prefix, Prefixes, StealMetrics};
pub use error::CoreError;
pub use state::{CoreConfig, Rare, SchedulerState, Task, Worker};
pub use stimulus::{NewTask, Stimulus, WorkerSpec};
pub use transitions::FIRE_AND_FORGET;
pub use types::{ClientId, Exception, TaskId, TaskStatus, Transition, WorkerId, WorkerStatus};
