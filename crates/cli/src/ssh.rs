//! `rask ssh`: a scheduler on the first host of a node file and one `rask worker` on every
//! host, started over the system OpenSSH client (like `dask ssh`, without asyncssh).
//!
//! Every remote command runs under `ssh -tt`: the remote process gets a pty, so it receives
//! SIGHUP when its SSH connection goes away (however `rask ssh` ends), and a 0x03 byte written
//! to ssh's stdin reaches it as SIGINT, which is how a graceful shutdown is asked for.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout, Instant};

/// Flags, named as `dask ssh` names them where it has them.
#[derive(Args, Debug)]
pub struct SshArgs {
    /// Node file: one host per line (a PBS_NODEFILE repeats a host once per core; hosts are
    /// deduplicated in order). '#' starts a comment. The first host runs the scheduler, every
    /// host one `rask worker`
    #[arg(long)]
    hostfile: PathBuf,
    /// Worker processes per host (`rask worker --nworkers`) [default: 1]
    #[arg(long, allow_hyphen_values = true)]
    nworkers: Option<String>,
    /// Threads per worker process [default: CPU_COUNT / nworkers]
    #[arg(long)]
    nthreads: Option<u32>,
    /// Memory per worker process, e.g. '8GB', or 'auto' [default: auto]
    #[arg(long)]
    memory_limit: Option<String>,
    /// Scratch directory of the workers on every host
    #[arg(long)]
    local_directory: Option<PathBuf>,
    /// A worker gives up if the scheduler cannot be reached for this long, e.g. '60s': a
    /// worker whose host cannot reach the scheduler then exits with a message naming its
    /// host instead of waiting for the end of the job ('0': never)
    #[arg(long, default_value = "120s")]
    death_timeout: String,
    /// User name on the remote hosts [default: ssh's]
    #[arg(long, env = "RASK_SSH_USERNAME")]
    ssh_username: Option<String>,
    /// SSH port of the remote hosts [default: ssh's]
    #[arg(long, env = "RASK_SSH_PORT")]
    ssh_port: Option<u16>,
    /// Private key for SSH (`ssh -i`)
    #[arg(long, env = "RASK_SSH_PRIVATE_KEY")]
    ssh_private_key: Option<PathBuf>,
    /// Extra OpenSSH option, passed as `-o KEY=VALUE` (repeatable); $RASK_SSH_OPTIONS adds
    /// space-separated ones after these
    #[arg(long = "ssh-option", value_name = "KEY=VALUE")]
    ssh_options: Vec<String>,
    /// Python on the remote hosts, for the scheduler's graph helpers and the workers: it must
    /// import distributed
    #[arg(long, env = "RASK_PYTHON", default_value = "python3")]
    remote_python: String,
    /// Path of the rask binary on the remote hosts [default: this binary's path, as on a
    /// shared file system]
    #[arg(long, env = "RASK_REMOTE_RASK")]
    remote_rask: Option<String>,
    /// Scheduler port; 0 picks a free one
    #[arg(long, default_value_t = 8786)]
    scheduler_port: u16,
    /// Scheduler file to write (on the first host; a shared file system makes it visible here)
    #[arg(long)]
    scheduler_file: Option<PathBuf>,
    /// Address of the scheduler's dashboard, e.g. ':8787' or ':0' [default: the scheduler's]
    #[arg(long)]
    dashboard_address: Option<String>,
    /// How long the scheduler may take to report its address, e.g. '60s'
    #[arg(long, default_value = "120s")]
    startup_timeout: String,
}

/// Every connection: never prompt (nobody could answer), fail fast on a dead host, notice a
/// host that goes away, and keep ssh's own chatter ("Connection to X closed.") out of the log.
const SSH_DEFAULT_OPTIONS: &[&str] = &[
    "BatchMode=yes",
    "ConnectTimeout=10",
    "ServerAliveInterval=15",
    "ServerAliveCountMax=4",
    "LogLevel=ERROR",
];
/// How long the remote `rask worker`s get to retire after SIGINT: they give their Python
/// workers 30 s to hand their results over before killing them.
const WORKERS_GRACEFUL: Duration = Duration::from_secs(40);
/// How long the scheduler then gets to close.
const SCHEDULER_GRACEFUL: Duration = Duration::from_secs(15);
/// How long a killed ssh client gets to exit.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// The reachability check: connect (ConnectTimeout) and two short remote commands.
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);
/// How many lines of a remote command's output are kept for error messages.
const TAIL_LINES: usize = 30;

/// Hosts of a node file, deduplicated keeping the first-seen order.
fn parse_hostfile(text: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut hosts = Vec::new();
    for line in text.lines() {
        let host = line.split('#').next().unwrap_or("").trim();
        if !host.is_empty() && seen.insert(host.to_string()) {
            hosts.push(host.to_string());
        }
    }
    hosts
}

/// A name that means "this machine" wherever it is resolved.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Quotes a word for the remote login shell (sh, bash, zsh and csh agree on '...').
fn quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn command_line(words: &[String]) -> String {
    words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}

/// The address in a scheduler log line like `INFO   Scheduler at:   tcp://10.0.0.5:8786`.
fn scheduler_address(line: &str) -> Option<String> {
    let (_, rest) = line.split_once("Scheduler at:")?;
    rest.split_whitespace().next().map(str::to_string)
}

/// The last line of `text` worth showing (ssh prints its error last).
fn last_line(text: &str) -> String {
    text.lines()
        .map(|l| l.trim_end_matches('\r').trim())
        .rfind(|l| !l.is_empty())
        .unwrap_or("(no output)")
        .to_string()
}

/// Paths given here are used on the remote hosts, whose working directory is the home
/// directory: make them absolute against ours, as a shared file system expects.
fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("cannot make {p:?} absolute"))
}

fn duration(flag: &str, s: &str) -> Result<Duration> {
    let d = crate::worker::seconds(flag, s)?;
    if d.is_zero() {
        bail!("{flag} {s:?}: not a positive duration");
    }
    Ok(d)
}

/// Everything decided before the first connection.
#[derive(Debug)]
struct Plan {
    hosts: Vec<String>,
    ssh_args: Vec<String>,
    rask: String,
    python: String,
    scheduler: Vec<String>,
    /// `rask worker` without the scheduler address, which is known once the scheduler is up
    worker_flags: Vec<String>,
    scheduler_file: Option<PathBuf>,
    startup_timeout: Duration,
}

fn plan(args: SshArgs, env_options: Option<String>) -> Result<Plan> {
    let text = std::fs::read_to_string(&args.hostfile)
        .with_context(|| format!("cannot read the host file {:?}", args.hostfile))?;
    let hosts = parse_hostfile(&text);
    if hosts.is_empty() {
        bail!(
            "the host file {:?} names no host (one host per line; blank lines and '#' comments are ignored)",
            args.hostfile
        );
    }
    let rask = match args.remote_rask {
        Some(r) => r,
        None => std::env::current_exe()
            .context("cannot find the path of this rask binary; give --remote-rask")?
            .to_string_lossy()
            .into_owned(),
    };

    let mut ssh_args = Vec::new();
    let env_options = env_options.unwrap_or_default();
    // OpenSSH keeps the first value it sees for an option: the user's come before ours.
    for opt in args
        .ssh_options
        .iter()
        .map(String::as_str)
        .chain(env_options.split_whitespace())
        .chain(SSH_DEFAULT_OPTIONS.iter().copied())
    {
        if !opt.contains('=') {
            bail!(
                "--ssh-option {opt:?}: expected KEY=VALUE, like StrictHostKeyChecking=accept-new"
            );
        }
        ssh_args.extend(["-o".to_string(), opt.to_string()]);
    }
    if let Some(port) = args.ssh_port {
        ssh_args.extend(["-p".to_string(), port.to_string()]);
    }
    if let Some(key) = &args.ssh_private_key {
        if !key.exists() {
            bail!("--ssh-private-key {key:?} does not exist");
        }
        ssh_args.extend([
            "-i".to_string(),
            absolute(key)?.to_string_lossy().into_owned(),
        ]);
    }
    if let Some(user) = &args.ssh_username {
        ssh_args.extend(["-l".to_string(), user.clone()]);
    }

    let scheduler_file = args.scheduler_file.as_deref().map(absolute).transpose()?;
    let python = args.remote_python;
    let mut scheduler = vec![
        rask.clone(),
        "scheduler".into(),
        "--host".into(),
        hosts[0].clone(),
        "--port".into(),
        args.scheduler_port.to_string(),
        "--python".into(),
        python.clone(),
    ];
    if let Some(f) = &scheduler_file {
        scheduler.extend(["--scheduler-file".into(), f.to_string_lossy().into_owned()]);
    }
    if let Some(d) = &args.dashboard_address {
        scheduler.extend(["--dashboard-address".into(), d.clone()]);
    }

    let mut worker_flags = vec!["--python".to_string(), python.clone()];
    let optional = [
        ("--nworkers", args.nworkers),
        ("--nthreads", args.nthreads.map(|n| n.to_string())),
        ("--memory-limit", args.memory_limit),
        (
            "--death-timeout",
            Some(args.death_timeout).filter(|t| !matches!(t.trim(), "0" | "0s" | "")),
        ),
        (
            "--local-directory",
            args.local_directory
                .as_deref()
                .map(absolute)
                .transpose()?
                .map(|p| p.to_string_lossy().into_owned()),
        ),
    ];
    for (flag, value) in optional {
        if let Some(v) = value {
            worker_flags.extend([flag.to_string(), v]);
        }
    }
    Ok(Plan {
        hosts,
        ssh_args,
        rask,
        python,
        scheduler,
        worker_flags,
        scheduler_file,
        startup_timeout: duration("--startup-timeout", &args.startup_timeout)?,
    })
}

/// Runs `rask ssh`.
pub fn main(args: SshArgs) -> Result<()> {
    let plan = plan(args, std::env::var("RASK_SSH_OPTIONS").ok())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(plan))
}

// ---------------------------------------------------------------------------------------------
// signals

/// SIGINT, SIGTERM and SIGHUP as a stream: the first asks for a graceful shutdown, a second
/// one cuts it short.
fn signals() -> Result<mpsc::UnboundedReceiver<&'static str>> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = mpsc::unbounded_channel();
    for (kind, name) in [
        (SignalKind::interrupt(), "SIGINT"),
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::hangup(), "SIGHUP"),
    ] {
        let mut s = signal(kind).with_context(|| format!("cannot handle {name}"))?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while s.recv().await.is_some() {
                if tx.send(name).is_err() {
                    break;
                }
            }
        });
    }
    Ok(rx)
}

// ---------------------------------------------------------------------------------------------
// the reachability check

/// Connects to `host` and checks that the remote rask binary runs and the remote Python
/// imports distributed; the error says which of the three failed.
async fn check_host(plan: &Plan, host: &str) -> Result<(), String> {
    // `&&` works in every login shell (csh too), unlike `if ...; then`.
    let remote = format!(
        "{} && {}",
        command_line(&[plan.rask.clone(), "--version".into()]),
        command_line(&[
            plan.python.clone(),
            "-c".into(),
            "import distributed".into()
        ]),
    );
    let mut cmd = Command::new("ssh");
    cmd.args(&plan.ssh_args)
        .arg(host)
        .arg(remote)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = match timeout(CHECK_TIMEOUT, cmd.output()).await {
        Err(_) => {
            return Err(format!(
                "cannot reach host {host} over SSH: no answer within {}s",
                CHECK_TIMEOUT.as_secs()
            ))
        }
        Ok(Err(e)) => return Err(format!("cannot run ssh (the OpenSSH client): {e}")),
        Ok(Ok(out)) => out,
    };
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let why = last_line(&stderr);
    // ssh exits 255 on its own errors; anything else is the remote command's status.
    if out.status.code() == Some(255) {
        return Err(format!("cannot reach host {host} over SSH: {why}"));
    }
    if !stdout.lines().any(|l| l.starts_with("rask ")) {
        return Err(format!(
            "host {host} cannot run the rask binary {} (give its path on that host with --remote-rask): {why}",
            plan.rask
        ));
    }
    Err(format!(
        "host {host}: {} cannot import distributed (give a Python with dask[distributed] with --remote-python or $RASK_PYTHON): {why}",
        plan.python
    ))
}

async fn check_hosts(plan: &Arc<Plan>) -> Result<()> {
    let mut set = JoinSet::new();
    for (i, host) in plan.hosts.iter().enumerate() {
        let plan = plan.clone();
        let host = host.clone();
        set.spawn(async move { (i, check_host(&plan, &host).await) });
    }
    let mut failures = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, Err(msg))) => failures.push((i, msg)),
            Ok((_, Ok(()))) => {}
            Err(e) => failures.push((usize::MAX, format!("a host check failed: {e}"))),
        }
    }
    failures.sort();
    match failures.len() {
        0 => Ok(()),
        1 => bail!("{}", failures[0].1),
        n => bail!(
            "{n} of {} hosts failed the check:\n  {}",
            plan.hosts.len(),
            failures
                .into_iter()
                .map(|(_, m)| m)
                .collect::<Vec<_>>()
                .join("\n  ")
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// remote processes

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Scheduler,
    Worker,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Scheduler => "scheduler",
            Role::Worker => "worker",
        }
    }
}

type Tail = Arc<Mutex<VecDeque<String>>>;

/// One `ssh -tt host 'exec rask ...'`.
struct Remote {
    role: Role,
    host: String,
    stdin: Option<ChildStdin>,
    kill: Option<oneshot::Sender<()>>,
    tail: Tail,
    exit: Option<std::io::Result<ExitStatus>>,
}

impl Remote {
    fn label(&self) -> String {
        format!("{} on {}", self.role.name(), self.host)
    }

    fn running(&self) -> bool {
        self.exit.is_none()
    }

    /// The last line the remote command printed, for error messages.
    fn last_words(&self) -> String {
        let tail = self.tail.lock().map(|t| t.clone()).unwrap_or_default();
        let line = last_line(&Vec::from(tail).join("\n"));
        // a remote rask's own error line: our message has that prefix already
        match line.strip_prefix("rask: error: ") {
            Some(rest) => rest.to_string(),
            None => line,
        }
    }

    fn exit_text(&self) -> String {
        match &self.exit {
            None => "running".into(),
            Some(Err(e)) => format!("could not be waited for: {e}"),
            Some(Ok(s)) => match s.code() {
                // ssh's own failures and a remote process killed by a signal both end in 255
                Some(255) => {
                    "ended: its SSH connection failed or it was killed (ssh exit status 255)".into()
                }
                Some(c) => format!("exited with status {c}"),
                None => format!("ended: {s}"),
            },
        }
    }

    fn succeeded(&self) -> bool {
        matches!(&self.exit, Some(Ok(s)) if s.success())
    }

    /// SIGINT to the remote process through its pty.
    async fn interrupt(&mut self) {
        if let Some(stdin) = &mut self.stdin {
            if stdin.write_all(&[0x03]).await.is_err() || stdin.flush().await.is_err() {
                tracing::debug!("{}: ssh's stdin is closed", self.label());
            }
        }
    }

    /// Kills the local ssh client: the remote side sees its pty hang up (SIGHUP).
    fn kill(&mut self) {
        if let Some(k) = self.kill.take() {
            let _ = k.send(());
        }
    }
}

/// Prints every line of `reader` as `[role host] line` and keeps the last ones in `tail`;
/// a scheduler's reader reports its address on `address`.
async fn forward_lines(
    reader: impl AsyncRead + Unpin,
    prefix: String,
    tail: Tail,
    address: Option<mpsc::UnboundedSender<String>>,
) {
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!("{prefix}: reading its output failed: {e}");
                break;
            }
        }
        let text = String::from_utf8_lossy(&buf);
        // a pty ends lines with \r\n and echoes the ^C that asks for a shutdown
        let line = text.trim_end_matches(['\n', '\r']);
        let line = line.strip_prefix("^C").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        eprintln!("{prefix} {line}");
        if let Some(tx) = &address {
            if let Some(addr) = scheduler_address(line) {
                let _ = tx.send(addr);
            }
        }
        if let Ok(mut t) = tail.lock() {
            if t.len() == TAIL_LINES {
                t.pop_front();
            }
            t.push_back(line.to_string());
        }
    }
}

/// Starts `words` on `host` under `ssh -tt`; its exit is reported on `exits` as its index.
fn start_remote(
    plan: &Plan,
    role: Role,
    host: &str,
    words: &[String],
    index: usize,
    exits: &mpsc::UnboundedSender<(usize, std::io::Result<ExitStatus>)>,
    address: Option<mpsc::UnboundedSender<String>>,
) -> Result<Remote> {
    let remote = format!("exec {}", command_line(words));
    tracing::debug!("{} on {host}: {remote}", role.name());
    // ssh runs with SIGINT, SIGTERM, SIGHUP and SIGQUIT ignored (OpenSSH keeps an inherited
    // SIG_IGN): a Ctrl-C in the terminal or a SIGTERM to the process group (PBS, Slurm, a
    // supervisor) reaches rask ssh alone, which stops the workers before the scheduler,
    // instead of every connection dropping at once. A SIGKILL to the group still ends the
    // connections, and the remote processes get SIGHUP. `sh` sets the dispositions because
    // nothing in this crate may run code between fork and exec.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"trap "" INT TERM HUP QUIT; exec "$0" "$@""#)
        .arg("ssh")
        .arg("-tt")
        .args(&plan.ssh_args)
        .arg(host)
        .arg(remote)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot run ssh (the OpenSSH client)")?;
    let prefix = format!("[{} {host}]", role.name());
    let tail: Tail = Arc::default();
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(forward_lines(
            out,
            prefix.clone(),
            tail.clone(),
            address,
        )));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(forward_lines(err, prefix, tail.clone(), None)));
    }
    let stdin = child.stdin.take();
    let (kill_tx, kill_rx) = oneshot::channel::<()>();
    let exits = exits.clone();
    tokio::spawn(async move {
        let status = tokio::select! {
            s = child.wait() => s,
            _ = kill_rx => {
                let _ = child.start_kill();
                child.wait().await
            }
        };
        // the last lines first, so an error message can quote them
        for r in readers {
            let _ = timeout(Duration::from_secs(2), r).await;
        }
        let _ = exits.send((index, status));
    });
    Ok(Remote {
        role,
        host: host.to_string(),
        stdin,
        kill: Some(kill_tx),
        tail,
        exit: None,
    })
}

/// All remote processes, the scheduler at index 0.
struct Cluster {
    remotes: Vec<Remote>,
    exits: mpsc::UnboundedReceiver<(usize, std::io::Result<ExitStatus>)>,
    exits_tx: mpsc::UnboundedSender<(usize, std::io::Result<ExitStatus>)>,
    signals: mpsc::UnboundedReceiver<&'static str>,
}

enum Event {
    Signal(&'static str),
    Exit(usize),
}

impl Cluster {
    fn record_exit(&mut self, index: usize, status: std::io::Result<ExitStatus>) -> usize {
        if let Some(r) = self.remotes.get_mut(index) {
            r.exit = Some(status);
            r.stdin = None;
        }
        index
    }

    async fn next_event(&mut self) -> Event {
        tokio::select! {
            Some(sig) = self.signals.recv() => Event::Signal(sig),
            Some((i, status)) = self.exits.recv() => Event::Exit(self.record_exit(i, status)),
        }
    }

    /// Waits until none of `role` runs, at most `limit`; false on a signal.
    async fn wait_role(&mut self, role: Role, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.remotes.iter().any(|r| r.role == role && r.running()) {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return true,
                event = self.next_event() => match event {
                    Event::Signal(sig) => {
                        tracing::warn!("{sig} again: disconnecting every host now");
                        return false;
                    }
                    Event::Exit(i) => self.log_exit(i, true),
                },
            }
        }
        true
    }

    fn log_exit(&self, index: usize, stopping: bool) {
        let r = &self.remotes[index];
        if r.succeeded() || stopping {
            tracing::info!("the {} {}", r.label(), r.exit_text());
        } else {
            tracing::error!("the {} {}: {}", r.label(), r.exit_text(), r.last_words());
        }
    }

    /// Workers first (they retire their tasks' results while the scheduler still runs), then
    /// the scheduler; SIGINT through the pty, then the connection is cut.
    async fn stop(&mut self) {
        let mut patient = true;
        for (role, graceful) in [
            (Role::Worker, WORKERS_GRACEFUL),
            (Role::Scheduler, SCHEDULER_GRACEFUL),
        ] {
            if patient {
                for r in self.remotes.iter_mut().filter(|r| r.role == role) {
                    r.interrupt().await;
                }
                patient = self.wait_role(role, graceful).await;
            }
            for r in self
                .remotes
                .iter_mut()
                .filter(|r| r.role == role && r.running())
            {
                if patient {
                    tracing::warn!(
                        "the {} did not stop within {}s: disconnecting it",
                        r.label(),
                        graceful.as_secs()
                    );
                }
                r.kill();
            }
            let deadline = Instant::now() + KILL_WAIT;
            while self.remotes.iter().any(|r| r.role == role && r.running()) {
                match tokio::time::timeout_at(deadline, self.exits.recv()).await {
                    Ok(Some((i, status))) => {
                        self.record_exit(i, status);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
}

async fn run(plan: Plan) -> Result<()> {
    let plan = Arc::new(plan);
    let mut signals = signals()?;
    tracing::info!(
        "rask ssh: checking {} host(s): {}",
        plan.hosts.len(),
        plan.hosts.join(", ")
    );
    tokio::select! {
        r = check_hosts(&plan) => r?,
        Some(sig) = signals.recv() => bail!("{sig} during the host check: nothing was started"),
    }

    if is_loopback(&plan.hosts[0]) && !plan.hosts.iter().all(|h| is_loopback(h)) {
        // the scheduler advertises the name it was given, and every host resolves it to itself
        tracing::warn!(
            "rask ssh: the scheduler's host {} is a loopback name: workers on the other hosts cannot reach it; put a name or IP the other hosts can reach first in the host file",
            plan.hosts[0]
        );
    }
    let (exits_tx, exits) = mpsc::unbounded_channel();
    let (address_tx, mut address_rx) = mpsc::unbounded_channel();
    let first = plan.hosts[0].clone();
    let scheduler = start_remote(
        &plan,
        Role::Scheduler,
        &first,
        &plan.scheduler,
        0,
        &exits_tx,
        Some(address_tx),
    )?;
    let mut cluster = Cluster {
        remotes: vec![scheduler],
        exits,
        exits_tx,
        signals,
    };

    // The workers need the scheduler's address, which --scheduler-port 0 leaves to it.
    let address = tokio::select! {
            Some(a) = address_rx.recv() => a,
            event = cluster.next_event() => match event {
                Event::Signal(sig) => {
                    tracing::info!("rask ssh: {sig}: stopping");
                    cluster.stop().await;
                    return Ok(());
                }
                Event::Exit(_) => {
                    let r = &cluster.remotes[0];
                    bail!(
                        "the scheduler on host {first} {} before it was up: {}",
                        r.exit_text(),
                        r.last_words()
                    );
                }
            },
            _ = sleep(plan.startup_timeout) => {
                cluster.stop().await;
                bail!(
                    "the scheduler on host {first} did not report its address within {}s",
                    plan.startup_timeout.as_secs()
                );
            }
    };
    tracing::info!("rask ssh: Scheduler at: {address}");
    if let Some(f) = plan.scheduler_file.clone() {
        tokio::spawn(warn_if_missing(f, first.clone()));
    }

    for (i, host) in plan.hosts.iter().enumerate() {
        let mut words = vec![plan.rask.clone(), "worker".into(), address.clone()];
        words.extend(plan.worker_flags.iter().cloned());
        let remote = start_remote(
            &plan,
            Role::Worker,
            host,
            &words,
            i + 1,
            &cluster.exits_tx,
            None,
        );
        match remote {
            Ok(r) => cluster.remotes.push(r),
            Err(e) => {
                cluster.stop().await;
                return Err(e);
            }
        }
    }
    tracing::info!(
        "rask ssh: a worker started on each of {} host(s); Ctrl-C stops the cluster",
        plan.hosts.len()
    );

    loop {
        match cluster.next_event().await {
            Event::Signal(sig) => {
                tracing::info!("rask ssh: {sig}: stopping the workers, then the scheduler");
                cluster.stop().await;
                tracing::info!("rask ssh: stopped");
                return Ok(());
            }
            Event::Exit(0) => {
                let r = &cluster.remotes[0];
                let (ok, text, words) = (r.succeeded(), r.exit_text(), r.last_words());
                tracing::warn!("rask ssh: the scheduler on {first} {text}; stopping the workers");
                cluster.stop().await;
                if ok {
                    // the scheduler was told to close (Client.shutdown(), --idle-timeout)
                    tracing::info!("rask ssh: the scheduler on {first} {text}; workers stopped");
                    return Ok(());
                }
                bail!("the scheduler on host {first} {text}; its last output: {words}");
            }
            Event::Exit(i) => {
                cluster.log_exit(i, false);
                let workers = cluster.remotes.iter().filter(|r| r.role == Role::Worker);
                let all_gone = workers.clone().all(|r| !r.running());
                let any_failed = workers.clone().any(|r| !r.running() && !r.succeeded());
                if all_gone && any_failed {
                    let failed: Vec<String> = cluster
                        .remotes
                        .iter()
                        .filter(|r| r.role == Role::Worker && !r.succeeded())
                        .map(|r| format!("{}: {}", r.host, r.last_words()))
                        .collect();
                    cluster.stop().await;
                    bail!(
                        "every worker has exited, stopping the scheduler; failed: {}",
                        failed.join("; ")
                    );
                }
            }
        }
    }
}

/// The scheduler file is written on the first host; here it only appears through a shared
/// file system, which the job script reading it relies on.
async fn warn_if_missing(path: PathBuf, host: String) {
    for _ in 0..100 {
        if path.exists() {
            return;
        }
        sleep(Duration::from_millis(100)).await;
    }
    tracing::warn!(
        "rask ssh: the scheduler file {} written on {host} does not appear on this machine: is its directory on a shared file system?",
        path.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SshArgs,
    }

    fn plan_for(hostfile: &str, extra: &[&str]) -> Result<Plan> {
        let dir = std::env::temp_dir().join(format!("rask-ssh-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("hosts-{}", hostfile.len()));
        std::fs::write(&path, hostfile).unwrap();
        let mut argv = vec!["rask-ssh", "--hostfile", path.to_str().unwrap()];
        argv.extend(extra);
        let cli = Cli::try_parse_from(argv).unwrap();
        plan(cli.args, None)
    }

    #[test]
    fn hostfile_dedups_in_order_and_skips_comments() {
        let text = "node2\nnode2\n# the login node\n\n node1 \nnode2\nnode3 # spare\n";
        assert_eq!(parse_hostfile(text), ["node2", "node1", "node3"]);
        assert!(parse_hostfile("\n# nothing\n").is_empty());
    }

    #[test]
    fn an_empty_hostfile_is_an_error() {
        let e = plan_for("# no hosts\n", &[]).unwrap_err();
        assert!(e.to_string().contains("names no host"), "{e}");
    }

    #[test]
    fn quoting_survives_the_remote_shell() {
        assert_eq!(quote("/opt/rask"), "/opt/rask");
        assert_eq!(quote("tcp://10.0.0.5:8786"), "tcp://10.0.0.5:8786");
        assert_eq!(quote("import distributed"), "'import distributed'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("$HOME"), "'$HOME'");
    }

    #[test]
    fn scheduler_address_is_read_from_its_log_line() {
        let line = "2026-11-24T23:13:37Z  INFO   Scheduler at:   tcp://localhost:33743";
        assert_eq!(
            scheduler_address(line).as_deref(),
            Some("tcp://localhost:33743")
        );
        assert_eq!(scheduler_address("INFO dashboard at: :8787"), None);
    }

    #[test]
    fn commands_pass_the_flags_through() {
        let p = plan_for(
            "n1\nn1\nn2\n",
            &[
                "--nworkers",
                "2",
                "--nthreads",
                "4",
                "--memory-limit",
                "8GB",
                "--ssh-port",
                "2222",
                "--ssh-username",
                "me",
                "--ssh-option",
                "StrictHostKeyChecking=no",
                "--remote-python",
                "/opt/py/bin/python",
                "--remote-rask",
                "/opt/rask",
                "--scheduler-port",
                "0",
                "--scheduler-file",
                "/shared/s.json",
            ],
        )
        .unwrap();
        assert_eq!(p.hosts, ["n1", "n2"]);
        assert_eq!(
            command_line(&p.scheduler),
            "/opt/rask scheduler --host n1 --port 0 --python /opt/py/bin/python --scheduler-file /shared/s.json"
        );
        assert_eq!(
            command_line(&p.worker_flags),
            "--python /opt/py/bin/python --nworkers 2 --nthreads 4 --memory-limit 8GB --death-timeout 120s"
        );
        let ssh = p.ssh_args.join(" ");
        assert!(
            ssh.starts_with("-o StrictHostKeyChecking=no -o BatchMode=yes"),
            "{ssh}"
        );
        assert!(ssh.ends_with("-p 2222 -l me"), "{ssh}");
    }

    #[test]
    fn bad_ssh_options_are_refused() {
        let e = plan_for("n1\n", &["--ssh-option", "BatchMode"]).unwrap_err();
        assert!(e.to_string().contains("KEY=VALUE"), "{e}");
    }

    #[test]
    fn loopback_names() {
        for h in ["localhost", "127.0.0.1", "127.0.1.1", "::1", "ws.localhost"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["node01", "10.0.0.5", "localhost.example.org"] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn last_line_skips_blank_lines() {
        assert_eq!(last_line("a\r\nb\r\n\n"), "b");
        assert_eq!(last_line(""), "(no output)");
    }
}
