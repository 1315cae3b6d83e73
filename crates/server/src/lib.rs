//! The tokio side of `rask scheduler`: the same shape as the core one level up.
//!
//! # Layout, in the order a message travels
//! - [`serve`]: binding, the scheduler file, the accept loop, shutdown.
//! - [`connection`]: an accepted connection: its requests, or it becomes a stream
//!   ([`streams`]: one reader and one batched writer per client or worker); [`session`]:
//!   what both hold.
//! - [`ops`]: **the op table**, every op of Dask's scheduler and what rask does with it.
//! - [`translate`]: wire values ⇄ the typed [`messages`]; the only module that knows the
//!   shape of Dask's messages.
//! - [`event`]: what reaches the state task ([`event::Event`]) and the jobs and timers it
//!   starts; [`outbox`]: the one way its effects leave.
//! - [`reactor`]: the state task, [`reactor::Scheduler`]: synchronous handlers over the core
//!   (`rask_core::SchedulerState`) and the [`extensions`] (shuffle, coordination, events).
//! - [`channels`]: the outbox of the running server (peers' writers, jobs, timers);
//!   [`jobs`]: the waits on workers, nannies and graph helpers, run outside the state task;
//!   [`graph`]: materializing a client's graph with a [`helper`] and [`ordering`].
//! - [`http`]: `/health` and a status page on the dashboard port.
//! - [`config`], [`dask_config`]: the flags and the user's Dask configuration;
//!   [`error`]: the errors of each boundary; [`logs`]: the recent log lines `get_logs`
//!   serves.

pub mod channels;
pub mod config;
pub mod connection;
pub mod dask_config;
pub mod error;
pub mod event;
pub mod extensions;
pub mod graph;
pub mod helper;
pub mod http;
pub mod jobs;
pub mod logs;
pub mod messages;
pub mod monitor;
pub mod ops;
pub mod ordering;
pub mod outbox;
pub mod plugin_host;
pub mod reactor;
pub mod serve;
pub mod session;
pub mod streams;
pub mod translate;

pub use config::ServerConfig;
pub use error::StartupError;
pub use helper::check_python;
pub use serve::{run, serve, Ports, Started};
