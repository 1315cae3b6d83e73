//! `rask worker`: the flags of `dask worker --help` (plus `--nprocs`, which HPC guides and
//! dask-jobqueue scripts still use), validated into a `rask_worker::WorkerConfig`.

use anyhow::{bail, Context, Result};
use clap::Args;
use rask_worker::{NWorkers, SchedulerSpec, WorkerConfig};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::time::Duration;

/// Flags, named as `dask worker` names them.
#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// Scheduler address, e.g. tcp://10.0.0.5:8786 or 10.0.0.5:8786
    scheduler: Option<String>,
    /// Read the scheduler's address from this file (written by `rask scheduler
    /// --scheduler-file`); waits for it to appear
    #[arg(long, env = "DASK_SCHEDULER_FILE")]
    scheduler_file: Option<PathBuf>,
    /// Number of worker processes; negative: CPU_COUNT + 1 + N; 'auto': chosen from the
    /// CPU count as Dask does
    #[arg(long, alias = "nprocs", allow_hyphen_values = true)]
    nworkers: Option<String>,
    /// Threads per worker process [default: CPU_COUNT / nworkers]
    #[arg(long, default_value_t = 0)]
    nthreads: u32,
    /// Memory per worker process: bytes, '5GB', a fraction of the node's memory, 'auto'
    /// (the node's memory split across the worker processes) or 0 (no limit)
    #[arg(long, default_value = "auto")]
    memory_limit: String,
    /// A unique name for this worker; with --nworkers N the processes are NAME-0 … NAME-(N-1)
    #[arg(long)]
    name: Option<String>,
    /// Abstract resources, e.g. "GPU=2 MEM=10e9"
    #[arg(long)]
    resources: Option<String>,
    /// Directory for the workers' scratch files
    #[arg(long)]
    local_directory: Option<PathBuf>,
    /// Close each worker after this long, e.g. '1 hour'
    #[arg(long)]
    lifetime: Option<String>,
    /// Random amount by which to stagger lifetimes
    #[arg(long)]
    lifetime_stagger: Option<String>,
    /// Restart a worker that reached its lifetime
    #[arg(long, overrides_with = "no_lifetime_restart")]
    lifetime_restart: bool,
    /// Do not restart a worker that reached its lifetime [default]
    #[arg(long)]
    no_lifetime_restart: bool,
    /// Give up if the scheduler cannot be reached for this long, e.g. 60 or '2 minutes'
    #[arg(long)]
    death_timeout: Option<String>,
    /// Network interface like 'eth0' or 'ib0'
    #[arg(long)]
    interface: Option<String>,
    /// Serving host of the workers and their nannies [default: the local IP that reaches
    /// the scheduler]
    #[arg(long)]
    host: Option<String>,
    /// Protocol like tcp or tls
    #[arg(long)]
    protocol: Option<String>,
    /// Serving computation port (or START:END, split among the workers)
    #[arg(long)]
    worker_port: Option<String>,
    /// Serving nanny port (or START:END, split among the workers)
    #[arg(long)]
    nanny_port: Option<String>,
    /// The address the worker binds to (only with one worker)
    #[arg(long)]
    listen_address: Option<String>,
    /// The address the worker advertises to the scheduler (needs --listen-address)
    #[arg(long)]
    contact_address: Option<String>,
    /// Address of each worker's dashboard
    #[arg(long, default_value = ":0")]
    dashboard_address: String,
    /// Launch the workers' dashboards [default]
    #[arg(long, overrides_with = "no_dashboard")]
    dashboard: bool,
    /// Do not launch the workers' dashboards
    #[arg(long)]
    no_dashboard: bool,
    /// Supervise the workers (always: rask worker is the nanny)
    #[arg(long, overrides_with = "no_nanny")]
    nanny: bool,
    /// Not supported: rask worker always supervises its workers
    #[arg(long)]
    no_nanny: bool,
    /// Worker class; only the stock distributed.Worker (dask-mpi and dask-jobqueue pass it)
    #[arg(long)]
    worker_class: Option<String>,
    /// Module(s) to preload into each worker
    #[arg(long)]
    preload: Vec<String>,
    /// Not supported: rask worker runs no Python of its own to preload into
    #[arg(long)]
    preload_nanny: Vec<String>,
    /// File to write the process PID
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Not supported yet: TLS (use `dask worker` for a TLS cluster)
    #[arg(long)]
    tls_ca_file: Option<PathBuf>,
    /// Not supported yet: TLS
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// Not supported yet: TLS
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Python interpreter of the workers: it must import distributed
    #[arg(long, env = "RASK_PYTHON", default_value_t = crate::process::default_python())]
    python: String,
}

/// `--nworkers`: a count, a negative count relative to the CPUs, or `auto`.
fn nworkers(s: Option<&str>) -> Result<NWorkers> {
    match s {
        None => Ok(NWorkers::Count(1)),
        Some("auto") => Ok(NWorkers::Auto),
        Some(n) => n
            .trim()
            .parse()
            .map(NWorkers::Count)
            .with_context(|| format!("--nworkers {n:?}: expected a number or 'auto'")),
    }
}

/// `--resources "GPU=2 MEM=10e9"` (or comma-separated), as `dask worker` parses it.
fn resources(s: &str) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    for pair in s.replace(',', " ").split_whitespace() {
        let Some((k, v)) = pair.split_once('=') else {
            bail!("--resources {s:?}: expected NAME=AMOUNT pairs, got {pair:?}");
        };
        let amount: f64 = v
            .parse()
            .with_context(|| format!("--resources {s:?}: {v:?} is not a number"))?;
        out.insert(k.to_string(), json!(amount));
    }
    Ok(out)
}

/// A Dask duration flag (`60`, `'60s'`, `'1 hour'`), zero or more.
pub(crate) fn seconds(flag: &str, s: &str) -> Result<Duration> {
    let secs = rask_comm::fields::parse_timedelta(&s.into())
        .with_context(|| format!("{flag} {s:?}: not a duration like 60, '60s' or '1 hour'"))?;
    if !(secs.is_finite() && secs >= 0.0) {
        bail!("{flag} {s:?}: not a duration like 60, '60s' or '1 hour'");
    }
    Ok(Duration::from_secs_f64(secs))
}

fn config(args: WorkerArgs) -> Result<WorkerConfig> {
    if args.no_nanny {
        bail!("--no-nanny is not supported by rask worker: it is the nanny. Run `dask worker --no-nanny` for an unsupervised worker.");
    }
    if !args.preload_nanny.is_empty() {
        bail!("--preload-nanny is not supported by rask worker: there is no Python nanny to preload into. Use --preload (into the workers).");
    }
    if let Some(c) = &args.worker_class {
        if !matches!(
            c.as_str(),
            "distributed.Worker"
                | "distributed.worker.Worker"
                | "distributed.Nanny"
                | "Worker"
                | "Nanny"
        ) {
            bail!("--worker-class {c} is not supported by rask worker: it runs the stock distributed.Worker.");
        }
    }
    let tls = args
        .protocol
        .as_deref()
        .is_some_and(|p| p.starts_with("tls"))
        || args.tls_ca_file.is_some()
        || args.tls_cert.is_some()
        || args.tls_key.is_some();
    if tls {
        bail!("TLS is not supported by rask worker yet: its nanny ports speak plain TCP. Run `dask worker` with the --tls-* flags for a TLS cluster.");
    }
    if args.contact_address.is_some() && args.listen_address.is_none() {
        bail!("--contact-address needs --listen-address, as in dask worker");
    }
    let scheduler = match (args.scheduler, args.scheduler_file) {
        (Some(a), None) => SchedulerSpec::Address(a),
        (None, Some(f)) => SchedulerSpec::File(f),
        (Some(_), Some(_)) => bail!("give the scheduler address or --scheduler-file, not both"),
        (None, None) => bail!(
            "no scheduler: give its address like `rask worker tcp://10.0.0.5:8786` or --scheduler-file FILE"
        ),
    };
    let death_timeout = args
        .death_timeout
        .as_deref()
        .map(|s| seconds("--death-timeout", s))
        .transpose()?;
    // What every worker process gets as `distributed.Worker(**kwargs)`, beside the
    // per-process name, ports, memory limit and nanny address rask fills in.
    let mut kw = Map::new();
    if let Some(r) = &args.resources {
        kw.insert("resources".into(), Value::Object(resources(r)?));
    }
    if let Some(d) = &args.local_directory {
        kw.insert("local_directory".into(), json!(d));
    }
    for (key, value) in [
        ("lifetime", &args.lifetime),
        ("lifetime_stagger", &args.lifetime_stagger),
        ("interface", &args.interface),
        ("protocol", &args.protocol),
        ("contact_address", &args.contact_address),
    ] {
        if let Some(v) = value {
            kw.insert(key.into(), json!(v));
        }
    }
    kw.insert("lifetime_restart".into(), json!(args.lifetime_restart));
    kw.insert("dashboard".into(), json!(!args.no_dashboard));
    kw.insert("dashboard_address".into(), json!(args.dashboard_address));
    if let Some(t) = death_timeout {
        kw.insert("death_timeout".into(), json!(t.as_secs_f64()));
    }
    if !args.preload.is_empty() {
        kw.insert("preload".into(), json!(args.preload));
    }
    Ok(WorkerConfig {
        scheduler,
        python: args.python,
        nworkers: nworkers(args.nworkers.as_deref())?,
        nthreads: args.nthreads,
        memory_limit: args.memory_limit,
        name: args.name,
        death_timeout,
        host: args.host,
        interface: args.interface,
        listen_address: args.listen_address,
        worker_port: args.worker_port,
        nanny_port: args.nanny_port,
        pid_file: args.pid_file,
        worker_kwargs: kw,
    })
}

/// Runs `rask worker` until its workers are gone or a signal retires them.
pub fn main(args: WorkerArgs) -> Result<()> {
    let config = config(args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(rask_worker::run(config, crate::process::shutdown_signal()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_parse_like_dask_worker() {
        let r = resources("GPU=2 MEM=10e9").unwrap();
        assert_eq!(r["GPU"], json!(2.0));
        assert_eq!(r["MEM"], json!(1e10));
        assert_eq!(resources("A=1,B=2").unwrap().len(), 2);
        assert!(resources("GPU").is_err());
        assert!(resources("GPU=lots").is_err());
    }

    #[test]
    fn nworkers_accepts_counts_negatives_and_auto() {
        assert!(matches!(nworkers(None).unwrap(), NWorkers::Count(1)));
        assert!(matches!(nworkers(Some("-1")).unwrap(), NWorkers::Count(-1)));
        assert!(matches!(nworkers(Some("auto")).unwrap(), NWorkers::Auto));
        assert!(nworkers(Some("many")).is_err());
    }
}
