//! The tokio side of `rask scheduler`.
//!
//! # Layout
//! - [`runtime`]: the single task that owns `rask_core::SchedulerState` plus the peers'
//!   stream senders ([`runtime::Scheduler`]); everyone else talks to it through a
//!   [`runtime::Handle`] by sending closures. No locks around the state.
//! - [`connection`]: what an accepted connection does: RPC request/reply, or it becomes a
//!   client or worker stream ([`streams`]).
//! - [`rpc`]: the request/reply ops (`identity`, `gather`, `scatter`, `who_has`, ...).
//! - [`translate`]: wire messages ⇄ core stimuli and commands; the only module that knows
//!   both `rask_protocol` and `rask_core`.
//! - [`extensions`]: datasets, coordination primitives, events (Dask's scheduler extensions).
//! - [`helper`]: the pool of Python graph helpers that materialize `update-graph`.
//! - [`ordering`]: priorities for their graphs with `rask-order` (`dask.order` in Rust).
//! - [`http`]: `/health` and a status page on the dashboard port.
//! - [`serve`]: binding, the scheduler file, signals and shutdown.

pub mod admin;
pub mod config;
pub mod connection;
pub mod dask_config;
pub mod error;
pub mod extensions;
pub mod helper;
pub mod http;
pub mod ordering;
pub mod rpc;
pub mod runtime;
pub mod serve;
pub mod streams;
pub mod translate;

pub use config::ServerConfig;
pub use error::ServerError;
pub use serve::{check_python, run};
