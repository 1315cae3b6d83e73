//! `rask worker`: starts stock `distributed.Worker` processes, restarts them, and answers
//! the scheduler's nanny calls for them.
//!
//! Where `dask worker` runs one Python `Nanny` per worker process, `rask worker` is one
//! process that is the nanny of all of them: per worker it listens on a nanny port, and
//! the worker registers with that address, so the scheduler's `kill`/`restart` (and with
//! them `Client.restart()`) reach it. The Python it runs is the stock worker, started by
//! `python/rask_worker_launcher.py`.

pub mod launcher;
pub mod slot;

use serde_json::{json, Value as Json};
use slot::{Command, Shared, Slot};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

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

/// Errors of `rask worker`: each says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// no usable Python with `distributed`
    #[error("no usable Python for the workers: {0}")]
    Python(String),
    /// a flag or Dask setting that does not work
    #[error("{0}")]
    Config(String),
    /// the scheduler (or its file) could not be reached in time
    #[error("{0}")]
    Scheduler(String),
    /// a port could not be bound
    #[error("{0}")]
    Listen(String),
    /// worker processes that could not start
    #[error("{}", .0.join("; "))]
    Failed(Vec<String>),
}

/// How often a wait for the scheduler says it is still waiting.
const WAIT_NOTE: Duration = Duration::from_secs(10);

/// Runs until every worker process has closed (the scheduler closed them, or they retired)
/// or `shutdown` resolves, which retires them first.
pub async fn run(
    config: WorkerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), WorkerError> {
    let probe = launcher::probe(&config).await?;
    tracing::info!(
        "worker Python: {} (distributed {})",
        probe.python,
        probe.distributed
    );
    if !rask_protocol::is_tested_distributed(&probe.distributed) {
        tracing::warn!(
            "distributed {} found; rask is tested with {}",
            probe.distributed,
            rask_protocol::tested_distributed_releases()
        );
    }
    let n = probe.nworkers;
    if n > 1 && config.listen_address.is_some() {
        return Err(WorkerError::Config(
            "--listen-address works with one worker only, as in dask worker".into(),
        ));
    }
    let worker_ports = ports("--worker-port", config.worker_port.as_deref(), n)?;
    let nanny_ports = ports("--nanny-port", config.nanny_port.as_deref(), n)?;
    tokio::pin!(shutdown);
    let scheduler = tokio::select! {
        a = scheduler_address(&config) => a?,
        _ = &mut shutdown => return Ok(()),
    };
    let ip = nanny_ip(&config, &scheduler).await?;
    let mut listeners = Vec::with_capacity(n);
    for (i, port) in nanny_ports.iter().enumerate() {
        let l = TcpListener::bind((ip, port.unwrap_or(0)))
            .await
            .map_err(|e| {
                WorkerError::Listen(format!(
                    "cannot listen on {ip}:{} for worker {i}'s nanny: {e}{}",
                    port.unwrap_or(0),
                    if port.is_some() {
                        " (is another worker using --nanny-port?)"
                    } else {
                        ""
                    }
                ))
            })?;
        listeners.push(l);
    }
    if let Some(f) = &config.pid_file {
        std::fs::write(f, std::process::id().to_string())
            .map_err(|e| WorkerError::Config(format!("cannot write --pid-file {f:?}: {e}")))?;
    }
    tracing::info!(
        "starting {n} worker process{} with {} thread{} and {} of memory each, for the scheduler at {scheduler}",
        if n == 1 { "" } else { "es" },
        probe.nthreads,
        if probe.nthreads == 1 { "" } else { "s" },
        match probe.memory_limit {
            0 => "no limit".to_string(),
            b => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        }
    );
    let shared = Arc::new(Shared {
        probe,
        scheduler: scheduler.clone(),
    });
    let mut slots = JoinSet::new();
    let mut senders = Vec::with_capacity(n);
    for (i, listener) in listeners.into_iter().enumerate() {
        let nanny = format!(
            "tcp://{}",
            listener
                .local_addr()
                .map_err(|e| WorkerError::Listen(e.to_string()))?
        );
        let kwargs = worker_kwargs(&config, &shared, i, &nanny, worker_ports[i]);
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(slot::serve(listener, tx.clone()));
        senders.push(tx);
        let slot = Slot::new(i, shared.clone(), nanny, kwargs);
        slots.spawn(slot.run(rx));
    }
    let mut errors = Vec::new();
    let mut retiring = false;
    loop {
        tokio::select! {
            done = slots.join_next() => match done {
                None => break,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => {
                    tracing::error!("{e}");
                    errors.push(e);
                }
                Some(Err(e)) => errors.push(format!("a worker's supervisor failed: {e}")),
            },
            _ = &mut shutdown, if !retiring => {
                retiring = true;
                tracing::info!("retiring the workers (their results move to other workers first)");
                for tx in &senders {
                    let _ = tx.send(Command::Retire);
                }
            }
        }
    }
    if let Some(f) = &config.pid_file {
        let _ = std::fs::remove_file(f);
    }
    if errors.is_empty() {
        tracing::info!("all workers closed");
        Ok(())
    } else {
        Err(WorkerError::Failed(errors))
    }
}

/// `Worker(**kwargs)` for worker `i`.
fn worker_kwargs(
    config: &WorkerConfig,
    shared: &Shared,
    i: usize,
    nanny: &str,
    port: Option<u16>,
) -> Json {
    let mut kw = config.worker_kwargs.clone();
    let n = shared.probe.nworkers;
    // As `dask worker`: NAME-i for several processes, and a name that is a number is one.
    let name = config.name.as_deref().filter(|s| !s.is_empty()).map(|s| {
        if n == 1 {
            s.parse::<i64>().map_or_else(|_| json!(s), |v| json!(v))
        } else {
            json!(format!("{s}-{i}"))
        }
    });
    kw.insert("scheduler_ip".into(), json!(shared.scheduler));
    kw.insert("nthreads".into(), json!(shared.probe.nthreads));
    kw.insert("memory_limit".into(), json!(shared.probe.memory_limit));
    kw.insert("nanny".into(), json!(nanny));
    if let Some(name) = name {
        kw.insert("name".into(), name);
    }
    if let Some(h) = &config.host {
        kw.insert("host".into(), json!(h));
    }
    if let Some(p) = port {
        kw.insert("port".into(), json!(p));
    }
    if let Some(l) = &config.listen_address {
        kw.insert("listen_address".into(), json!(l));
    }
    Json::Object(kw)
}

/// `--worker-port`/`--nanny-port`: one port per worker from `P` (one worker) or `A:B`.
fn ports(flag: &str, spec: Option<&str>, n: usize) -> Result<Vec<Option<u16>>, WorkerError> {
    let bad = |why: &str| WorkerError::Config(format!("{flag} {}: {why}", spec.unwrap_or("")));
    let Some(spec) = spec else {
        return Ok(vec![None; n]);
    };
    let parse = |s: &str| {
        s.trim()
            .parse::<u16>()
            .map_err(|_| bad("not a port number"))
    };
    let (start, end) = match spec.split_once(':') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let p = parse(spec)?;
            if n > 1 && p != 0 {
                return Err(bad(
                    "one port cannot serve several workers; give a range START:END",
                ));
            }
            (p, p)
        }
    };
    if start == 0 {
        return Ok(vec![None; n]);
    }
    if end < start || usize::from(end - start) + 1 < n {
        return Err(bad(&format!("the range must hold at least {n} ports")));
    }
    Ok((0..n).map(|i| Some(start + i as u16)).collect())
}

/// The scheduler's address: given, or read from the scheduler file once it appears; then
/// waits until it accepts connections (a worker would wait silently; say why instead).
async fn scheduler_address(config: &WorkerConfig) -> Result<String, WorkerError> {
    let began = Instant::now();
    let give_up = |what: String| -> Result<(), WorkerError> {
        match config.death_timeout {
            Some(t) if began.elapsed() >= t => Err(WorkerError::Scheduler(format!(
                "{what} within --death-timeout {}s; giving up",
                t.as_secs_f64()
            ))),
            _ => Ok(()),
        }
    };
    let address = match &config.scheduler {
        SchedulerSpec::Address(a) => normalize(a),
        SchedulerSpec::File(f) => {
            let mut noted = Instant::now();
            loop {
                match read_scheduler_file(f) {
                    Ok(a) => break normalize(&a),
                    Err(why) => {
                        give_up(format!(
                            "the scheduler file {} did not appear ({why})",
                            f.display()
                        ))?;
                        if noted.elapsed() >= WAIT_NOTE {
                            noted = Instant::now();
                            tracing::warn!(
                                "waiting for the scheduler file {} ({why}): is the scheduler running, \
                                 and is this path on a filesystem this node shares with it?",
                                f.display()
                            );
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
    };
    let hostport = address
        .split_once("://")
        .map_or(address.as_str(), |(_, r)| r)
        .to_string();
    let mut noted = began;
    loop {
        let e = match tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect(&hostport),
        )
        .await
        {
            Ok(Ok(_)) => return Ok(address),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer within 5 s".to_string(),
        };
        let what = format!("cannot reach the scheduler at {address} from this node: {e}");
        give_up(what.clone())?;
        if noted.elapsed() >= WAIT_NOTE || noted == began {
            noted = Instant::now();
            tracing::warn!(
                "{what}; still trying (is it running, and is its address reachable from here? \
                 --death-timeout makes rask worker give up)"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn read_scheduler_file(f: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(f).map_err(|e| e.to_string())?;
    let v: Json = serde_json::from_str(&text).map_err(|e| format!("not JSON yet: {e}"))?;
    v.get("address")
        .and_then(Json::as_str)
        .map(str::to_string)
        .ok_or_else(|| "no \"address\" in it".to_string())
}

/// `host:port` and `host` become `tcp://host:port` (Dask's default port is 8786).
fn normalize(a: &str) -> String {
    let a = a.trim().trim_end_matches('/');
    let (scheme, rest) = a.split_once("://").unwrap_or(("tcp", a));
    let has_port = match rest.rsplit_once(':') {
        Some((h, p)) => p.parse::<u16>().is_ok() && (!h.contains(':') || h.ends_with(']')),
        None => false,
    };
    if has_port {
        format!("{scheme}://{rest}")
    } else {
        format!("{scheme}://{rest}:8786")
    }
}

/// The IP the nannies listen on and advertise: --host, --listen-address's host,
/// --interface's IPv4 address, or the local address that routes to the scheduler (what a
/// Dask nanny picks).
async fn nanny_ip(config: &WorkerConfig, scheduler: &str) -> Result<IpAddr, WorkerError> {
    let host_of = |s: &str| {
        let rest = s.split_once("://").map_or(s, |(_, r)| r);
        let host = match rest.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => h,
            _ => rest,
        };
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string()
    };
    let explicit = config
        .host
        .as_deref()
        .or(config.listen_address.as_deref())
        .map(host_of);
    if let Some(h) = explicit {
        return resolve(&h).await;
    }
    if let Some(name) = &config.interface {
        return rask_comm::net::interface_ip(name)
            .map_err(|e| WorkerError::Config(format!("--interface: {e}")));
    }
    Ok(rask_comm::net::route_ip(scheduler))
}

async fn resolve(host: &str) -> Result<IpAddr, WorkerError> {
    if let Ok(ip) = host.parse() {
        return Ok(ip);
    }
    tokio::net::lookup_host((host, 0))
        .await
        .ok()
        .and_then(|mut a| a.next())
        .map(|a| a.ip())
        .ok_or_else(|| WorkerError::Config(format!("cannot resolve the host name {host:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_get_a_scheme_and_port() {
        assert_eq!(normalize("10.0.0.5:8786"), "tcp://10.0.0.5:8786");
        assert_eq!(normalize("node1"), "tcp://node1:8786");
        assert_eq!(normalize("tls://node1:9000/"), "tls://node1:9000");
        assert_eq!(normalize("[::1]:1234"), "tcp://[::1]:1234");
    }

    #[test]
    fn port_ranges_are_split_among_workers() {
        assert_eq!(ports("--p", None, 2).unwrap(), vec![None, None]);
        assert_eq!(ports("--p", Some("9000"), 1).unwrap(), vec![Some(9000)]);
        assert!(ports("--p", Some("9000"), 2).is_err());
        assert_eq!(
            ports("--p", Some("9000:9010"), 2).unwrap(),
            vec![Some(9000), Some(9001)]
        );
        assert!(ports("--p", Some("9000:9000"), 2).is_err());
        assert!(ports("--p", Some("x"), 1).is_err());
    }
}
