//! `rask zero-worker`: N fake Dask workers in one process, for measuring a scheduler.
//!
//! Each fake worker has its own scheduler stream, its own heartbeat connection and its own
//! TCP listener, and speaks the `distributed` 2026.8.0 worker protocol as a stock worker does
//! (PROTOCOL.md §2.2, §2.3, §3(c), §3(d)), except that every `compute-task` is answered at
//! once with a `task-finished` for a small `int`, and `get_data` returns `0` for every key.
//! With no task execution in the way, the time between the first `compute-task` and the last
//! `task-finished` (the "scheduling phase", see [`Report`]) is the scheduler's own cost, so
//! `dask scheduler` and `rask scheduler` can be compared on the same footing.
//!
//! # Layout
//! - [`messages`]: the messages a stock worker writes, built field for field.
//! - [`state`]: the reaction to each scheduler → worker stream message (pure).
//! - `worker`: one worker's connections (stream, heartbeat, listener).
//! - [`stats`]: the shared counters and the JSON report.
#![warn(missing_docs)]

pub mod error;
pub mod messages;
pub mod state;
pub mod stats;
mod worker;

pub use error::ZeroWorkerError;
pub use stats::{Report, Stats};

use rask_comm::{Comm, CommConfig};
use rask_protocol::Value;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::timeout;
use worker::{Ended, Shared};

/// How long the first connection to the scheduler may take before we give up.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Registrations in flight at once.
const REGISTER_CONCURRENCY: usize = 64;
/// After a signal, how long the workers get to say goodbye.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(15);
/// The report is rewritten once no task has arrived or finished for this long.
pub const IDLE_REPORT_AFTER: Duration = Duration::from_millis(200);

/// What to start.
#[derive(Clone, Debug)]
pub struct Config {
    /// `tcp://host:port` of the scheduler
    pub scheduler: String,
    /// how many fake workers
    pub nworkers: usize,
    /// `nthreads` each worker reports (the scheduler fills that many slots per worker)
    pub nthreads: u32,
    /// IP to listen on and advertise; `None` = the local address that routes to the scheduler
    pub host: Option<String>,
    /// where to write the JSON report
    pub report: Option<PathBuf>,
    /// `memory_limit` each worker reports, in bytes
    pub memory_limit: u64,
    /// worker names are `{prefix}-{index}`; `None` = `zero-{pid}`
    pub name_prefix: Option<String>,
}

impl Config {
    /// Defaults for everything but the scheduler address.
    pub fn new(scheduler: impl Into<String>) -> Config {
        Config {
            scheduler: scheduler.into(),
            nworkers: 1,
            nthreads: 1,
            host: None,
            report: None,
            memory_limit: 4 << 30,
            name_prefix: None,
        }
    }
}

/// Checks that the scheduler answers and asks for its `versions` (node.py:31), which every
/// fake worker then reports as its own: a stock worker in the scheduler's environment would
/// report the same, and any difference becomes a `VersionMismatchWarning` on every client.
async fn probe(address: &str) -> Result<Value, ZeroWorkerError> {
    let mut comm = Comm::connect(address, PROBE_TIMEOUT, &CommConfig::default())
        .await
        .map_err(|error| ZeroWorkerError::Connect {
            address: address.to_string(),
            error,
        })?;
    let ask = Value::map([
        ("op", Value::from("versions")),
        ("reply", Value::Bool(true)),
    ]);
    let versions = match timeout(PROBE_TIMEOUT, comm.request(&ask)).await {
        Ok(Ok(v)) if v.get("packages").is_some() => v,
        other => {
            tracing::debug!("no versions from the scheduler ({other:?}); using defaults");
            messages::default_versions()
        }
    };
    comm.close().await;
    Ok(versions)
}

/// Rewrites the report whenever the workers have been idle for [`IDLE_REPORT_AFTER`] after
/// finishing something new, so a driver can read it while the process keeps running.
async fn report_loop(shared: Arc<Shared>, path: PathBuf, nworkers: usize) {
    let mut written: Option<Report> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        let r = shared.stats.report();
        if r.tasks > 0 && written != Some(r) && shared.stats.idle_for() >= IDLE_REPORT_AFTER {
            if let Err(e) = r.write(&path, nworkers) {
                tracing::warn!("{e}");
            }
            // also after a failure: one warning per change, not one per tick
            written = Some(r);
        }
    }
}

/// How the workers ended, for the log.
#[derive(Default)]
struct Endings {
    closed: usize,
    disconnected: usize,
    failed: usize,
}

impl Endings {
    fn count(&mut self, r: Result<Option<Ended>, tokio::task::JoinError>) {
        match r {
            Ok(Some(Ended::Closed(_))) => self.closed += 1,
            Ok(Some(Ended::Disconnected)) => self.disconnected += 1,
            Ok(Some(Ended::Failed(e))) => {
                tracing::error!("worker stopped: {e}");
                self.failed += 1;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!("worker task failed: {e}");
                self.failed += 1;
            }
        }
    }
}

async fn drain(workers: &mut JoinSet<Option<Ended>>, endings: &mut Endings) {
    while let Some(r) = workers.join_next().await {
        endings.count(r);
    }
}

/// Starts `config.nworkers` fake workers and runs them until `shutdown` completes (then they
/// close politely) or the scheduler has closed every one of them. Returns the final report,
/// which is also written to `config.report`.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<Report, ZeroWorkerError> {
    if config.nworkers == 0 || config.nthreads == 0 {
        return Err(ZeroWorkerError::Config(
            "--nworkers and --nthreads must be at least 1".into(),
        ));
    }
    let versions = probe(&config.scheduler).await?;
    // Listening on the address that routes to the scheduler makes the fake workers
    // reachable from it without configuration.
    let host = config
        .host
        .clone()
        .unwrap_or_else(|| rask_comm::net::route_ip(&config.scheduler).to_string());
    let shared = Arc::new(Shared {
        scheduler: config.scheduler.clone(),
        versions,
        stats: Stats::default(),
        host,
        nthreads: config.nthreads,
        memory_limit: config.memory_limit,
        name_prefix: config
            .name_prefix
            .clone()
            .unwrap_or_else(|| format!("zero-{}", std::process::id())),
        registering: Semaphore::new(REGISTER_CONCURRENCY),
        warned: AtomicBool::new(false),
    });
    let n = config.nworkers;
    let reporter = config
        .report
        .clone()
        .map(|path| tokio::spawn(report_loop(shared.clone(), path, n)));

    let started = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (reg_tx, mut reg_rx) = mpsc::unbounded_channel();
    let mut workers = JoinSet::new();
    for index in 0..n {
        let shared = shared.clone();
        let mut stop = stop_rx.clone();
        let reg_tx = reg_tx.clone();
        workers.spawn(async move {
            let registered = tokio::select! {
                r = worker::register(&shared, index) => r,
                _ = stop.wait_for(|stopping| *stopping) => return None,
            };
            match registered {
                Ok(reg) => {
                    let _ = reg_tx.send(Ok(reg.address().to_string()));
                    Some(worker::serve(shared, reg, stop).await)
                }
                Err(e) => {
                    let _ = reg_tx.send(Err(e));
                    None
                }
            }
        });
    }
    drop(reg_tx);

    let shutdown = std::pin::pin!(shutdown);
    let mut shutdown = shutdown;
    let mut registered = 0;
    let mut failure = None;
    let mut signalled = false;
    while registered < n {
        tokio::select! {
            r = reg_rx.recv() => match r {
                Some(Ok(address)) => {
                    tracing::debug!("registered {address}");
                    registered += 1;
                }
                Some(Err(e)) => {
                    failure = Some(e);
                    break;
                }
                None => break,
            },
            _ = &mut shutdown => {
                signalled = true;
                break;
            }
        }
    }
    let mut endings = Endings::default();
    if failure.is_none() && !signalled {
        tracing::info!(
            "{n} zero workers ({} threads each) registered with {} in {:.2}s",
            config.nthreads,
            config.scheduler,
            started.elapsed().as_secs_f64()
        );
        tokio::select! {
            _ = &mut shutdown => signalled = true,
            _ = drain(&mut workers, &mut endings) => {
                tracing::info!("the scheduler closed every worker; exiting");
            }
        }
    }
    if signalled {
        tracing::info!("closing {registered} zero workers");
    }
    let _ = stop_tx.send(true);
    if timeout(CLOSE_TIMEOUT, drain(&mut workers, &mut endings))
        .await
        .is_err()
    {
        tracing::warn!("some workers did not close within {CLOSE_TIMEOUT:?}");
        workers.abort_all();
    }
    if let Some(task) = reporter {
        task.abort();
    }
    tracing::debug!(
        closed = endings.closed,
        disconnected = endings.disconnected,
        failed = endings.failed,
        "workers ended"
    );
    let report = shared.stats.report();
    if let Some(path) = &config.report {
        report.write(path, n)?;
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unreachable_scheduler_is_a_connect_error_naming_it() {
        // a port nothing listens on: bind one, then free it
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let addr = format!("tcp://127.0.0.1:{port}");
        let err = run(Config::new(addr.clone()), std::future::pending())
            .await
            .expect_err("nothing listens there");
        assert!(matches!(err, ZeroWorkerError::Connect { .. }), "{err:?}");
        assert!(err.to_string().contains(&addr), "{err}");
    }
}
