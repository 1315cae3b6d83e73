//! `rask zero-worker`: fake workers that finish every task at once, to measure a scheduler
//! (stock `dask scheduler` or `rask scheduler`) without any task execution in the way.

use anyhow::Result;
use clap::Args;
use rask_zero_worker::Config;
use std::path::PathBuf;

/// Flags of `rask zero-worker`.
#[derive(Args, Debug)]
pub struct ZeroWorkerArgs {
    /// Scheduler address, e.g. tcp://127.0.0.1:8786
    address: String,
    /// Number of fake workers (each has its own scheduler connection and listener)
    #[arg(long, default_value_t = 1)]
    nworkers: usize,
    /// Threads each fake worker reports to the scheduler
    #[arg(long, default_value_t = 1)]
    nthreads: u32,
    /// Write {"first_compute", "last_finished", "tasks", "span_s"} here: after 200 ms without
    /// tasks, and on exit
    #[arg(long)]
    report: Option<PathBuf>,
    /// IP the fake workers listen on and advertise [default: the local address that routes
    /// to the scheduler]
    #[arg(long)]
    host: Option<String>,
    /// Memory limit each fake worker reports, in bytes
    #[arg(long, default_value_t = 4 << 30)]
    memory_limit: u64,
    /// Worker names are PREFIX-<index> [default: zero-<pid>]
    #[arg(long)]
    name_prefix: Option<String>,
    /// Tokio worker threads of this process [default: one per CPU]
    #[arg(long)]
    runtime_threads: Option<usize>,
}

/// Runs `rask zero-worker`.
pub fn main(args: ZeroWorkerArgs) -> Result<()> {
    crate::process::raise_nofile();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.runtime_threads {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.enable_all().build()?;
    let config = Config {
        nworkers: args.nworkers,
        nthreads: args.nthreads,
        host: args.host,
        report: args.report,
        memory_limit: args.memory_limit,
        name_prefix: args.name_prefix,
        ..Config::new(args.address)
    };
    let report = rt.block_on(rask_zero_worker::run(
        config,
        crate::process::shutdown_signal(),
    ))?;
    match report.span_s() {
        Some(span) => tracing::info!(
            "{} tasks finished; scheduling phase {span:.3}s (first compute-task to last task-finished)",
            report.tasks
        ),
        None => tracing::info!("no tasks were computed"),
    }
    Ok(())
}
