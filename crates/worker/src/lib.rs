//! `rask worker`: starts stock `distributed.Worker` processes, restarts them, and answers
//! the scheduler's nanny calls for them.

use std::path::PathBuf;
use std::time::Duration;

/// Where the scheduler is.
#[derive(Debug, Clone)]
pub enum SchedulerSpec {
    /// `tcp://host:port` or `host:port`
    Address(String),
    /// a scheduler file to read the address from
    File(PathBuf),
}

/// `--nworkers`.
#[derive(Debug, Clone, Copy)]
pub enum NWorkers {
    /// a count; negative means CPU_COUNT + 1 + N
    Count(i64),
    /// Dask's split of the CPUs into processes and threads
    Auto,
}

/// Everything `rask worker` was asked to do.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub scheduler: SchedulerSpec,
    pub python: String,
    pub nworkers: NWorkers,
    /// 0: CPU_COUNT / nworkers
    pub nthreads: u32,
    pub memory_limit: String,
    pub name: Option<String>,
    pub death_timeout: Option<Duration>,
    pub host: Option<String>,
    pub interface: Option<String>,
    pub listen_address: Option<String>,
    pub worker_port: Option<String>,
    pub nanny_port: Option<String>,
    pub pid_file: Option<PathBuf>,
    /// passed to every `distributed.Worker(...)` as is
    pub worker_kwargs: serde_json::Map<String, serde_json::Value>,
}

/// Errors of `rask worker`.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("{0}")]
    Startup(String),
}

/// Runs until every worker process has closed or `shutdown` resolves.
pub async fn run(
    _config: WorkerConfig,
    _shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), WorkerError> {
    Err(WorkerError::Startup(
        "rask worker is not written yet".into(),
    ))
}
