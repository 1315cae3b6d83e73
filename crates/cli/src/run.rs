//! `rask run [flags] script.py [args]`: a local cluster (`rask scheduler` + `rask worker`)
//! that lives exactly as long as the script, which finds it through
//! `DASK_SCHEDULER_ADDRESS` (a plain `Client()` connects). The exit code is the script's.
//!
//! Process layout: the scheduler and the workers each run in their own process group, so
//! a Ctrl-C in the terminal reaches the script (it shares rask run's group) but not the
//! cluster; rask run decides when and how the cluster stops, after the script is gone.

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use rask_comm::{Comm, CommConfig};
use rask_protocol::Value;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Scheduler file + every worker registered; generous because each worker process imports
/// dask and distributed (seconds on a busy machine).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How often startup looks at the scheduler file and the registered workers.
const POLL: Duration = Duration::from_millis(100);
/// After SIGTERM the scheduler tells the workers to close; give both this long to exit.
const CLOSE_GRACE: Duration = Duration::from_secs(20);
/// SIGTERM to a leftover process group, then SIGKILL after this long.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// Lines of a cluster process's output kept to explain a failed startup.
const TAIL_LINES: usize = 40;
/// Exit code for bad usage (a missing script), as clap uses.
const USAGE_EXIT: u8 = 2;

/// Flags of `rask run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Number of worker processes
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    nworkers: u32,
    /// Threads per worker process [default: CPU_COUNT / nworkers, at least 1]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    nthreads: Option<u32>,
    /// Memory per worker process: bytes, '5GB', a fraction of the node's memory, 'auto'
    /// (the node's memory split across the workers) or 0 (no limit)
    #[arg(long, default_value = "auto")]
    memory_limit: String,
    /// Python interpreter for the script, the scheduler's graph helpers and the workers:
    /// it must import distributed
    #[arg(long, env = "RASK_PYTHON", default_value_t = crate::process::default_python())]
    python: String,
    /// Scheduler port; 0 picks a free one
    #[arg(long, default_value_t = 0)]
    scheduler_port: u16,
    /// The Python script to run
    script: PathBuf,
    /// Arguments for the script (everything after the script is passed on as is)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<OsString>,
}

/// Runs `rask run`; the exit code is the script's.
pub fn main(args: RunArgs) -> ExitCode {
    // Checked before anything starts: a typo should not cost a cluster startup.
    if !args.script.is_file() {
        eprintln!(
            "rask: error: script {:?} not found (rask run SCRIPT.py [ARGS])",
            args.script
        );
        return ExitCode::from(USAGE_EXIT);
    }
    crate::process::raise_nofile();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rask: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(run(args));
    // The output-forwarding tasks may still wait on pipes held by orphans: do not wait for them.
    rt.shutdown_timeout(Duration::from_secs(1));
    ExitCode::from(code)
}

/// Signals rask run handles itself (registering them replaces the default "terminate").
struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    fn new() -> Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            hup: signal(SignalKind::hangup()).context("cannot handle SIGHUP")?,
        })
    }

    /// The next SIGINT, SIGTERM or SIGHUP, as its number.
    async fn next(&mut self) -> i32 {
        tokio::select! {
            _ = self.int.recv() => SIGINT,
            _ = self.term.recv() => SIGTERM,
            _ = self.hup.recv() => SIGHUP,
        }
    }
}

const SIGHUP: i32 = 1;
const SIGINT: i32 = 2;
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

/// The temporary directory holding the scheduler file; removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir> {
        let base = std::env::temp_dir();
        // pid + time: unique without a dependency, and never an existing directory
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = base.join(format!("rask-run-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir)
            .with_context(|| format!("cannot create a temporary directory in {base:?}"))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!("could not remove {:?}: {e}", self.0);
        }
    }
}

/// A cluster process (scheduler or workers) in its own process group, its output forwarded
/// to rask run's stderr with a `[name]` prefix and its last lines kept.
struct ClusterProc {
    name: &'static str,
    child: Child,
    /// pid = process group id (started with `process_group(0)`)
    pid: u32,
    tail: Arc<Mutex<VecDeque<String>>>,
    status: Option<ExitStatus>,
}

impl ClusterProc {
    fn spawn(name: &'static str, mut cmd: Command) -> Result<ClusterProc> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            // rask run stops the cluster itself; kill_on_drop covers an early return only
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start the {name}"))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("the {name} exited at once"))?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward(name, out, tail.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward(name, err, tail.clone()));
        }
        Ok(ClusterProc {
            name,
            child,
            pid,
            tail,
            status: None,
        })
    }

    /// Its exit status, if it has exited (reaped once, remembered afterwards).
    fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            match self.child.try_wait() {
                Ok(s) => self.status = s,
                Err(e) => tracing::debug!("cannot poll the {}: {e}", self.name),
            }
        }
        self.status
    }

    /// Waits up to `limit` for it to exit.
    async fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Ok(s)) = tokio::time::timeout(limit, self.child.wait()).await {
                self.status = Some(s);
            }
        }
        self.status
    }

    /// What it printed last, for an error message: its own `rask: error:` line if there is
    /// one (it says what went wrong), else the last few lines.
    fn explain(&self) -> String {
        let tail = self.tail.lock().map(|t| t.clone()).unwrap_or_default();
        if let Some(line) = tail.iter().rev().find(|l| l.contains("rask: error:")) {
            return line
                .trim()
                .trim_start_matches("rask: error:")
                .trim()
                .to_string();
        }
        let last: Vec<&str> = tail
            .iter()
            .rev()
            .filter(|l| !l.trim().is_empty())
            .take(5)
            .map(String::as_str)
            .collect();
        if last.is_empty() {
            "(it printed nothing)".into()
        } else {
            last.into_iter().rev().collect::<Vec<_>>().join("\n")
        }
    }
}

/// Copies a child's output to stderr line by line, prefixed, keeping the last lines.
async fn forward(
    name: &'static str,
    stream: impl AsyncRead + Unpin,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                // output is not necessarily UTF-8 (a worker can print anything)
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\n', '\r']);
                eprintln!("[{name}] {line}");
                if let Ok(mut t) = tail.lock() {
                    if t.len() == TAIL_LINES {
                        t.pop_front();
                    }
                    t.push_back(line.to_string());
                }
            }
        }
    }
}

/// Sends `sig` (0: none, only a check) to a process (`pid`) or, negative, a process
/// group; whether it reached any process. A process that is gone already is not an error.
fn send_signal(target: i64, sig: i32) -> bool {
    use nix::sys::signal::{kill, Signal};
    let Ok(pid) = i32::try_from(target) else {
        return false;
    };
    let signal = match sig {
        0 => None,
        n => match Signal::try_from(n) {
            Ok(s) => Some(s),
            Err(_) => return false,
        },
    };
    kill(nix::unistd::Pid::from_raw(pid), signal).is_ok()
}

fn status_text(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "unknown status".into(),
    }
}

/// The shell's convention: the exit code, or 128 + the signal that killed it.
fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(c), _) => u8::try_from(c).unwrap_or(1),
        (None, Some(s)) => u8::try_from(128 + s).unwrap_or(1),
        _ => 1,
    }
}

/// Settings for the cluster processes' own logs: quiet unless the user asked (as Dask's
/// LocalCluster silences its workers), errors and warnings still shown.
fn quiet(cmd: &mut Command) {
    if std::env::var_os("RASK_LOG").is_none() {
        cmd.env("RASK_LOG", "warn");
    }
}

/// Starts the cluster, runs the script, stops the cluster; returns the exit code.
async fn run(args: RunArgs) -> u8 {
    let mut signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rask: error: {e:#}");
            return 1;
        }
    };
    let tmp = match TempDir::new() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("rask: error: {e:#}");
            return 1;
        }
    };
    let scheduler_file = tmp.0.join("scheduler.json");
    let mut cluster = Vec::new();
    let code = match start(&args, &scheduler_file, &mut cluster, &mut signals).await {
        Ok(address) => {
            let code = run_script(&args, &address, &mut signals, &mut cluster).await;
            stop(&mut cluster).await;
            code
        }
        Err(startup) => {
            // Nothing to close gracefully yet (no work, maybe no scheduler to tell the
            // workers): terminate every process group at once.
            abort(&mut cluster).await;
            match startup {
                Startup::Signal(sig) => u8::try_from(128 + sig).unwrap_or(1),
                Startup::Failed(e) => {
                    eprintln!("rask: error: {e:#}");
                    1
                }
            }
        }
    };
    drop(tmp);
    code
}

enum Startup {
    /// rask run got a signal during startup
    Signal(i32),
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Startup {
    fn from(e: anyhow::Error) -> Startup {
        Startup::Failed(e)
    }
}

/// Starts the scheduler and the workers and waits until every worker is registered;
/// returns the scheduler's address. Started processes are pushed onto `cluster` at once so
/// the caller stops them whatever happens here.
async fn start(
    args: &RunArgs,
    scheduler_file: &Path,
    cluster: &mut Vec<ClusterProc>,
    signals: &mut Signals,
) -> Result<String, Startup> {
    let exe = std::env::current_exe().context("cannot find the rask executable")?;
    let nthreads = args.nthreads.unwrap_or_else(|| {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        (cpus / args.nworkers).max(1)
    });

    let mut scheduler = Command::new(&exe);
    scheduler
        .arg("scheduler")
        .args(["--host", "127.0.0.1", "--port"])
        .arg(args.scheduler_port.to_string())
        .arg("--scheduler-file")
        .arg(scheduler_file)
        // any free port: a taken 8787 (another Dask) must not stop a throwaway cluster
        .args(["--dashboard-address", ":0"])
        .arg("--python")
        .arg(&args.python);
    quiet(&mut scheduler);
    cluster.push(ClusterProc::spawn("scheduler", scheduler)?);

    // Started together with the scheduler: it waits for the scheduler file, and both
    // spend their first second importing Python.
    let mut worker = Command::new(&exe);
    worker
        .arg("worker")
        .arg("--scheduler-file")
        .arg(scheduler_file)
        .arg("--nworkers")
        .arg(args.nworkers.to_string())
        .arg("--nthreads")
        .arg(nthreads.to_string())
        .arg("--memory-limit")
        .arg(&args.memory_limit)
        // scratch space (spilled data, shuffle files) goes away with the cluster
        .arg("--local-directory")
        .arg(scheduler_file.with_file_name("workers"))
        .arg("--python")
        .arg(&args.python);
    quiet(&mut worker);
    if std::env::var_os("DASK_LOGGING__DISTRIBUTED").is_none() {
        worker.env("DASK_LOGGING__DISTRIBUTED", "warning");
    }
    cluster.push(ClusterProc::spawn("worker", worker)?);

    let wait = wait_ready(scheduler_file, args.nworkers as usize, cluster);
    tokio::select! {
        r = wait => Ok(r?),
        sig = signals.next() => {
            eprintln!("rask run: interrupted during startup; stopping the cluster");
            Err(Startup::Signal(sig))
        }
    }
}

/// A cluster process that exited during startup is an error that says what it printed.
fn check_alive(cluster: &mut [ClusterProc]) -> Result<()> {
    for p in cluster.iter_mut() {
        if let Some(status) = p.exited() {
            let said = p.explain();
            let sep = if said.contains('\n') { "\n" } else { " " };
            bail!(
                "the {} exited during startup ({}):{sep}{said}",
                p.name,
                status_text(status),
            );
        }
    }
    Ok(())
}

async fn wait_ready(
    scheduler_file: &Path,
    nworkers: usize,
    cluster: &mut [ClusterProc],
) -> Result<String> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let address = loop {
        // give exited processes a moment to flush their last lines into the tail
        check_alive_settled(cluster).await?;
        if let Some(a) = read_address(scheduler_file) {
            break a;
        }
        if Instant::now() > deadline {
            bail!(
                "the scheduler did not write {scheduler_file:?} within {}s:\n{}",
                STARTUP_TIMEOUT.as_secs(),
                cluster[0].explain()
            );
        }
        tokio::time::sleep(POLL).await;
    };
    let mut comm: Option<Comm> = None;
    let mut seen = 0;
    loop {
        check_alive_settled(cluster).await?;
        if comm.is_none() {
            comm = Comm::connect(&address, POLL * 10, &CommConfig::default())
                .await
                .ok();
        }
        if let Some(c) = comm.as_mut() {
            match count_workers(c).await {
                Ok(n) if n >= nworkers => break,
                Ok(n) => seen = n,
                Err(e) => {
                    tracing::debug!("identity from {address}: {e:#}");
                    comm = None;
                }
            }
        }
        if Instant::now() > deadline {
            bail!(
                "{nworkers} workers did not register with the scheduler within {}s \
                 ({seen} did); the workers said:\n{}",
                STARTUP_TIMEOUT.as_secs(),
                cluster[1].explain()
            );
        }
        tokio::time::sleep(POLL).await;
    }
    if let Some(c) = comm {
        c.close().await;
    }
    tracing::debug!("cluster at {address} with {nworkers} workers");
    Ok(address)
}

async fn check_alive_settled(cluster: &mut [ClusterProc]) -> Result<()> {
    if cluster.iter_mut().any(|p| p.exited().is_some()) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    check_alive(cluster)
}

/// The `address` in the scheduler file, once it is complete.
fn read_address(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json.get("address")?.as_str().map(str::to_string)
}

/// How many workers the scheduler has, from `{"op": "identity", "reply": true}`.
async fn count_workers(comm: &mut Comm) -> Result<usize> {
    let msg = Value::map([
        ("op", Value::from("identity")),
        ("reply", Value::Bool(true)),
    ]);
    let reply = tokio::time::timeout(POLL * 10, comm.request(&msg))
        .await
        .context("no identity reply")??;
    reply
        .get("workers")
        .and_then(|w| w.as_map())
        .map(<[_]>::len)
        .ok_or_else(|| anyhow!("identity reply without workers"))
}

/// Runs the script to its end; returns its exit code.
async fn run_script(
    args: &RunArgs,
    address: &str,
    signals: &mut Signals,
    cluster: &mut [ClusterProc],
) -> u8 {
    // Same process group as rask run (not `process_group`): the terminal's Ctrl-C reaches it.
    let mut script = match Command::new(&args.python)
        .arg(&args.script)
        .args(&args.args)
        .env("DASK_SCHEDULER_ADDRESS", address)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "rask: error: cannot run {:?} with {:?}: {e}",
                args.script, args.python
            );
            return 1;
        }
    };
    let pid = script.id();
    let mut watch = tokio::time::interval(Duration::from_secs(1));
    let mut reported = vec![false; cluster.len()];
    loop {
        tokio::select! {
            status = script.wait() => {
                return match status {
                    Ok(s) => exit_code(s),
                    Err(e) => {
                        eprintln!("rask: error: lost track of the script: {e}");
                        1
                    }
                };
            }
            sig = signals.next() => {
                // SIGINT from a terminal reaches the script by itself (same group); a
                // SIGTERM or SIGHUP meant for rask run is passed on so the script can exit.
                if let (true, Some(pid)) = (sig != SIGINT, pid) {
                    send_signal(i64::from(pid), sig);
                }
            }
            _ = watch.tick() => {
                // The script is left to fail (or not) on its own, but the user should know why.
                for (p, done) in cluster.iter_mut().zip(reported.iter_mut()) {
                    if let (false, Some(status)) = (*done, p.exited()) {
                        tracing::warn!(
                            "the {} exited while the script was running ({})",
                            p.name,
                            status_text(status)
                        );
                        *done = true;
                    }
                }
            }
        }
    }
}

/// Stops the cluster: SIGTERM to the scheduler (it tells the workers to close and `rask
/// worker` then exits by itself), bounded waits, then SIGTERM and SIGKILL to the process
/// groups of whatever is left.
async fn stop(cluster: &mut [ClusterProc]) {
    if cluster.is_empty() {
        return;
    }
    if cluster[0].exited().is_none() {
        send_signal(i64::from(cluster[0].pid), SIGTERM);
    }
    let deadline = Instant::now() + CLOSE_GRACE;
    for p in cluster.iter_mut() {
        p.wait(deadline.saturating_duration_since(Instant::now()))
            .await;
    }
    for p in cluster.iter_mut() {
        if p.exited().is_none() {
            tracing::warn!(
                "the {} is still running {}s after the scheduler was told to stop; terminating it",
                p.name,
                CLOSE_GRACE.as_secs()
            );
        }
    }
    abort(cluster).await;
}

/// SIGTERM to the process group of every cluster process still running, a bounded wait,
/// then SIGKILL to every group.
async fn abort(cluster: &mut [ClusterProc]) {
    let mut left = false;
    for p in cluster.iter_mut() {
        if p.exited().is_none() {
            send_signal(-i64::from(p.pid), SIGTERM);
            left = true;
        }
    }
    if left {
        let deadline = Instant::now() + KILL_GRACE;
        for p in cluster.iter_mut() {
            p.wait(deadline.saturating_duration_since(Instant::now()))
                .await;
        }
    }
    for p in cluster.iter_mut() {
        // Also takes down anything left in the group after its leader exited (a Python
        // worker or graph helper orphaned by a crash).
        send_signal(-i64::from(p.pid), SIGKILL);
        p.wait(KILL_GRACE).await;
        // rask run returns only once the group is empty: a caller may check right away.
        let deadline = Instant::now() + KILL_GRACE;
        while send_signal(-i64::from(p.pid), 0) {
            if Instant::now() > deadline {
                tracing::warn!(
                    "process group {} (the {}) still has processes after SIGKILL",
                    p.pid,
                    p.name
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(2)), 130); // killed by SIGINT
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
    }
}
