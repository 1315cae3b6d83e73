//! `rask`: the command line. Flags become a validated `ServerConfig`; everything else lives
//! in the library crates.

mod process;
mod run;
mod scheduler;
mod ssh;
mod worker;
mod zero_worker;

use clap::{Parser, Subcommand};

/// The scheduler allocates and frees millions of small objects (messages, task records):
/// mimalloc does that faster than glibc's malloc and returns memory instead of keeping it
/// fragmented across per-thread arenas.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;

/// A Rust runtime for Dask: unmodified `distributed` clients and workers, a faster scheduler.
#[derive(Parser, Debug)]
#[command(name = "rask", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a scheduler, like `dask scheduler`.
    Scheduler(scheduler::SchedulerArgs),
    /// Start and supervise Dask worker processes, like `dask worker`.
    Worker(Box<worker::WorkerArgs>),
    /// Start a scheduler and workers on the hosts of a node file over SSH, like `dask ssh`.
    Ssh(ssh::SshArgs),
    /// Run a Python script on a local cluster that lives as long as the script.
    Run(run::RunArgs),
    /// Register N fake workers that finish every task at once (a scheduler benchmark).
    ZeroWorker(zero_worker::ZeroWorkerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // stderr, and the last lines in memory for `Client.get_scheduler_logs()` (the stock
    // scheduler's `DequeHandler`, rask_server::logs), both after the `RASK_LOG` filter.
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::EnvFilter::try_from_env("RASK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .with_target(false),
        )
        .with(rask_server::logs::recent().layer())
        .init();
    let result = match cli.command {
        Command::Scheduler(args) => scheduler::main(args),
        Command::Worker(args) => worker::main(*args),
        Command::Ssh(args) => ssh::main(args),
        Command::Run(args) => return run::main(args),
        Command::ZeroWorker(args) => zero_worker::main(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
