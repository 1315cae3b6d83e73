//! The Python side: `python/rask_worker_launcher.py`, run once to check the environment
//! (`check`) and once per worker process (`run`).

use crate::{NWorkers, WorkerConfig, WorkerError};
use serde_json::{json, Value as Json};
use std::collections::HashMap;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::mpsc;

/// The launcher's Python source.
pub const LAUNCHER_SOURCE: &str = include_str!("../../../python/rask_worker_launcher.py");

/// What `check` found out about this node's Python and the Dask configuration.
#[derive(Debug, Clone)]
pub struct Probe {
    pub python: String,
    pub distributed: String,
    pub nworkers: usize,
    pub nthreads: u32,
    /// bytes per worker process; 0: no limit
    pub memory_limit: u64,
    /// `distributed.worker.memory.terminate`: kill a worker past this fraction of its limit
    pub terminate: Option<f64>,
    pub monitor_interval: Duration,
    /// `distributed.nanny.pre-spawn-environ` and `.environ`, as the nanny sets them
    pub env: HashMap<String, String>,
}

fn help() -> String {
    format!(
        "activate an environment with dask[distributed]=={} on this node, or pass --python \
         (or set RASK_PYTHON) to a Python that has it",
        rask_protocol::TESTED_DISTRIBUTED
    )
}

/// Runs `check`: does this node's Python have `distributed`, and what do the flags come to.
pub async fn probe(config: &WorkerConfig) -> Result<Probe, WorkerError> {
    let spec = json!({
        "nworkers": match config.nworkers {
            NWorkers::Auto => json!("auto"),
            NWorkers::Count(n) => json!(n),
        },
        "nthreads": config.nthreads,
        "memory_limit": config.memory_limit,
    });
    let py = &config.python;
    let out = Command::new(py)
        .arg("-c")
        .arg(LAUNCHER_SOURCE)
        .arg("check")
        .arg(spec.to_string())
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| WorkerError::Python(format!("cannot run {py:?}: {e}; {}", help())))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Option<Json> = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok());
    let Some(report) = report else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(WorkerError::Python(format!(
            "{py:?} did not run rask's worker launcher ({}): {}; {}",
            out.status,
            stderr.lines().last().unwrap_or(""),
            help()
        )));
    };
    if let Some(e) = report.get("error").and_then(Json::as_str) {
        return Err(if e.starts_with("cannot import distributed") {
            WorkerError::Python(format!("{py:?} {e}; {}", help()))
        } else {
            WorkerError::Config(e.to_string())
        });
    }
    let field = |k: &str| report.get(k).cloned().unwrap_or(Json::Null);
    let env = field("env")
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    Ok(Probe {
        python: field("python").as_str().unwrap_or(py).to_string(),
        distributed: field("distributed").as_str().unwrap_or("?").to_string(),
        nworkers: field("nworkers").as_u64().unwrap_or(1) as usize,
        nthreads: field("nthreads").as_u64().unwrap_or(1) as u32,
        memory_limit: field("memory_limit").as_u64().unwrap_or(0),
        terminate: field("terminate").as_f64().filter(|f| *f > 0.0),
        monitor_interval: Duration::from_secs_f64(
            field("monitor_interval")
                .as_f64()
                .filter(|s| s.is_finite() && *s > 0.0)
                .unwrap_or(0.1),
        ),
        env,
    })
}

/// What a worker process reports about itself.
#[derive(Debug)]
pub enum ChildEvent {
    /// registered with the scheduler at this address
    Started(String),
    /// could not start; the process exits next
    StartFailed(String),
    Exited(ExitStatus),
}

/// A running worker process: its pid (also its process group) and its command pipe.
pub struct Child {
    pub pid: i32,
    stdin: ChildStdin,
}

impl Child {
    /// Starts `Worker(**kwargs)` in its own process group. Its stderr (the worker's log)
    /// is ours; its stdout carries the launcher's report, then the tasks' prints, which are
    /// passed on to our stdout. Events arrive on `events` tagged with `generation`.
    pub fn spawn(
        probe: &Probe,
        kwargs: &Json,
        generation: u64,
        events: mpsc::UnboundedSender<(u64, ChildEvent)>,
    ) -> Result<Child, WorkerError> {
        let mut child = Command::new(&probe.python)
            .arg("-c")
            .arg(LAUNCHER_SOURCE)
            .arg("run")
            .arg(kwargs.to_string())
            .envs(&probe.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| WorkerError::Python(format!("cannot start {:?}: {e}", probe.python)))?;
        let (Some(pid), Some(stdin), Some(stdout)) =
            (child.id(), child.stdin.take(), child.stdout.take())
        else {
            return Err(WorkerError::Python("worker process pipes missing".into()));
        };
        let tx = events.clone();
        let reader = tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            let mut reported = false;
            let mut out = tokio::io::stdout();
            while let Ok(Some(line)) = lines.next_line().await {
                if !reported {
                    if let Ok(msg) = serde_json::from_str::<Json>(&line) {
                        let event = match (msg.get("address"), msg.get("error")) {
                            (Some(a), _) => Some(ChildEvent::Started(
                                a.as_str().unwrap_or_default().to_string(),
                            )),
                            (_, Some(e)) => Some(ChildEvent::StartFailed(
                                e.as_str().unwrap_or_default().to_string(),
                            )),
                            _ => None,
                        };
                        if let Some(event) = event {
                            reported = true;
                            let _ = tx.send((generation, event));
                            continue;
                        }
                    }
                }
                let _ = out.write_all(format!("{line}\n").as_bytes()).await;
            }
        });
        tokio::spawn(async move {
            let status = child.wait().await;
            // The report is written just before a failed start exits: read it first.
            // (A grandchild holding stdout open must not delay the exit event for long.)
            let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
            if let Ok(status) = status {
                let _ = events.send((generation, ChildEvent::Exited(status)));
            }
        });
        Ok(Child {
            pid: pid as i32,
            stdin,
        })
    }

    /// Sends the launcher a command (`stop`, `retire`); false if the pipe is gone.
    pub async fn command(&mut self, msg: Json) -> bool {
        let line = format!("{msg}\n");
        self.stdin.write_all(line.as_bytes()).await.is_ok() && self.stdin.flush().await.is_ok()
    }

    /// SIGKILLs the process group: the worker and anything it started.
    pub fn kill(&self) {
        use nix::sys::signal::{killpg, Signal};
        use nix::unistd::Pid;
        let _ = killpg(Pid::from_raw(self.pid), Signal::SIGKILL);
    }

    /// Resident memory of the worker process (what Dask's nanny measures), from /proc.
    pub fn rss(&self) -> Option<u64> {
        let statm = std::fs::read_to_string(format!("/proc/{}/statm", self.pid)).ok()?;
        let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .unwrap_or(4096) as u64;
        Some(pages * page)
    }
}
